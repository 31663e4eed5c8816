using System.Runtime.Intrinsics;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetPeft.Backbone;

/// <summary>
/// Dropout whose CPU mask is drawn in .NET. libtorch draws a CPU dropout mask one element at a time on one thread
/// (its vectorised MKL path is taken on Intel CPUs only): 7 ns an element, a fifth of a mini-shape training step
/// here. This draws 16 random bits per element with SplitMix64 and writes the kept/dropped flags straight into the
/// mask tensor's memory, seeded from torch's generator so <c>manual_seed</c> still fixes the masks. Keep probability
/// is quantised to 1/65536 and the kept values are scaled by its exact inverse, so the output stays unbiased. On
/// CUDA, and for small tensors, this is libtorch's dropout.
/// </summary>
internal sealed class FastDropout : nn.Module<Tensor, Tensor>
{
    private const long SmallTensor = 4096;
    private readonly double _p;

    public FastDropout(double p) : base(nameof(FastDropout))
    {
        if (p is not (>= 0 and < 1)) throw new ArgumentOutOfRangeException(nameof(p), $"dropout probability must be in [0, 1), got {p}");
        _p = p;
    }

    /// <summary>Whether a call drops anything now (training, with a positive probability).</summary>
    public bool Drops => training && _p > 0;

    public override Tensor forward(Tensor x) => Apply(x, _p, training);

    public static Tensor Apply(Tensor x, double p, bool training)
    {
        if (!training || p == 0) return x;
        // Small tensors: libtorch's per-element cost is less than this path's half-dozen extra kernel calls.
        if (x.device_type != DeviceType.CPU || x.numel() < SmallTensor) return nn.functional.dropout(x, p, true);
        var dropBelow = (short)Math.Min(Math.Round(p * 65536) - 32768, short.MaxValue); // drop where a uniform int16 is below this
        double keep = (32768 - dropBelow) / 65536.0;
        using var kept = empty(x.shape, dtype: ScalarType.Bool);
        FillMask(kept.bytes, dropBelow, NextSeed());
        return x.mul(kept).mul_(1 / keep);
    }

    /// <summary>63 bits from torch's CPU generator (advances it, as libtorch's dropout would).</summary>
    private static ulong NextSeed()
    {
        using var draw = randint(0, long.MaxValue, [1], dtype: ScalarType.Int64);
        return (ulong)draw.item<long>();
    }

    /// <summary>The mask straight from the generator: element i keeps (1) where the i-th 16 random bits, read as an
    /// int16, are at least <paramref name="dropBelow"/>. SplitMix64 (Steele, Lea, Flood 2014: passes BigCrush) gives 4
    /// elements a draw; 32 are compared and narrowed to bytes at once.</summary>
    private static void FillMask(Span<byte> mask, short dropBelow, ulong seed)
    {
        ulong state = seed;
        var threshold = Vector256.Create(dropBelow);
        var one = Vector256.Create((sbyte)1);
        int i = 0;
        for (; i + 32 <= mask.Length; i += 32)
        {
            var low = Vector256.Create(Next(ref state), Next(ref state), Next(ref state), Next(ref state)).AsInt16();
            var high = Vector256.Create(Next(ref state), Next(ref state), Next(ref state), Next(ref state)).AsInt16();
            var kept = Vector256.Narrow(Vector256.GreaterThanOrEqual(low, threshold), Vector256.GreaterThanOrEqual(high, threshold)) & one;
            kept.AsByte().CopyTo(mask[i..]);
        }
        for (; i < mask.Length; i += 4)
        {
            ulong word = Next(ref state);
            for (int k = 0; k < 4 && i + k < mask.Length; k++) mask[i + k] = (short)(word >> (16 * k)) >= dropBelow ? (byte)1 : (byte)0;
        }
    }

    private static ulong Next(ref ulong state)
    {
        ulong z = state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
