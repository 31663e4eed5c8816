using MlNetPeft.Training;

namespace MlNetPeft.MlNet;

/// <summary>
/// Where and in what precision <c>mlContext.Model.Load</c> puts the MlNetPeft models it reads: ML.NET gives a loaded
/// transformer no options. Applies to models loaded after it is set. Example: <c>LoadSettings.Precision =
/// ComputePrecision.BFloat16</c> for faster prediction on a CPU with native bf16.
/// </summary>
public static class LoadSettings
{
    /// <summary>CUDA when available (default), or always the CPU, or CUDA required.</summary>
    public static ComputeDevice Device { get; set; } = ComputeDevice.Auto;

    /// <summary>Backbone precision: by default fp32 on the CPU, and on CUDA bf16, or fp16 on GPUs without bf16 tensor
    /// cores (see <see cref="ComputePrecision.Auto"/>).</summary>
    public static ComputePrecision Precision { get; set; } = ComputePrecision.Auto;
}
