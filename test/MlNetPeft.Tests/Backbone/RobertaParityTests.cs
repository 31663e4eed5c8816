using MlNetPeft.Backbone;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetPeft.Tests.Backbone;

/// <summary>The backbone against transformers (../shared/fixtures/hf-parity); LoRA's logits, loss and gradients against
/// transformers + peft are among <see cref="Training.ReferenceGradientTests"/>' cases.</summary>
[TestClass]
public sealed class RobertaParityTests
{
    private static Tensor Ints(string name) =>
        tensor(TestData.Parity.GetProperty(name).EnumerateArray().SelectMany(r => r.EnumerateArray().Select(v => v.GetInt64())).ToArray(),
            [TestData.Parity.GetProperty(name).GetArrayLength(), TestData.Parity.GetProperty(name)[0].GetArrayLength()]);

    private static float[] Floats(string name) =>
        TestData.Parity.GetProperty(name).EnumerateArray().SelectMany(r => r.EnumerateArray().Select(v => v.GetSingle())).ToArray();

    /// <summary>The tiny fixture network with its own trained head (as HF saved it).</summary>
    internal static RobertaForSequenceClassification LoadTiny()
    {
        var config = RobertaConfig.Load(Path.Combine(TestData.TinyRoberta, "config.json"));
        var network = new RobertaForSequenceClassification(config, 3);
        CheckpointLoader.Load(network, Path.Combine(TestData.TinyRoberta, "model.safetensors"), loadHead: true);
        network.eval();
        return network;
    }

    private static void AssertClose(float[] expected, Tensor actual, double tolerance, string what)
    {
        var got = actual.detach().cpu().data<float>().ToArray();
        Assert.HasCount(expected.Length, got);
        double worst = expected.Zip(got).Max(p => Math.Abs(p.First - p.Second));
        Assert.IsLessThan(tolerance, worst, $"{what}: max abs error {worst:E3}");
    }

    [TestMethod]
    public void BaseLogitsMatchTransformers()
    {
        using var network = LoadTiny();
        using var _ = no_grad();
        AssertClose(Floats("base_logits"), network.call(Ints("input_ids"), Ints("attention_mask")), 1e-5, "base logits");
    }

    [TestMethod]
    public void FirstTokenStateIsTheFullEncodersFirstPosition()
    {
        using var network = LoadTiny();
        using var _ = no_grad();
        var (ids, mask) = (Ints("input_ids"), Ints("attention_mask"));
        var full = network.Encoder.call(ids, mask);
        var first = network.Encoder.FirstTokenState(ids, mask);
        CollectionAssert.AreEqual(new long[] { full.shape[0], 1, full.shape[2] }, first.shape);
        AssertClose(full.narrow(1, 0, 1).contiguous().data<float>().ToArray(), first, 1e-6, "<s> state");
    }
}
