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

    /// <summary>
    /// When true, models loaded on the same backbone (its SHA-256), device and precision share one copy of its frozen
    /// weights: N models fine-tuned from roberta-base hold its 0.5 GB once, plus their adapters and heads, as PEFT keeps
    /// several adapters on one base model. Their adapters then stay unmerged (merging would change the shared weights),
    /// which costs a little per token. Weights a model trained (full fine-tuning's, trained biases) stay its own. The copy
    /// is freed when the last model using it is disposed. Default false.
    /// </summary>
    public static bool ShareBackbone { get; set; }
}
