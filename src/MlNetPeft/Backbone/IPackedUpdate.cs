using static TorchSharp.torch;

namespace MlNetPeft.Backbone;

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
