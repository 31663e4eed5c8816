using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetPeft.Adapters;
using MlNetPeft.Adapters.Lora;
using MlNetPeft.MlNet;

namespace MlNetPeft.Tests.MlNet;

/// <summary>A LoRA trainer that starts from a PEFT adapter made by peft 0.21 (the parity fixture's).</summary>
[TestClass]
public sealed class PeftAdapterStartTests
{
    private static LoraOptions FromFixtureAdapter(int epochs) => PeftTrainerFixture.Tiny(new LoraOptions
    {
        InitialPeftAdapter = TestData.TinyLora, MaxEpochs = epochs, LearningRate = 1e-2, BatchSize = 16, LoraDropout = 0,
        Rank = 8, LoraAlpha = 16, Targets = ["query"], // replaced by the adapter's r = 4, alpha = 8, query and value
    });

    [TestMethod]
    public void WithoutTrainingItScoresAsPeftDidAndSurvivesSaveAndLoad()
    {
        var ml = new MLContext(seed: 1);
        var peft = PeftTrainerFixture.FitOnToyRows(ml, FromFixtureAdapter(epochs: 0));
        var lora = (LoraConfig)peft.Adapter;
        Assert.AreEqual((4, 8.0), (lora.Rank, lora.Alpha));
        CollectionAssert.AreEquivalent(new[] { "query", "value" }, lora.Targets);

        PeftTrainerFixture.ScoresAsFixtureLogits(ml, peft, TestData.Parity.GetProperty("lora_logits")); // transformers + peft's
    }

    [TestMethod]
    public void TrainingContinuesFromTheAdapter()
    {
        var peft = PeftTrainerFixture.FitOnToyRows(new MLContext(seed: 1), FromFixtureAdapter(epochs: 2));
        var start = PeftTrainerFixture.FitOnToyRows(new MLContext(seed: 1), FromFixtureAdapter(epochs: 0));
        Assert.IsGreaterThan(1e-3, PeftTrainerFixture.LargestScoreDifference(peft, start), "two epochs changed the scores");
    }

    /// <summary>A PEFT LoRA adapter whose rank_pattern and alpha_pattern give its projections ranks 2 to 6 and alphas 5
    /// to 24, the first matching key applying as in PEFT (Fixtures/peft-emulated, written by following peft's code):
    /// each projection gets its own pair, the model scores as PEFT does, and its export reads back the same.</summary>
    [TestMethod]
    public void RankAndAlphaPatternsGiveEachProjectionItsOwnPair()
    {
        var ml = new MLContext(seed: 1);
        var peft = PeftTrainerFixture.FitOnToyRows(ml, PeftTrainerFixture.Tiny(new LoraOptions { InitialPeftAdapter = TestData.TinyLoraPatterns, MaxEpochs = 0 }));
        var lora = (LoraConfig)peft.Adapter;
        var state = peft.TrainableState();
        foreach (var module in TestData.PeftEmulatedExpected.GetProperty("lora_patterns_shapes").EnumerateObject())
        {
            var parts = module.Name["roberta.encoder.layer.".Length..].Split('.', 2);
            var (layer, target) = (int.Parse(parts[0]), AdapterTargets.All.Single(t => AdapterTargets.ModulePath(t) == parts[1]));
            var expected = (module.Value.GetProperty("r").GetInt32(), module.Value.GetProperty("lora_alpha").GetDouble());
            Assert.AreEqual(expected, lora.RankAndAlphaOf(layer, target), module.Name);
            Assert.AreEqual(expected.Item1, state[$"adapters.layer{layer}_{target.Replace('.', '_')}.lora_A"].shape[0], module.Name);
        }
        PeftTrainerFixture.ScoresAsFixtureLogits(ml, peft, TestData.PeftEmulatedExpected.GetProperty("lora_patterns_logits"));

        var exported = TestFolders.Create("lora-patterns-export");
        peft.SavePeftAdapter(exported);
        var again = PeftTrainerFixture.FitOnToyRows(new MLContext(seed: 1), PeftTrainerFixture.Tiny(new LoraOptions { InitialPeftAdapter = exported, MaxEpochs = 0 }));
        Assert.IsLessThan(1e-6, PeftTrainerFixture.LargestScoreDifference(peft, again), "the export reads back as the same model");
    }

    /// <summary>RankPattern and AlphaPattern as options (PEFT's rank_pattern, alpha_pattern): the first matching key
    /// applies; such a model trains (its pairs of differing ranks do not stack) and bad keys are named.</summary>
    [TestMethod]
    public void RankPatternOptionsShapeThePairsAndTrain()
    {
        var options = PeftTrainerFixture.Lora(epochs: 1);
        options.Targets = ["query", "value"];
        options.RankPattern = new() { [@"layer\.1\..*query"] = 3, ["query"] = 2 };
        options.AlphaPattern = new() { ["value"] = 4 };
        var ml = new MLContext(seed: 1);
        var (model, progress) = PeftTrainerFixture.Fit(ml, ml.Data.LoadFromEnumerable(ToyText.Rows(40, seed: 1)), options);
        var peft = ((TransformerChain<ITransformer>)model).OfType<PeftTextTransformer>().Single();
        var state = peft.TrainableState();
        for (int layer = 0; layer < 4; layer++)
        {
            Assert.AreEqual(layer == 1 ? 3 : 2, state[$"adapters.layer{layer}_query.lora_A"].shape[0], $"layer {layer} query");
            Assert.AreEqual(8, state[$"adapters.layer{layer}_value.lora_A"].shape[0], $"layer {layer} value");
            Assert.AreEqual((8, 4.0), ((LoraConfig)peft.Adapter).RankAndAlphaOf(layer, "value"));
        }
        Assert.IsTrue(progress.Count > 0 && progress.All(p => double.IsFinite(p.Loss)));

        options.RankPattern = new() { ["("] = 2 };
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentException>(() =>
            PeftTrainerFixture.Fit(ml, ml.Data.LoadFromEnumerable(ToyText.Rows(20, seed: 1)), options)).Message, "RankPattern");
    }

    [TestMethod]
    public void BadStartsAreNamed()
    {
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(ToyText.Rows(20, seed: 1, classes: 2));
        // The fixture's head has 3 classes, this data 2.
        var e = Assert.ThrowsExactly<InvalidDataException>(() => PeftTrainerFixture.Fit(ml, data, FromFixtureAdapter(0)));
        StringAssert.Contains(e.Message, "adapter_model.safetensors");
        StringAssert.Contains(e.Message, "classifier.out_proj");

        var missing = FromFixtureAdapter(0);
        missing.InitialPeftAdapter = Path.Combine(TestData.TinyLora, "nowhere");
        StringAssert.Contains(Assert.ThrowsExactly<FileNotFoundException>(() => PeftTrainerFixture.Fit(ml, data, missing)).Message, "nowhere");

        var untrained = PeftTrainerFixture.Lora(0);
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentException>(() => PeftTrainerFixture.Fit(ml, data, untrained)).Message, "MaxEpochs");
    }
}
