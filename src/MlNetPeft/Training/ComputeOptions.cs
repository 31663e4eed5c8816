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
/// trains (full fine-tuning) in bf16 or fp16 is a compute copy of fp32 master weights.</summary>
public enum ComputePrecision
{
    /// <summary>fp32 on the CPU; on CUDA what the GPU computes fastest: bf16 where it has bf16 tensor cores (compute
    /// capability 8.0 and newer: A100, H100, RTX 30xx and later), fp16 on 7.x (V100, T4, RTX 20xx), which emulate bf16
    /// more slowly than fp32, and fp32 on older GPUs.</summary>
    Auto,
    /// <summary>fp32 everywhere (bit-for-bit parity with PyTorch fp32).</summary>
    Float32,
    /// <summary>bf16 backbone weights and activations, fp32 adapters, head, optimizer state and (full fine-tuning) master weights.</summary>
    BFloat16,
    /// <summary>fp16 backbone weights and activations, fp32 adapters, head, optimizer state and (full fine-tuning)
    /// master weights; training scales the loss dynamically as PyTorch's GradScaler does, so that small gradients do
    /// not vanish below fp16's range (a step whose gradients overflow is skipped and the scale halved).</summary>
    Float16,
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

    public static ScalarType SelectPrecision(ComputePrecision choice, Device device) =>
        SelectPrecision(choice, device, choice == ComputePrecision.Auto ? Capability(device) : null);

    /// <summary>The precision for <paramref name="choice"/> on <paramref name="device"/>, given the GPU's compute
    /// capability (null where unknown: then Auto keeps bf16 on CUDA, right for every GPU of the last generations).</summary>
    public static ScalarType SelectPrecision(ComputePrecision choice, Device device, (int Major, int Minor)? capability) => choice switch
    {
        ComputePrecision.Float32 => ScalarType.Float32,
        ComputePrecision.BFloat16 => ScalarType.BFloat16,
        ComputePrecision.Float16 => ScalarType.Float16,
        _ when device.type != DeviceType.CUDA => ScalarType.Float32,
        _ => capability?.Major switch
        {
            null or >= 8 => ScalarType.BFloat16,
            7 => ScalarType.Float16,
            _ => ScalarType.Float32,
        },
    };

    /// <summary>The device as logs name it, with what <see cref="ComputePrecision.Auto"/> goes by on a GPU:
    /// "CPU", "CUDA (compute capability 9.0)", or "CUDA (compute capability unknown)" where the driver does not answer.</summary>
    public static string Describe(Device device) =>
        device.type != DeviceType.CUDA ? device.type.ToString()
        : Capability(device) is { } c ? $"{device.type} (compute capability {c.Major}.{c.Minor})" : $"{device.type} (compute capability unknown)";

    /// <summary>The compute capability of a CUDA device, or null (not CUDA, or the driver cannot be asked).</summary>
    public static (int Major, int Minor)? Capability(Device device) =>
        device.type == DeviceType.CUDA ? CudaCapability.Of(Math.Max(device.index, 0)) : null;

    /// <summary>
    /// A warning when the precision is one this device only emulates, more slowly than fp32, or null: bf16 or fp16 on a
    /// CPU without native instructions for it (<see cref="SlowCpuPrecisionWarning"/>), or bf16 on a GPU of compute
    /// capability below 8.0, which has no bf16 tensor cores (<see cref="SlowCudaPrecisionWarning"/>).
    /// </summary>
    public static string? SlowPrecisionWarning(Device device, ScalarType precision) =>
        device.type == DeviceType.CUDA ? SlowCudaPrecisionWarning(precision, Capability(device)) : SlowCpuPrecisionWarning(device, precision, CpuFlags());

    /// <summary>The GPU half of <see cref="SlowPrecisionWarning"/>, given the capability (null: unknown, no warning).
    /// Users measured bf16 matmuls at half fp32's speed on a GTX 1080 (6.1); fp16 is not slower than fp32 on any GPU.</summary>
    public static string? SlowCudaPrecisionWarning(ScalarType precision, (int Major, int Minor)? capability)
    {
        if (precision != ScalarType.BFloat16 || capability is not { Major: < 8 } c) return null;
        return $"Precision = BFloat16 on a GPU of compute capability {c.Major}.{c.Minor}, which has no bf16 tensor cores: " +
            "CUDA emulates bf16, more slowly than fp32. Use Precision = Auto (fp16 on compute capability 7.x, fp32 below) " +
            "or Float16.";
    }

    /// <summary>
    /// A warning when bf16 or fp16 is chosen on a CPU whose flags (Linux's /proc/cpuinfo; <paramref name="cpuFlags"/>,
    /// null when unknown) show no native instructions for it: libtorch then converts in software. bf16 trained 35×
    /// slower than fp32 on a 2-core AMD EPYC with AVX2 only (inference 5×), fp16 about 35× slower on one with AVX-512
    /// and native bf16 but no fp16 (mini shape). Null otherwise.
    /// </summary>
    public static string? SlowCpuPrecisionWarning(Device device, ScalarType precision, string? cpuFlags)
    {
        if (device.type != DeviceType.CPU || cpuFlags is null) return null;
        (string Name, string[] Native)? kind = precision switch
        {
            ScalarType.BFloat16 => ("bf16", ["avx512_bf16", "amx_bf16", "bf16"]),     // x86, x86 AMX, Arm
            ScalarType.Float16 => ("fp16", ["avx512_fp16", "amx_fp16", "asimdhp"]),   // x86, x86 AMX, Arm
            _ => null,
        };
        if (kind is not var (name, native)) return null;
        var flags = cpuFlags.Split((char[])[' ', '\t', '\n', ':'], StringSplitOptions.RemoveEmptyEntries);
        if (flags.Intersect(native).Any()) return null;
        return $"Precision = {precision} on a CPU without native {name} instructions (no {string.Join(", ", native[..^1])} or " +
            $"{native[^1]} among its flags): libtorch converts in software, and {name} trained about 35× slower than fp32 on " +
            "such a CPU. Use Precision = Auto or Float32 here.";
    }

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
