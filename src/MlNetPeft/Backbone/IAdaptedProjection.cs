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

/// <summary>
/// The low-rank updates of all of one attention layer's adapted projections as one pair of factors on the packed
/// query|key|value output: Δqkv = Down(x)·UpT (see Adapters/StackedLowRank). It replaces the projections' own
/// updates while set.
/// </summary>
internal interface IPackedUpdate
{
    /// <summary>The rank-space activations [.., r] of tokens [.., hidden] (each projection's adapter dropout applied to
    /// its own copy of the tokens).</summary>
    Tensor Down(Tensor tokens);

    /// <summary>[r, 3·hidden], scaled: maps the activations onto the packed output, zero where no adapter is.</summary>
    Tensor UpT { get; }
}

internal static class LowRank
{
    /// <summary>y + alpha·h·up over the last dimension, as one addmm (the add and the scaling ride in the GEMM: on a
    /// GPU every op is a launch and an autograd node, and a training step there is bound by their count).</summary>
    public static Tensor AddTo(Tensor y, Tensor h, Tensor up, float alpha = 1) => y.dim() == 2
        ? y.addmm(h, up, 1, alpha)
        : y.view(-1, y.shape[^1]).addmm(h.reshape(-1, h.shape[^1]), up, 1, alpha).view(y.shape);
}
