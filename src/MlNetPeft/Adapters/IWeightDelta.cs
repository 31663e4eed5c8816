using static TorchSharp.torch;

namespace MlNetPeft.Adapters;

/// <summary>An additive update of a frozen Linear that can also be written as a dense ΔW (out × in) for merging.</summary>
internal interface IWeightDelta
{
    /// <summary>Δy for input x (same leading shape as x, last dimension = out features).</summary>
    Tensor call(Tensor x);

    /// <summary>The equivalent dense update ΔW, so that Δy = x·ΔWᵀ.</summary>
    Tensor DeltaWeight();
}
