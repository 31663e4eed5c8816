using MlNetPeft.Adapters;
using MlNetPeft.Adapters.Lora;
using MlNetPeft.Backbone;
using MlNetPeft.Tests.Backbone;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetPeft.Tests.Adapters;

/// <summary>DoRA (LoraConfig.UseDora): the weight decomposed into a trained length per output row and a LoRA-adapted
/// direction, as the paper defines it and PEFT computes it.</summary>
[TestClass]
public sealed class DoraTests
{
    /// <summary>A Linear 24 → 16 with bias and a DoRA adapter of rank 4 moved as if trained.</summary>
    private static (AdaptedLinear Layer, LowRankUpdate Pair, DoraMagnitude Magnitude) Layer(double dropout = 0)
    {
        manual_seed(2);
        var linear = nn.Linear(24, 16);
        var pair = new LowRankUpdate(24, 16, 4, alpha: 8, dropout);
        var layer = new AdaptedLinear(linear, [pair]);
        var magnitude = new DoraMagnitude(linear.weight!);
        layer.UseMagnitude(magnitude);
        using (no_grad())
        {
            Assert.IsLessThan(1e-6, (magnitude.Weight - linear.weight!.norm(1, false, 2)).abs().max().item<float>(), "starts at ‖W‖");
            pair.B.copy_(randn_like(pair.B).mul(0.3));
            pair.A.copy_(randn_like(pair.A).mul(0.3));
            magnitude.Weight.mul_(randn_like(magnitude.Weight).exp());
        }
        return (layer, pair, magnitude);
    }

    /// <summary>y = x·(m ⊙ V / ‖V‖)ᵀ + b with V = W + (alpha/r)·B·A and ‖V‖ per row a constant: the paper's equation
    /// (5) with its §4.3 gradient, written out.</summary>
    private static Tensor Definition(AdaptedLinear layer, LowRankUpdate pair, DoraMagnitude magnitude, Tensor x)
    {
        var v = layer.BaseLayer.weight!.add(pair.B.matmul(pair.A).mul(pair.Scaling));
        var direction = v.div(v.norm(1, true, 2).detach());
        return nn.functional.linear(x, direction.mul(magnitude.Weight.unsqueeze(1)), layer.BaseLayer.bias);
    }

    [TestMethod]
    public void OutputAndGradientsAreThoseOfTheDecomposedWeight()
    {
        var (layer, pair, magnitude) = Layer();
        var x = randn(5, 24);
        var ours = layer.call(x);
        var theirs = Definition(layer, pair, magnitude, x);
        Assert.IsLessThan(1e-5, (ours - theirs).abs().max().item<float>(), "output");

        var upstream = randn_like(ours);
        Tensor[] Gradients(Tensor y) => autograd.grad([y.mul(upstream).sum()], [magnitude.Weight, pair.A, pair.B]).ToArray();
        foreach (var (g, name) in Gradients(ours).Zip(Gradients(theirs)).Zip(new[] { "m", "A", "B" }))
            Assert.IsLessThan(1e-5 * (1 + g.Second.abs().max().item<float>()), (g.First - g.Second).abs().max().item<float>(), $"∂/∂{name}");
    }

    /// <summary>With adapter dropout, as PEFT: the dropped input goes through both the frozen weight's share and the
    /// update (one mask), the undropped one through the frozen layer.</summary>
    [TestMethod]
    public void DropoutDropsTheInputOfTheRescaledShareAsPeftDoes()
    {
        var (layer, pair, magnitude) = Layer(dropout: 0.5);
        layer.train();
        pair.train();
        var x = randn(5, 24);
        manual_seed(9);
        var ours = layer.call(x);
        manual_seed(9);
        var dropped = pair.Dropout(x);
        using var _ = no_grad();
        var scale = magnitude.Weight.div(layer.BaseLayer.weight!.add(pair.DeltaWeight()).norm(1, false, 2));
        var frozen = nn.functional.linear(dropped, layer.BaseLayer.weight!);
        var update = nn.functional.linear(nn.functional.linear(dropped, pair.A), pair.B).mul(pair.Scaling);
        var expected = layer.BaseLayer.call(x).add(scale.sub(1).mul(frozen)).add(scale.mul(update));
        Assert.IsLessThan(1e-5, (ours - expected).abs().max().item<float>());
        Assert.IsGreaterThan(1e-2, (dropped - x).abs().max().item<float>(), "something was dropped");
    }

    [TestMethod]
    public void MergingWritesTheDecomposedWeight()
    {
        var (layer, pair, magnitude) = Layer();
        using var _ = no_grad();
        var x = randn(5, 24);
        var expected = Definition(layer, pair, magnitude, x);
        layer.Merge();
        Assert.IsLessThan(1e-5, (layer.call(x) - expected).abs().max().item<float>());
    }

    /// <summary>On the tiny model: adapters on query and value, bf16 backbone against fp32. DoRA's rescaled rows move
    /// the tiny model's logits little, so the bound is the bf16 backbone's own rounding, not the adapters' effect.</summary>
    [TestMethod]
    public void ABfloatBackboneAddsNoMoreThanItsOwnRounding()
    {
        Tensor Logits(AdapterConfig adapters, ScalarType dtype)
        {
            using var model = AdapterTests.Tiny(adapters);
            model.To(CPU, dtype);
            using (no_grad())
            {
                manual_seed(4);
                foreach (var (name, p) in model.Adapters.named_parameters())
                    if (name.EndsWith("_magnitude.weight", StringComparison.Ordinal)) p.mul_(randn_like(p).exp());
                    else p.copy_(randn_like(p).mul(0.3));
                return model.Forward(AdapterTests.Ids, AdapterTests.Mask);
            }
        }
        var dora = new LoraConfig { Dropout = 0, UseDora = true };
        double rounding = (Logits(new LoraConfig { Dropout = 0 }, ScalarType.BFloat16) - Logits(new LoraConfig { Dropout = 0 }, ScalarType.Float32)).abs().max().item<float>();
        double error = (Logits(dora, ScalarType.BFloat16) - Logits(dora, ScalarType.Float32)).abs().max().item<float>();
        Assert.IsLessThan(2 * rounding, error, $"DoRA bf16 {error}, LoRA bf16 {rounding}");
    }
}
