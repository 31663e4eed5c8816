using static TorchSharp.torch;

namespace MlNetPeft.Adapters;

/// <summary>An additive update of a frozen Linear that can also be written as a dense ΔW (out × in) for merging.</summary>
internal interface IWeightDelta
{
    /// <summary>Δy for input x (same leading shape as x, last dimension = out features).</summary>
    Tensor call(Tensor x);

    /// <summary>The equivalent dense update ΔW, so that Δy = x·ΔWᵀ.</summary>
    Tensor DeltaWeight();

    /// <summary>This update as one LoRA pair, ΔW = Scaling·Up·Down with Down [rank, in] and Up [out, rank] (how it is
    /// exported as a PEFT LoRA adapter).</summary>
    (Tensor Down, Tensor Up, double Scaling) AsLoraPair();

    /// <summary>This update's input dropout (for stacked forwards, which apply it themselves).</summary>
    Tensor Dropout(Tensor x);

    /// <summary>Whether <see cref="Dropout"/> drops anything now (training, with a positive probability).</summary>
    bool DropsInput { get; }
}
