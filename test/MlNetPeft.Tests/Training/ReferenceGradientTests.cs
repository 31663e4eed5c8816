using System.Text.Json;
using MlNetPeft.Adapters;
using MlNetPeft.Adapters.Full;
using MlNetPeft.Adapters.Lora;
using MlNetPeft.Adapters.LoraSquared;
using MlNetPeft.Adapters.Msplora;
using MlNetPeft.Backbone;
using MlNetPeft.Tests.Adapters;
using static TorchSharp.torch;

namespace MlNetPeft.Tests.Training;

/// <summary>Our training forward and backward against the PyTorch reference's (bench/reference.py, equal to
/// transformers on the fixture to 1e-8) on the tiny fixture model: logits, cross-entropy on the parity labels and the
/// gradient of every trainable tensor (Fixtures/reference, made by its make.py).</summary>
[TestClass]
public sealed class ReferenceGradientTests
{
    private static string Fixture(string file) => Path.Combine(AppContext.BaseDirectory, "Fixtures", "reference", file);

    private static readonly Lazy<JsonDocument> Expected = new(() => JsonDocument.Parse(File.ReadAllText(Fixture("expected.json"))));

    /// <summary>MSPLoRA wired as the authors' code (a global pair for all layers, a pair per contiguous group, a pair per
    /// layer, each scaled by alpha / its rank), with the reference's random factors and head: a shared pair's gradient
    /// sums over the layers that use it. Through the training forward with stacked factors, and through each
    /// projection's own fused pairs.</summary>
    [TestMethod]
    [DataRow(true)]
    [DataRow(false)]
    public void MsploraMatchesTheReference(bool stacked)
    {
        using var model = AdapterTests.Tiny(new MsploraConfig { Dropout = 0 });
        model.LoadTrainableState(SafeTensors.Load(Fixture("msplora.safetensors")), "msplora.safetensors");
        model.To(CPU, ScalarType.Float32); // packs each layer's query|key|value, as training does
        model.Train(true);
        model.Adapters.StackingEnabled = stacked;
        Assert.AreEqual(stacked, model.Adapters.StackFactors(ScalarType.Float32), "MSPLoRA's factors stack");
        model.Adapters.ReleaseStacks();
        AssertLikeTheReference(model, Expected.Value.RootElement.GetProperty("msplora"));
    }

    /// <summary>LoRA² as the authors' SVDLinear computes it (U and V each a LoRA of inner rank k, λ masked, scaled by
    /// alpha / (r + 1e-5)) and its regulariser as the paper means it (orthonormality of all four factors plus the cross
    /// term between the planes), one singular value pruned: through the stacked training forward and each projection's
    /// own factors.</summary>
    [TestMethod]
    [DataRow(true)]
    [DataRow(false)]
    public void LoraSquaredMatchesTheReference(bool stacked)
    {
        using var model = AdapterTests.Tiny(new SvdConfig
        {
            Variant = SvdVariant.LoraSquared, InitialRank = 4, InnerRank = 2, Alpha = 8, Dropout = 0,
            OrthogonalityWeight = 0.1, CrossOrthogonalityWeight = 0.1,
        });
        model.LoadTrainableState(SafeTensors.Load(Fixture("lorasquared.safetensors")), "lorasquared.safetensors");
        model.To(CPU, ScalarType.Float32);
        model.Train(true);
        model.Adapters.StackingEnabled = stacked;
        Assert.AreEqual(stacked, model.Adapters.StackFactors(ScalarType.Float32), "LoRA²'s factors stack");
        model.Adapters.ReleaseStacks();
        var hooks = model.Config.CreateHooks(model.Adapters, totalSteps: 10)!;
        AssertLikeTheReference(model, Expected.Value.RootElement.GetProperty("lorasquared"), hooks.ExtraLoss);
    }

    /// <summary>Full fine-tuning from the fixture checkpoint and its head: the gradient of every backbone weight
    /// (packed query|key|value included; none for the pad rows of the embeddings, as nn.Embedding's padding_idx).</summary>
    [TestMethod]
    public void FullFineTuningMatchesTheReference()
    {
        using var model = AdapterTests.Tiny(new FullFineTuningConfig());
        model.To(CPU, ScalarType.Float32);
        model.Train(true);
        // Sums over every token (the embeddings' gradients) round more: measured 8.7e-6 at worst.
        AssertLikeTheReference(model, Expected.Value.RootElement.GetProperty("full"), relativeTolerance: 1e-4);
    }

    /// <summary>DoRA as peft's DoraLinearLayer computes it (the rows of W + scale·B·A rescaled to the trained magnitude,
    /// their norms held constant in the backward), on a PEFT DoRA adapter written by following peft's code
    /// (Fixtures/peft-emulated/tiny-dora): query, value and intermediate.dense.</summary>
    [TestMethod]
    public void DoraMatchesPeftsDoraLayer()
    {
        var directory = Path.Combine(TestData.PeftEmulated, "tiny-dora");
        using var model = AdapterTests.Tiny(PeftLoraImport.ReadConfig(directory) with { Dropout = 0 });
        model.LoadPeftAdapter(directory);
        model.To(CPU, ScalarType.Float32);
        model.Train(true);
        AssertLikeTheReference(model, TestData.PeftEmulatedExpected.GetProperty("dora"), ourName: PeftLoraImport.FromPeftKey);
    }

    /// <summary>Asserts logits, loss (cross-entropy on the parity labels, plus <paramref name="extraLoss"/>: a
    /// regulariser) and the gradient norm of every trainable tensor against <paramref name="expected"/>'s, whose
    /// tensors <paramref name="ourName"/> names as we do (where the reference's names are not ours).</summary>
    internal static void AssertLikeTheReference(PeftModel model, JsonElement expected, Func<Tensor?>? extraLoss = null,
        Func<string, string>? ourName = null, double relativeTolerance = 3e-5)
    {
        var logits = model.Forward(AdapterTests.Ids, AdapterTests.Mask);
        var reference = tensor(expected.GetProperty("logits").EnumerateArray()
            .SelectMany(r => r.EnumerateArray().Select(v => v.GetSingle())).ToArray()).view(-1, 3);
        Assert.IsLessThan(1e-5, (logits.detach() - reference).abs().max().item<float>(), "logits");
        var labels = tensor(TestData.Parity.GetProperty("labels").EnumerateArray().Select(v => v.GetInt64()).ToArray());
        var loss = nn.functional.cross_entropy(logits, labels);
        if (extraLoss?.Invoke() is { } extra) loss = loss.add(extra);
        Assert.AreEqual(expected.GetProperty("loss").GetDouble(), loss.item<float>(), 1e-6, "loss");

        loss.backward();
        var grads = model.TrainableParameters().ToDictionary(p => p.Name, p => p.Parameter.grad?.norm().item<float>() ?? 0f);
        foreach (var entry in expected.GetProperty("grad_norms").EnumerateObject())
        {
            double norm = entry.Value.GetDouble();
            Assert.IsTrue(grads.Remove(ourName?.Invoke(entry.Name) ?? entry.Name, out var ours), $"no trainable {entry.Name}");
            Assert.AreEqual(norm, ours, relativeTolerance * norm + 1e-9, $"gradient norm of {entry.Name}"); // key biases: 0 in exact arithmetic
        }
        Assert.IsEmpty(grads, "every trainable tensor has a reference gradient");
    }
}
