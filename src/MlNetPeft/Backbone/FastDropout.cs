using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetPeft.Backbone;

/// <summary>
/// Dropout whose CPU mask is drawn in .NET. libtorch draws a CPU dropout mask one element at a time on one thread
/// (its vectorised MKL path is taken on Intel CPUs only): 7 ns an element, a fifth of a mini-shape training step
/// here. This fills 16 random bits per element with SplitMix64 straight into the mask tensor's memory, seeded from
/// torch's generator so <c>manual_seed</c> still fixes the masks. Keep probability is quantised to 1/65536 and the
/// kept values are scaled by its exact inverse, so the output stays unbiased. On CUDA, and for small tensors, this is
/// libtorch's dropout.
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
        int dropBelow = (int)Math.Round(p * 65536) - 32768; // drop where a uniform int16 is below this
        double keep = (32768 - dropBelow) / 65536.0;
        using var bits = empty(x.shape, dtype: ScalarType.Int16);
        Fill(bits.bytes, NextSeed());
        using var kept = bits.ge(dropBelow);
        return x.mul(kept).mul_(1 / keep);
    }

    /// <summary>63 bits from torch's CPU generator (advances it, as libtorch's dropout would).</summary>
    private static ulong NextSeed()
    {
        using var draw = randint(0, long.MaxValue, [1], dtype: ScalarType.Int64);
        return (ulong)draw.item<long>();
    }

    /// <summary>SplitMix64 (Steele, Lea, Flood 2014): passes BigCrush, one multiply-xorshift chain per 8 bytes.</summary>
    private static void Fill(Span<byte> destination, ulong seed)
    {
        var words = MemoryMarshal.Cast<byte, ulong>(destination);
        ulong state = seed;
        for (int i = 0; i < words.Length; i++) words[i] = Next(ref state);
        var tail = destination[(words.Length * 8)..];
        if (tail.Length > 0)
        {
            Span<byte> last = stackalloc byte[8];
            MemoryMarshal.Write(last, Next(ref state));
            last[..tail.Length].CopyTo(tail);
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
