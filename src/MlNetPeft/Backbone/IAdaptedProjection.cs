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
}
