using MlNetPeft.Backbone;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetPeft.Tests.Backbone;

/// <summary>The CPU dropout with a .NET-drawn mask: rate, scaling, gradient, seeding, and the attention path it needs.</summary>
[TestClass]
public sealed class FastDropoutTests
{
    [TestMethod]
    public void DropsAtTheRateAndKeepsTheMeanUnbiased()
    {
        manual_seed(1);
        var x = ones(1000, 1001); // odd byte count: the generator's tail is used too
        var y = FastDropout.Apply(x, 0.1, training: true);
        double dropped = y.eq(0).to(ScalarType.Float64).mean().item<double>();
        double sigma = Math.Sqrt(0.1 * 0.9 / x.numel());
        Assert.AreEqual(0.1, dropped, 5 * sigma, "fraction dropped");
        var keptValues = y.masked_select(y.ne(0));
        Assert.AreEqual(1 / 0.9, keptValues.min().item<float>(), 1e-4, "kept values are scaled by 1/keep");
        Assert.AreEqual(keptValues.min().item<float>(), keptValues.max().item<float>());
        Assert.AreEqual(1.0, y.to(ScalarType.Float64).mean().item<double>(), 5 * sigma / 0.9, "unbiased");
        // Each row of 1,001 has its own pattern: no short period in the generator.
        Assert.AreEqual(0.1, y.narrow(1, 1000, 1).eq(0).to(ScalarType.Float64).mean().item<double>(), 0.05, "last column");
    }

    /// <summary>The vectorised fill and its tail give element i the verdict of the i-th 16 bits of the SplitMix64
    /// stream (seeded by one draw from torch's generator), read as an int16 and compared one at a time.</summary>
    [TestMethod]
    public void EachElementIsKeptByItsOwnSixteenBits()
    {
        foreach (int n in new[] { 4096, 4099, 100_013 })
        {
            manual_seed(5);
            var kept = FastDropout.Apply(ones(n), 0.3, training: true).ne(0).data<bool>().ToArray();
            manual_seed(5);
            ulong state = (ulong)randint(0, long.MaxValue, [1], dtype: ScalarType.Int64).item<long>();
            int dropBelow = (int)Math.Round(0.3 * 65536) - 32768;
            ulong word = 0;
            for (int i = 0; i < n; i++)
            {
                if (i % 4 == 0)
                {
                    ulong z = state += 0x9E3779B97F4A7C15UL;
                    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
                    z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
                    word = z ^ (z >> 31);
                }
                if (kept[i] != (short)(word >> (16 * (i % 4))) >= dropBelow) Assert.Fail($"element {i} of {n}");
            }
        }
    }

    [TestMethod]
    public void IsIdentityInEvaluationAndAtZeroRate()
    {
        var x = randn(4, 5);
        Assert.AreSame(x, FastDropout.Apply(x, 0.1, training: false));
        Assert.AreSame(x, FastDropout.Apply(x, 0.0, training: true));
        var module = new FastDropout(0.5);
        module.eval();
        Assert.AreSame(x, module.call(x));
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new FastDropout(1.0));
    }

    [TestMethod]
    public void GradientIsTheScaledMaskAndSeedsFixTheMask()
    {
        manual_seed(7);
        var x = randn(80, 80).requires_grad_();
        var y = FastDropout.Apply(x, 0.3, training: true);
        y.sum().backward();
        double keepProbability = 1 - Math.Round(0.3 * 65536) / 65536;
        var expected = y.detach().ne(0).to(ScalarType.Float32).div(keepProbability);
        Assert.IsTrue(x.grad!.allclose(expected, rtol: 1e-6, atol: 1e-7), "d/dx sum(dropout(x)) = mask / keep");

        manual_seed(7);
        var again = FastDropout.Apply(randn(80, 80), 0.3, training: true);
        Assert.IsTrue(again.eq(0).equal(y.detach().eq(0)).all().item<bool>(), "same seed, same mask");
        var next = FastDropout.Apply(randn(80, 80), 0.3, training: true);
        Assert.IsFalse(next.eq(0).equal(y.detach().eq(0)).all().item<bool>(), "the generator advances");
    }

    [TestMethod]
    public void CpuTrainingAttentionPathEqualsScaledDotProductAttention()
    {
        // A rate too small to drop anything (it quantises to 0/65536) takes the CPU training path with a mask that
        // keeps everything, so it must equal SDPA, padding mask included.
        var config = new RobertaConfig { HiddenSize = 32, NumAttentionHeads = 4, AttentionProbsDropoutProb = 1e-9 };
        using var attention = new RobertaSelfAttention(config);
        manual_seed(3);
        var hidden = randn(2 * 40, 32); // 2·4·40·40 attention probabilities: large enough for the .NET mask
        var keep = arange(40).lt(tensor(new long[] { 31, 40 }).unsqueeze(1)).view(2, 1, 1, 40); // row 0 padded after 31
        attention.eval();
        var expected = attention.Attend(hidden, hidden, 2, keep);
        attention.train();
        var actual = attention.Attend(hidden, hidden, 2, keep);
        Assert.IsLessThan(1e-6, (expected - actual).abs().max().item<float>());
    }
}
