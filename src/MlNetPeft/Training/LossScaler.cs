using static TorchSharp.torch;

namespace MlNetPeft.Training;

/// <summary>
/// Dynamic loss scaling for a backbone in fp16, as PyTorch's GradScaler does it with its defaults. The loss is
/// multiplied by <see cref="Scale"/> before the backward, so that the gradients flowing back through fp16 activations
/// stay above fp16's smallest values (6e-8) instead of vanishing; the fp32 gradients are divided by it again before
/// clipping and AdamW. A step whose gradients hold an inf or NaN (scaled values beyond fp16's 65504) is skipped and the
/// scale halved; after 2000 steps in a row without one it doubles. The scale is a power of two, so scaling and
/// unscaling round nothing. bf16 has fp32's range and needs none of this.
/// </summary>
internal sealed class LossScaler
{
    public const double InitialScale = 65536, GrowthFactor = 2, BackoffFactor = 0.5;
    public const int GrowthInterval = 2000;

    /// <summary>Below this the gradients overflowed even with the loss scaled down 2^24-fold, 40 halvings from the
    /// start: the fp16 forward itself overflows, or training diverges.</summary>
    public const double SmallestScale = 1.0 / (1 << 24);

    public LossScaler(double initialScale = InitialScale) => Scale = initialScale;

    public double Scale { get; private set; }

    /// <summary>Steps since the last overflow or growth (GradScaler's growth tracker).</summary>
    public int GoodSteps { get; private set; }

    /// <summary>Takes whether this step's unscaled gradients are all finite, updates the scale, and says whether the
    /// optimizer may step.</summary>
    public bool Update(bool finite)
    {
        if (!finite)
        {
            Scale *= BackoffFactor;
            GoodSteps = 0;
            return false;
        }
        if (++GoodSteps == GrowthInterval)
        {
            // As GradScaler, which keeps the scale in fp32: it grows only while that stays finite.
            if (float.IsFinite((float)(Scale * GrowthFactor))) Scale *= GrowthFactor;
            GoodSteps = 0;
        }
        return true;
    }

    /// <summary>The scale and growth tracker as new CPU tensors (for a saved training state; fp32 holds every power of
    /// two the scale can reach exactly).</summary>
    public IEnumerable<(string Name, Tensor Tensor)> State() =>
        [("scale", tensor((float)Scale)), ("good_steps", tensor((long)GoodSteps))];

    /// <summary>Goes on from a saved <see cref="State"/>; a state saved without one (a run in another precision)
    /// leaves the initial scale.</summary>
    public void LoadState(IReadOnlyDictionary<string, Tensor> state)
    {
        if (!state.TryGetValue("scale", out var scale) || !state.TryGetValue("good_steps", out var good)) return;
        Scale = scale.to(ScalarType.Float32).item<float>();
        GoodSteps = (int)good.to(ScalarType.Int64).item<long>();
    }
}
