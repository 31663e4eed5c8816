using MlNetPeft.Backbone;

namespace MlNetPeft.Adapters.Full;

/// <summary>
/// Full fine-tuning, the baseline adapters are compared with: no adapters, every backbone weight trains (in
/// fp32 even on CUDA, since the weights themselves are updated), and the saved model holds the whole backbone.
/// </summary>
public sealed record FullFineTuningConfig : AdapterConfig
{
    public override string MethodName => "full";

    internal override bool TrainsBackbone => true;

    internal override AdapterSet Attach(RobertaModel encoder) => new();
}
