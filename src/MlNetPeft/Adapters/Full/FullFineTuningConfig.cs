using MlNetPeft.Backbone;

namespace MlNetPeft.Adapters.Full;

/// <summary>
/// Full fine-tuning, the baseline adapters are compared with: no adapters, every backbone weight trains (in bf16 on
/// CUDA as a compute copy of fp32 masters, which the optimizer updates and the zip saves), and the saved model holds
/// the whole backbone.
/// </summary>
public sealed record FullFineTuningConfig : AdapterConfig
{
    public override string MethodName => "full";

    internal override bool TrainsBackbone => true;

    internal override AdapterSet Attach(RobertaModel encoder) => new();
}
