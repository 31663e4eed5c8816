using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetPeft.MlNet;

namespace MlNetPeft.Tests.MlNet;

/// <summary>ML.NET's re-training: <c>trainer.Fit(newData, initialModel)</c> goes on from a trained (and saved) model.</summary>
[TestClass]
public sealed class RetrainingTests
{
    public static IEnumerable<object[]> Methods =>
    [
        [PeftTrainerFixture.Lora(2)],
        [PeftTrainerFixture.Msplora(2)],
        [PeftTrainerFixture.Tiny(new FullFineTuningOptions { MaxEpochs = 2, LearningRate = 1e-3, BatchSize = 16, LogEveryNSteps = 5 })],
    ];

    /// <summary>Trains <paramref name="options"/> on toy rows, saves the pipeline and loads it in a fresh context, as an
    /// application would before re-training; returns the loaded chain and its trained text model.</summary>
    private static (ITransformer Chain, PeftTextTransformer Model) TrainSaveAndLoad(PeftTextTrainerOptions options, IDataView data)
    {
        var ml = new MLContext(seed: 1);
        var (model, _) = PeftTrainerFixture.Fit(ml, data, options);
        var path = Path.Combine(TestFolders.Create("mlnetpeft-retrain-"), "model.zip");
        ml.Model.Save(model, data.Schema, path);
        var loaded = new MLContext().Model.Load(path, out _);
        return (loaded, ((TransformerChain<ITransformer>)loaded).OfType<PeftTextTransformer>().Single());
    }

    [TestMethod]
    [DynamicData(nameof(Methods))]
    public void TrainingFurtherStartsFromTheGivenModelAndLeavesItAsItWas(PeftTextTrainerOptions options)
    {
        var ml = new MLContext(seed: 1);
        var rows = ml.Data.LoadFromEnumerable(ToyText.Rows(48, seed: 3));
        var (chain, initial) = TrainSaveAndLoad(options, rows);
        var before = PeftTrainerFixture.Scores(chain, rows, ml);

        // New data, keyed by the model's own fitted MapValueToKey (the chain's first transformer).
        var labels = ((TransformerChain<ITransformer>)chain).First();
        var newData = labels.Transform(ml.Data.LoadFromEnumerable(ToyText.Rows(32, seed: 4)));
        options.MaxEpochs = 1;
        options.LearningRate = 1e-12; // so the result is the starting point, to rounding
        options.ProgressCallback = null;
        var trainer = (PeftTrainerFixture.Classifier(ml, options) as dynamic)!;
        PeftTextTransformer further = trainer.Fit(newData, initial);
        PeftTextTransformer fresh = trainer.Fit(newData);

        var keyed = labels.Transform(rows);
        float[][] Scores(ITransformer model) => PeftTrainerFixture.Scores(model, keyed, ml);
        static double Largest(float[][] a, float[][] b) => a.Zip(b).Max(p => p.First.Zip(p.Second).Max(s => Math.Abs(s.First - s.Second)));
        Assert.IsLessThan(1e-5, Largest(before, Scores(further)), "started from the given model's weights");
        Assert.IsGreaterThan(1e-2, Largest(before, Scores(fresh)), "a fresh start is another model");
        Assert.AreEqual(0, Largest(before, PeftTrainerFixture.Scores(chain, rows, ml)), "the given model is unchanged");
    }

    [TestMethod]
    public void AModelThatDoesNotFitIsRefusedSayingWhy()
    {
        var ml = new MLContext(seed: 1);
        var rows = ToyText.Rows(48, seed: 3);
        var (chain, initial) = TrainSaveAndLoad(PeftTrainerFixture.Lora(1), ml.Data.LoadFromEnumerable(rows));
        var labels = ((TransformerChain<ITransformer>)chain).First();
        var keyed = labels.Transform(ml.Data.LoadFromEnumerable(rows));
        string Refusal(PeftTextTrainerOptions options, IDataView data) =>
            Assert.ThrowsExactly<ArgumentException>(() => ((dynamic)PeftTrainerFixture.Classifier(ml, options)).Fit(data, initial)).Message;

        var otherRank = PeftTrainerFixture.Lora(1);
        otherRank.Rank = 4;
        StringAssert.Contains(Refusal(otherRank, keyed), "its adapters are");
        StringAssert.Contains(Refusal(PeftTrainerFixture.Msplora(1), keyed), "its adapters are");

        // The classes numbered in another order: MapValueToKey fitted on the rows in reverse.
        var reversed = ToyText.KeyLabel(ml).Fit(ml.Data.LoadFromEnumerable(Enumerable.Reverse(rows).ToList())).Transform(ml.Data.LoadFromEnumerable(rows));
        StringAssert.Contains(Refusal(PeftTrainerFixture.Lora(1), reversed), "MapValueToKey fitted for the model");

        var otherBackbone = PeftTrainerFixture.Lora(1);
        otherBackbone.BackboneDirectory = PeftTrainerFixture.CopyOfTinyBackbone();
        File.AppendAllText(Path.Combine(otherBackbone.BackboneDirectory, "model.safetensors"), " "); // same weights, other bytes
        StringAssert.Contains(Refusal(otherBackbone, keyed), "trained on a backbone of SHA-256");

        var alsoPeft = PeftTrainerFixture.Lora(1);
        alsoPeft.InitialPeftAdapter = TestData.TinyLora;
        StringAssert.Contains(Refusal(alsoPeft, keyed), "InitialPeftAdapter");
        var alsoHead = PeftTrainerFixture.Lora(1);
        alsoHead.UseCheckpointHead = true;
        StringAssert.Contains(Refusal(alsoHead, keyed), "UseCheckpointHead is also set");
        // Those two are refused before any data is read: this data has no text column.
        var noText = ml.Data.LoadFromEnumerable(new[] { new { Other = 1f } });
        StringAssert.Contains(Refusal(alsoPeft, noText), "InitialPeftAdapter");
        StringAssert.Contains(Refusal(alsoHead, noText), "UseCheckpointHead is also set");

        var regression = ((dynamic)ml.Regression.Trainers.Lora(PeftTrainerFixture.Lora(1)));
        var scored = ml.Data.LoadFromEnumerable(rows.Select((r, i) => new { r.Sentence1, Label = (float)(i % 3) }).ToList());
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentException>(() => regression.Fit(scored, initial)).Message, "Classification model");
    }

    [TestMethod]
    public void ASavedTrainingStateRemembersTheModelItStartedFrom()
    {
        var ml = new MLContext(seed: 1);
        var rows = ToyText.Rows(48, seed: 3);
        var (chain, initial) = TrainSaveAndLoad(PeftTrainerFixture.Lora(1), ml.Data.LoadFromEnumerable(rows));
        var keyed = ((TransformerChain<ITransformer>)chain).First().Transform(ml.Data.LoadFromEnumerable(rows));
        var options = PeftTrainerFixture.Lora(1);
        options.TrainingStateDirectory = TestFolders.Create("mlnetpeft-retrain-state-");
        var log = PeftTrainerFixture.LogMessages(ml, Microsoft.ML.Runtime.ChannelMessageKind.Info);
        var trainer = ml.MulticlassClassification.Trainers.Lora(options);
        trainer.Fit(keyed, initial);
        trainer.Fit(keyed, initial); // the finished state: the same run
        Assert.IsTrue(log.Any(m => m.Contains("that run has finished")), "found its own state");
        trainer.Fit(keyed); // a fresh start is another run
        Assert.IsTrue(log.Any(m => m.Contains("the starting weights differ")), string.Join("\n", log));
    }
}
