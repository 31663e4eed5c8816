using MlNetPeft.Backbone;
using static TorchSharp.torch;

namespace MlNetPeft.Tests.Backbone;

/// <summary>config.json's hidden_act: each name computes transformers' function for it, reaches the feed-forward, and
/// an unknown name is refused naming the file and the names that work.</summary>
[TestClass]
public sealed class HiddenActivationTests
{
    private static double TanhGelu(double x) => 0.5 * x * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));
    private static double Sigmoid(double x) => 1 / (1 + Math.Exp(-x));

    /// <summary>erf by its Maclaurin series, good to ~1e-11 for |x| ≤ 4 in double (.NET has no Math.Erf).</summary>
    private static double Erf(double x)
    {
        double term = x, sum = x;
        for (int n = 1; n < 120; n++)
        {
            term *= -x * x / n;
            sum += term / (2 * n + 1);
        }
        return 2 / Math.Sqrt(Math.PI) * sum;
    }

    /// <summary>transformers' activations.py, written out in double.</summary>
    private static readonly Dictionary<string, Func<double, double>> Transformers = new()
    {
        ["gelu"] = x => 0.5 * x * (1 + Erf(x / Math.Sqrt(2))),
        ["gelu_python"] = x => 0.5 * x * (1 + Erf(x / Math.Sqrt(2))),
        ["gelu_new"] = TanhGelu,
        ["gelu_fast"] = x => 0.5 * x * (1 + Math.Tanh(x * 0.7978845608 * (1 + 0.044715 * x * x))),
        ["gelu_pytorch_tanh"] = TanhGelu,
        ["quick_gelu"] = x => x * Sigmoid(1.702 * x),
        ["relu"] = x => Math.Max(x, 0),
        ["silu"] = x => x * Sigmoid(x),
        ["swish"] = x => x * Sigmoid(x),
    };

    [TestMethod]
    public void EachNameComputesTransformersFunction()
    {
        using var scope = NewDisposeScope();
        var x = linspace(-4, 4, 801, dtype: ScalarType.Float64);
        var inputs = x.data<double>().ToArray();
        foreach (var (name, expected) in Transformers)
        {
            Assert.IsNull(HiddenActivation.Refusal(name), name);
            var actual = HiddenActivation.Of(name)(x).data<double>().ToArray();
            // gelu_fast's constant is √(2/π) to 10 digits, so it differs from the others' by ~1e-11.
            for (int i = 0; i < inputs.Length; i++)
                Assert.AreEqual(expected(inputs[i]), actual[i], 1e-9, $"{name}({inputs[i]})");
        }
    }

    [TestMethod]
    public void ConfigActivationReachesTheFeedForward()
    {
        using var scope = NewDisposeScope();
        manual_seed(3);
        var x = randn(5, 16);
        Tensor FeedForward(string act)
        {
            var config = RobertaConfig.FromJson($$"""{"hidden_size": 16, "num_attention_heads": 4, "intermediate_size": 32, "hidden_act": "{{act}}"}""", "cfg.json");
            Assert.AreEqual(act, RobertaConfig.FromJson(config.ToJson(), "saved").HiddenAct, "a model zip keeps it");
            manual_seed(5); // same dense weights for each activation
            using var intermediate = new RobertaIntermediate(config);
            var expected = HiddenActivation.Of(act)(intermediate.Dense.call(x));
            var output = intermediate.call(x);
            Assert.IsTrue(output.allclose(expected, rtol: 0, atol: 0), act);
            return output;
        }
        var exact = FeedForward("gelu");
        var tanh = FeedForward("gelu_new");
        var relu = FeedForward("relu");
        Assert.IsFalse(exact.allclose(tanh, rtol: 0, atol: 1e-6), "gelu_new is not gelu");
        Assert.IsFalse(exact.allclose(relu, rtol: 0, atol: 1e-3), "relu is not gelu");
    }

    [TestMethod]
    public void UnknownNameIsRefusedNamingFileAndChoices()
    {
        var e = Assert.ThrowsExactly<InvalidDataException>(() => RobertaConfig.FromJson("""{"hidden_act": "gelu_10"}""", "some/config.json"));
        StringAssert.Contains(e.Message, "some/config.json");
        StringAssert.Contains(e.Message, "hidden_act 'gelu_10'");
        StringAssert.Contains(e.Message, "gelu_new");
        Assert.ThrowsExactly<InvalidDataException>(() => HiddenActivation.Of("mish"));
    }
}
