using MlNetPeft.Adapters;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetPeft.Tests.Adapters;

/// <summary>Fused LoRA pairs (MSPLoRA's global, mid and layer pairs run as one) still drop their input with a mask
/// each, as the authors' separate nn.Dropout modules do.</summary>
[TestClass]
public sealed class PairDropoutTests
{
    /// <summary>Three pairs (ranks 2, 1, 1) on a Linear 4 → 3 with zero weights; pair k reads input feature 0 into
    /// output k at scale 1, so with x = 1 output k is pair k's dropped copy of x₀: 0 or 1/(1 − p). Each output keeps
    /// about 1 − p of the rows, and any two disagree on about 2p(1 − p) of them (a shared mask: never).</summary>
    [TestMethod]
    public void FusedPairsDrawAMaskEach()
    {
        const double p = 0.5;
        const int rows = 3000;
        var pairs = new[] { 2, 1, 1 }.Select(r => new LowRankUpdate(4, 3, r, alpha: r, p)).ToArray();
        using var layer = new AdaptedLinear(nn.Linear(4, 3), pairs, fuse: true);
        using (no_grad())
        {
            layer.BaseLayer.weight!.zero_();
            layer.BaseLayer.bias!.zero_();
            for (int k = 0; k < pairs.Length; k++)
            {
                pairs[k].A.zero_().narrow(0, 0, 1).narrow(1, 0, 1).fill_(1);
                pairs[k].B.zero_().narrow(0, k, 1).narrow(1, 0, 1).fill_(1);
            }
        }
        var x = ones(rows, 4);
        foreach (var pair in pairs) pair.train(false);
        using (no_grad())
            Assert.IsTrue(layer.call(x).eq(1).all().item<bool>(), "no dropout outside training");

        foreach (var pair in pairs) pair.train(true);
        manual_seed(3);
        using var y = layer.call(x).detach();
        Assert.IsTrue(y.eq(0).logical_or(y.eq(1 / (1 - p))).all().item<bool>(), "each output is a dropped, rescaled x₀");
        var kept = y.gt(0).to(ScalarType.Float32);
        for (int k = 0; k < pairs.Length; k++)
            Assert.AreEqual(1 - p, kept[.., k].mean().item<float>(), 0.05, $"pair {k} keeps 1 − p of the rows");
        for (int a = 0; a < pairs.Length; a++)
            for (int b = a + 1; b < pairs.Length; b++)
                Assert.AreEqual(2 * p * (1 - p), kept[.., a].ne(kept[.., b]).to(ScalarType.Float32).mean().item<float>(), 0.05,
                    $"pairs {a} and {b} drop independently");
    }
}
