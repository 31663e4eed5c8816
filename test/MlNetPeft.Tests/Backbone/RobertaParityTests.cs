using System.Text.Json;
using MlNetPeft.Adapters;
using MlNetPeft.Adapters.Lora;
using MlNetPeft.Backbone;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetPeft.Tests.Backbone;

/// <summary>Logits, loss and gradients against transformers + peft (../shared/fixtures/hf-parity).</summary>
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

    /// <summary>The fixture network with the PEFT LoRA adapter (r=4, alpha 8, query+value) and its head.</summary>
    internal static PeftModel LoadTinyWithPeftLora()
    {
        var config = RobertaConfig.Load(Path.Combine(TestData.TinyRoberta, "config.json"));
        var weights = SafeTensors.Load(Path.Combine(TestData.TinyRoberta, "model.safetensors"));
        var model = PeftModel.Create(config, 3, new LoraConfig { Rank = 4, Alpha = 8, Dropout = 0, Targets = ["value", "query"] },
            weights, "tiny-roberta");
        model.LoadPeftAdapter(TestData.TinyLora);
        model.Train(false);
        return model;
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

    [TestMethod]
    public void LoraLogitsLossAndGradientsMatchPeft()
    {
        using var model = LoadTinyWithPeftLora();
        using (no_grad()) AssertClose(Floats("lora_logits"), model.Forward(Ints("input_ids"), Ints("attention_mask")), 1e-5, "LoRA logits");

        var labels = tensor(TestData.Parity.GetProperty("labels").EnumerateArray().Select(v => v.GetInt64()).ToArray());
        var loss = nn.functional.cross_entropy(model.Forward(Ints("input_ids"), Ints("attention_mask")), labels);
        Assert.AreEqual(TestData.Parity.GetProperty("lora_loss").GetDouble(), loss.item<float>(), 1e-6, "loss");

        loss.backward();
        var grads = model.TrainableParameters().ToDictionary(p => p.Name, p => p.Parameter.grad!.norm().item<float>());
        int compared = 0;
        foreach (var entry in TestData.Parity.GetProperty("grad_norms").EnumerateObject())
        {
            var ours = PeftLoraImport.FromPeftKey(entry.Name.Replace(".default", ""));
            Assert.IsTrue(grads.TryGetValue(ours, out var norm), $"no gradient for {entry.Name} (as {ours})");
            double expected = entry.Value.GetDouble();
            Assert.AreEqual(expected, norm, 1e-4 * expected, $"gradient norm of {entry.Name}");
            compared++;
        }
        Assert.AreEqual(grads.Count, compared, "every trainable tensor has a reference gradient");
    }
}
