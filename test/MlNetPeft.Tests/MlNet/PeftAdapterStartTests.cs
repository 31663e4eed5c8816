using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetPeft.MlNet;
using MlNetPeft.Tests.Adapters;

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

    private static PeftTextTransformer Fit(MLContext ml, LoraOptions options) =>
        ((TransformerChain<ITransformer>)PeftTrainerFixture.Fit(ml, ml.Data.LoadFromEnumerable(ToyText.Rows(40, seed: 1)), options).Model)
            .OfType<PeftTextTransformer>().Single();

    [TestMethod]
    public void WithoutTrainingItScoresAsPeftDidAndSurvivesSaveAndLoad()
    {
        var ml = new MLContext(seed: 1);
        var peft = Fit(ml, FromFixtureAdapter(epochs: 0));
        var lora = (MlNetPeft.Adapters.Lora.LoraConfig)peft.Adapter;
        Assert.AreEqual((4, 8.0), (lora.Rank, lora.Alpha));
        CollectionAssert.AreEquivalent(new[] { "query", "value" }, lora.Targets);

        PeftTrainerFixture.ScoresAsFixtureLogits(ml, peft, TestData.Parity.GetProperty("lora_logits")); // transformers + peft's
    }

    [TestMethod]
    public void TrainingContinuesFromTheAdapter()
    {
        var peft = Fit(new MLContext(seed: 1), FromFixtureAdapter(epochs: 2));
        var start = Fit(new MLContext(seed: 1), FromFixtureAdapter(epochs: 0));
        var rows = AdapterTests.Rows();
        double moved = peft.Predict(rows).Zip(start.Predict(rows)).Max(p => p.First.Zip(p.Second).Max(v => Math.Abs(v.First - v.Second)));
        Assert.IsGreaterThan(1e-3, moved, "two epochs changed the scores");
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
