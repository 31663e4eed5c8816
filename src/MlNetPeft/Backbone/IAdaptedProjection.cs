using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetPeft.Backbone;

/// <summary>A frozen attention projection with an adapter's update on top (see Adapters/AdaptedLinear).</summary>
internal interface IAdaptedProjection
{
    /// <summary>The frozen projection.</summary>
    Linear BaseLayer { get; }

    /// <summary>False once the update is folded into the frozen weight.</summary>
    bool AddsUpdate { get; }

    /// <summary>The projection's output given the frozen layer's output for the same input: the update added.</summary>
    Tensor AddUpdate(Tensor frozenOutput, Tensor input);

    /// <summary>A parameter's name as in a HF checkpoint: an adapted projection keeps its frozen Linear as base_layer
    /// ("…query.base_layer.weight" is the checkpoint's "…query.weight").</summary>
    static string CheckpointName(string parameterName) => parameterName.Replace(".base_layer.", ".", StringComparison.Ordinal);
}
