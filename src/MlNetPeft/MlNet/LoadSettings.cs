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

    /// <summary>Backbone precision: bf16 on CUDA and fp32 on the CPU by default.</summary>
    public static ComputePrecision Precision { get; set; } = ComputePrecision.Auto;
}
