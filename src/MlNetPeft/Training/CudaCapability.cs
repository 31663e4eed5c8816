using System.Collections.Concurrent;
using System.Runtime.InteropServices;

namespace MlNetPeft.Training;

/// <summary>
/// A CUDA device's compute capability, which decides what <see cref="ComputePrecision.Auto"/> picks. TorchSharp 0.107
/// has no <c>torch.cuda.get_device_capability</c>, so this asks the CUDA driver (libcuda, present wherever CUDA runs);
/// its device ordinals are the CUDA runtime's, and so libtorch's, under CUDA_VISIBLE_DEVICES too.
/// </summary>
internal static class CudaCapability
{
    private const int CapabilityMajor = 75, CapabilityMinor = 76; // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR/MINOR

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate int CuInit(uint flags);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate int CuDeviceGet(out int device, int ordinal);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate int CuDeviceGetAttribute(out int value, int attribute, int device);

    private static readonly ConcurrentDictionary<int, (int Major, int Minor)?> Known = new();

    /// <summary>(major, minor) of CUDA device <paramref name="ordinal"/>, or null where there is no CUDA driver or it
    /// does not answer (read once per device).</summary>
    public static (int Major, int Minor)? Of(int ordinal) =>
        Known.GetOrAdd(ordinal, o => OperatingSystem.IsWindows() ? Ask(o, "nvcuda.dll") : OperatingSystem.IsLinux() ? Ask(o, "libcuda.so.1") : null);

    /// <summary>(major, minor) of device <paramref name="ordinal"/> as the CUDA driver library <paramref name="driverLibrary"/>
    /// reports it, or null.</summary>
    internal static (int Major, int Minor)? Ask(int ordinal, string driverLibrary)
    {
        try { return AskDriver(ordinal, driverLibrary); }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or BadImageFormatException or MarshalDirectiveException)
        { return null; }
    }

    private static (int Major, int Minor)? AskDriver(int ordinal, string driverLibrary)
    {
        if (!NativeLibrary.TryLoad(driverLibrary, out var driver)) return null;
        if (!NativeLibrary.TryGetExport(driver, "cuInit", out var init)
            || !NativeLibrary.TryGetExport(driver, "cuDeviceGet", out var get)
            || !NativeLibrary.TryGetExport(driver, "cuDeviceGetAttribute", out var attribute)) return null;
        var attributeOf = Marshal.GetDelegateForFunctionPointer<CuDeviceGetAttribute>(attribute);
        // cuInit is idempotent: libtorch has usually called it already. 0 is CUDA_SUCCESS.
        if (Marshal.GetDelegateForFunctionPointer<CuInit>(init)(0) != 0
            || Marshal.GetDelegateForFunctionPointer<CuDeviceGet>(get)(out int device, ordinal) != 0
            || attributeOf(out int major, CapabilityMajor, device) != 0
            || attributeOf(out int minor, CapabilityMinor, device) != 0) return null;
        return (major, minor);
    }
}
