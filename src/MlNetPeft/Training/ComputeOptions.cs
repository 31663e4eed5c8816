using TorchSharp;
using static TorchSharp.torch;

namespace MlNetPeft.Training;

/// <summary>Where training and inference run.</summary>
public enum ComputeDevice
{
    /// <summary>CUDA when a GPU and the CUDA backend are present, otherwise CPU.</summary>
    Auto,
    /// <summary>Always the CPU.</summary>
    Cpu,
    /// <summary>The first CUDA GPU; an error if none is available.</summary>
    Cuda,
}

/// <summary>Numeric precision of the backbone. Adapters, head and optimizer state always stay fp32; a backbone that
/// trains (full fine-tuning) in bf16 is a compute copy of fp32 master weights.</summary>
public enum ComputePrecision
{
    /// <summary>bf16 on CUDA, fp32 on CPU.</summary>
    Auto,
    /// <summary>fp32 everywhere (bit-for-bit parity with PyTorch fp32).</summary>
    Float32,
    /// <summary>bf16 backbone weights and activations, fp32 adapters, head, optimizer state and (full fine-tuning) master weights.</summary>
    BFloat16,
}

internal static class ComputeSelection
{
    /// <summary>The device for <paramref name="choice"/> under ML.NET's own GPU settings: an MLContext whose GpuDeviceId
    /// is set runs on that GPU (unless the options say Cpu), or on the CPU when there is no such GPU and FallbackToCpu is
    /// set; with GpuDeviceId unset, <paramref name="choice"/> alone decides.</summary>
    public static Device SelectDevice(ComputeDevice choice, int? gpuDeviceId, bool fallbackToCpu)
    {
        if (gpuDeviceId is not { } id || choice == ComputeDevice.Cpu) return SelectDevice(choice);
        int count = cuda.is_available() ? cuda.device_count() : 0;
        if (id >= 0 && id < count) return device(DeviceType.CUDA, id);
        if (fallbackToCpu) return CPU;
        throw new InvalidOperationException($"MLContext.GpuDeviceId is {id}, but " +
            (count == 0 ? "no CUDA device is available" : $"there are only {count} CUDA devices") +
            "; set MLContext.FallbackToCpu = true to run on the CPU instead, or GpuDeviceId = null.");
    }

    public static Device SelectDevice(ComputeDevice choice) => choice switch
    {
        ComputeDevice.Cpu => CPU,
        ComputeDevice.Cuda when cuda.is_available() => CUDA,
        ComputeDevice.Cuda => throw new InvalidOperationException(
            "Device = Cuda, but no CUDA device is available: on a machine with an NVIDIA GPU, reference TorchSharp-cuda-linux " +
            "(this repository's programs: build with -p:TorchBackend=cuda), or use Device = Auto."),
        _ => cuda.is_available() ? CUDA : CPU,
    };

    public static ScalarType SelectPrecision(ComputePrecision choice, Device device) => choice switch
    {
        ComputePrecision.Float32 => ScalarType.Float32,
        ComputePrecision.BFloat16 => ScalarType.BFloat16,
        _ => device.type == DeviceType.CUDA ? ScalarType.BFloat16 : ScalarType.Float32,
    };

    /// <summary>
    /// A warning when bf16 is chosen on a CPU whose flags (Linux's /proc/cpuinfo; <paramref name="cpuFlags"/>, null
    /// when unknown) show no native bf16 instructions: libtorch then converts in software, and training ran 35× slower
    /// than fp32 on such a CPU (2-core AMD EPYC with AVX2 only, mini shape), inference 5×. Null otherwise.
    /// </summary>
    public static string? SlowBfloat16Warning(Device device, ScalarType precision, string? cpuFlags)
    {
        if (device.type != DeviceType.CPU || precision != ScalarType.BFloat16 || cpuFlags is null) return null;
        var flags = cpuFlags.Split((char[])[' ', '\t', '\n', ':'], StringSplitOptions.RemoveEmptyEntries);
        if (flags.Any(f => f is "avx512_bf16" or "amx_bf16" or "bf16")) return null; // x86, x86 AMX, Arm
        return "Precision = BFloat16 on a CPU without native bf16 instructions (no avx512_bf16, amx_bf16 or bf16 among " +
            "its flags): libtorch converts in software, and bf16 trained 35× slower than fp32 on such a CPU. " +
            "Use Precision = Auto or Float32 here.";
    }

    /// <summary>The warning above for this machine's CPU.</summary>
    public static string? SlowBfloat16Warning(Device device, ScalarType precision) => SlowBfloat16Warning(device, precision, CpuFlags());

    private static readonly Lazy<string?> Flags = new(ReadCpuFlags);

    /// <summary>The CPU's feature flags as Linux reports them, or null (other systems, or unreadable); read once.</summary>
    public static string? CpuFlags() => Flags.Value;

    private static string? ReadCpuFlags()
    {
        try
        {
            return OperatingSystem.IsLinux()
                ? File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("flags", StringComparison.Ordinal) || l.StartsWith("Features", StringComparison.Ordinal))
                : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }
}
