using System.Text.Json;
using MlNetPeft.Adapters.Msplora;
using MlNetPeft.Backbone;
using static TorchSharp.torch;

namespace MlNetPeft.Tests.Adapters;

/// <summary>MSPLoRA against the PyTorch reference's (bench/reference.py, wired as the authors' code: a global pair for
/// all layers, a pair per contiguous group, a pair per layer, each scaled by alpha / its rank), with the same random
/// factors and head on the tiny fixture model (Fixtures/reference-msplora, made by its make.py).</summary>
[TestClass]
public sealed class MsploraReferenceTests
{
    private static string Fixture(string file) => Path.Combine(AppContext.BaseDirectory, "Fixtures", "reference-msplora", file);

    /// <summary>Logits, cross-entropy and every factor's gradient (a shared pair's summed over the layers that use it)
    /// equal PyTorch autograd's on the reference, through the training forward with stacked factors and through each
    /// projection's own fused pairs.</summary>
    [TestMethod]
    [DataRow(true)]
    [DataRow(false)]
    public void LogitsLossAndGradientsMatchTheReference(bool stacked)
    {
        using var expected = JsonDocument.Parse(File.ReadAllText(Fixture("expected.json")));
        using var model = AdapterTests.Tiny(new MsploraConfig { Dropout = 0 });
        model.LoadTrainableState(SafeTensors.Load(Fixture("weights.safetensors")), "weights.safetensors");
        model.To(CPU, ScalarType.Float32); // packs each layer's query|key|value, as training does
        model.Train(true);
        model.Adapters.StackingEnabled = stacked;
        if (stacked)
        {
            Assert.IsTrue(model.Adapters.StackFactors(ScalarType.Float32), "MSPLoRA's factors stack");
            model.Adapters.ReleaseStacks();
        }

        var logits = model.Forward(AdapterTests.Ids, AdapterTests.Mask);
        var reference = tensor(expected.RootElement.GetProperty("logits").EnumerateArray()
            .SelectMany(r => r.EnumerateArray().Select(v => v.GetSingle())).ToArray()).view(-1, 3);
        Assert.IsLessThan(1e-5, (logits.detach() - reference).abs().max().item<float>(), "logits");
        var labels = tensor(TestData.Parity.GetProperty("labels").EnumerateArray().Select(v => v.GetInt64()).ToArray());
        var loss = nn.functional.cross_entropy(logits, labels);
        Assert.AreEqual(expected.RootElement.GetProperty("loss").GetDouble(), loss.item<float>(), 1e-6, "loss");

        loss.backward();
        var grads = model.TrainableParameters().ToDictionary(p => p.Name, p => p.Parameter.grad!.norm().item<float>());
        foreach (var entry in expected.RootElement.GetProperty("grad_norms").EnumerateObject())
        {
            double norm = entry.Value.GetDouble();
            Assert.AreEqual(norm, grads[entry.Name], 2e-5 * norm, $"gradient norm of {entry.Name}");
            grads.Remove(entry.Name);
        }
        Assert.IsEmpty(grads, "every trainable tensor has a reference gradient");
    }
}
