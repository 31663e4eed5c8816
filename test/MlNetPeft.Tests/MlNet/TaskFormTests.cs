using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetPeft.Adapters;
using MlNetPeft.Adapters.Full;
using MlNetPeft.Backbone;
using MlNetPeft.MlNet;
using MlNetPeft.Tests.Adapters;
using MlNetPeft.Training;

namespace MlNetPeft.Tests.MlNet;

/// <summary>Regression, sentence pairs and full fine-tuning, end to end on the tiny fixture backbone.</summary>
[TestClass]
public sealed class TaskFormTests
{
    public sealed class ScoredRow
    {
        public string Sentence1 { get; set; } = "";
        public float Label { get; set; }
    }

    /// <summary>Rows mixing fruit and animal words; the label is 5 × the share of fruit words.</summary>
    private static List<ScoredRow> ScoredRows(int count, int seed)
    {
        var random = new Random(seed);
        string[] fruit = ["apple", "banana", "cherry", "grape"], animal = ["zebra", "wolf", "yak", "owl"];
        return Enumerable.Range(0, count).Select(_ =>
        {
            int n = random.Next(3, 7), k = random.Next(0, n + 1);
            var words = Enumerable.Range(0, n).Select(i => i < k ? fruit[random.Next(4)] : animal[random.Next(4)]).OrderBy(_ => random.Next());
            return new ScoredRow { Sentence1 = string.Join(" ", words), Label = 5f * k / n };
        }).ToList();
    }

    [TestMethod]
    public void RegressionLearnsAScoreThatDependsOnTheText()
    {
        var ml = new MLContext(seed: 1);
        var train = ml.Data.LoadFromEnumerable(ScoredRows(240, 1));
        var test = ml.Data.LoadFromEnumerable(ScoredRows(90, 2));
        var options = PeftTrainerFixture.Msplora(10);
        var progress = new List<TrainingProgress>();
        options.ProgressCallback = progress.Add;
        var model = ml.Regression.Trainers.Msplora(options).Fit(train);
        Assert.IsLessThan(progress.First().Loss / 2, progress.Last().Loss, "MSE at least halves");

        var scored = model.Transform(test);
        var metrics = ml.Regression.Evaluate(scored);
        var predicted = scored.GetColumn<float>("Score").Select(v => (double)v).ToArray();
        var gold = scored.GetColumn<float>("Label").Select(v => (double)v).ToArray();
        Assert.IsGreaterThan(0.8, Metrics.Pearson(predicted, gold), $"Pearson {Metrics.Pearson(predicted, gold):F3}");
        Assert.IsGreaterThan(0.5, metrics.RSquared);

        var zip = Path.Combine(TestFolders.Create(), "regression.zip");
        ml.Model.Save(model, train.Schema, zip);
        var fresh = new MLContext();
        var again = fresh.Model.Load(zip, out _).Transform(test).GetColumn<float>("Score").ToArray();
        CollectionAssert.AreEqual(predicted.Select(v => (float)v).ToArray(), again);

        // Exported as a plain HF regression checkpoint: one output, the same score.
        var dir = TestFolders.Create("regression-checkpoint");
        model.SaveMergedCheckpoint(dir);
        using var config = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "config.json")));
        Assert.AreEqual("regression", config.RootElement.GetProperty("problem_type").GetString());
        Assert.AreEqual(1, config.RootElement.GetProperty("id2label").EnumerateObject().Count());
        using var plain = PeftModel.Create(RobertaConfig.Load(Path.Combine(dir, "config.json")), 1,
            new FullFineTuningConfig(), SafeTensors.Load(Path.Combine(dir, "model.safetensors")), dir, loadHead: true);
        plain.Train(false);
        var rows = AdapterTests.Rows();
        var expected = model.Predict(rows);
        using var noGrad = TorchSharp.torch.no_grad();
        var actual = plain.Forward(AdapterTests.Ids, AdapterTests.Mask);
        for (int r = 0; r < rows.Count; r++) Assert.AreEqual(expected[r][0], actual[r, 0].item<float>(), 1e-5, $"row {r}");
    }

    [TestMethod]
    public void RegressionNeedsASingleLabel()
    {
        var ml = new MLContext();
        var data = ml.Data.LoadFromEnumerable(ToyText.Rows(10, seed: 1));
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Regression.Trainers.Msplora(PeftTrainerFixture.Msplora(1)).Fit(data));
        StringAssert.Contains(e.Message, "Single");
    }

    [TestMethod]
    public void SentencePairTrainerReadsTheSecondSentence()
    {
        // The first sentence is noise from a random class; the label is the class of the second.
        var ml = new MLContext(seed: 1);
        List<ToyText.PairRow> Pairs(int n, int seed)
        {
            var first = ToyText.Rows(n, seed + 100);
            return ToyText.Rows(n, seed).Select((r, i) => new ToyText.PairRow { Sentence1 = first[i].Sentence1, Sentence2 = r.Sentence1, Label = r.Label }).ToList();
        }
        var train = ml.Data.LoadFromEnumerable(Pairs(240, 1));
        var test = ml.Data.LoadFromEnumerable(Pairs(90, 2));
        var options = PeftTrainerFixture.Msplora();
        options.Sentence2ColumnName = "Sentence2";
        var model = ToyText.KeyLabel(ml).Append(ml.MulticlassClassification.Trainers.Msplora(options)).Fit(train);
        var accuracy = ml.MulticlassClassification.Evaluate(model.Transform(test)).MicroAccuracy;
        Assert.IsGreaterThan(0.8, accuracy, $"accuracy {accuracy:F3} (chance 0.33)");

        var single = ml.Data.LoadFromEnumerable(ToyText.Rows(5, 3));
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => model.Transform(single));
        StringAssert.Contains(e.Message, "'Sentence2'");
    }

    /// <summary>In fp32 the reloaded zip scores identically. Trained in bf16 or fp16 (a compute copy of fp32 masters, as
    /// on CUDA), the zip holds the fp32 masters and reloads on the CPU in fp32, so its scores agree to that rounding.</summary>
    [TestMethod]
    [DataRow(ComputePrecision.Float32)]
    [DataRow(ComputePrecision.BFloat16)]
    [DataRow(ComputePrecision.Float16)]
    public void FullFineTuningTrainsTheBackboneAndSavesIt(ComputePrecision precision)
    {
        var ml = new MLContext(seed: 1);
        var train = ml.Data.LoadFromEnumerable(ToyText.Rows(240, 1));
        var test = ml.Data.LoadFromEnumerable(ToyText.Rows(90, 2));
        var backbone = PeftTrainerFixture.CopyOfTinyBackbone();
        var options = new FullFineTuningOptions { BackboneDirectory = backbone, MaxEpochs = 6, LearningRate = 1e-3, BatchSize = 16, Precision = precision };
        var (model, progress) = PeftTrainerFixture.Fit(ml, train, options);
        Assert.IsLessThan(progress.First().Loss / 2, progress.Last().Loss);
        Assert.IsGreaterThan(0.8, ml.MulticlassClassification.Evaluate(model.Transform(test)).MicroAccuracy);
        var report = ((TransformerChain<ITransformer>)model).OfType<PeftTextTransformer>().Single().Parameters;
        Assert.AreEqual(0, report.BackboneCount, "nothing frozen");
        Assert.AreEqual(202_304 + 4_355, report.TrainableCount, "backbone + head");

        var zip = Path.Combine(TestFolders.Create(), "full.zip");
        ml.Model.Save(model, train.Schema, zip);
        Directory.Delete(backbone, recursive: true); // the zip holds the whole fine-tuned backbone: none is looked for
        var fresh = new MLContext();
        var loaded = fresh.Model.Load(zip, out _);
        var expected = PeftTrainerFixture.Scores(model, test, ml);
        var actual = PeftTrainerFixture.Scores(loaded, test, fresh);
        for (int i = 0; i < expected.Length; i++)
            if (precision == ComputePrecision.Float32) CollectionAssert.AreEqual(expected[i], actual[i]);
            else for (int c = 0; c < expected[i].Length; c++) Assert.AreEqual(expected[i][c], actual[i][c], 0.03, $"row {i}, class {c}");
    }

    /// <summary>The catalog's short forms put each argument in its option (the long forms take the options themselves).</summary>
    [TestMethod]
    public void CatalogShortFormsFillTheirOptions()
    {
        var ml = new MLContext();
        var (c, b, r) = (ml.MulticlassClassification.Trainers, ml.BinaryClassification.Trainers, ml.Regression.Trainers);
        var dev = ml.Data.LoadFromEnumerable(ToyText.Rows(4, seed: 1));
        PeftTextTrainerOptions[] made =
        [
            c.Msplora("bb", "L", "S1", "S2", 8, 2, 1e-3, dev, "W").TrainerOptions,
            r.Msplora("bb", "L", "S1", "S2", 8, 2, 1e-3, dev, "W").TrainerOptions,
            c.Lora("bb", "L", "S1", "S2", 4, 8, 2, 1e-3, dev, "W").TrainerOptions,
            r.Lora("bb", "L", "S1", "S2", 4, 8, 2, 1e-3, dev, "W").TrainerOptions,
            c.LoraSquared("bb", "L", "S1", "S2", 8, 2, 8, 2, 1e-3, dev, "W").TrainerOptions,
            c.AdaLora("bb", "L", "S1", "S2", 12, 8, 8, 2, 1e-3, dev, "W").TrainerOptions,
            b.Msplora("bb", "L", "S1", "S2", 8, 2, 1e-3, dev, "W").TrainerOptions,
            b.Lora("bb", "L", "S1", "S2", 4, 8, 2, 1e-3, dev, "W").TrainerOptions,
            r.LoraSquared("bb", "L", "S1", "S2", 6, 3, 8, 2, 1e-3, dev, "W").TrainerOptions,
            b.LoraSquared("bb", "L", "S1", "S2", 6, 3, 8, 2, 1e-3, dev, "W").TrainerOptions,
            r.AdaLora("bb", "L", "S1", "S2", 10, 5, 8, 2, 1e-3, dev, "W").TrainerOptions,
            b.AdaLora("bb", "L", "S1", "S2", 10, 5, 8, 2, 1e-3, dev, "W").TrainerOptions,
        ];
        foreach (var o in made)
        {
            var what = o.GetType().Name;
            Assert.AreEqual("bb", o.BackboneDirectory, what);
            Assert.AreEqual("L", o.LabelColumnName, what);
            Assert.AreEqual("S1", o.Sentence1ColumnName, what);
            Assert.AreEqual("S2", o.Sentence2ColumnName, what);
            Assert.AreEqual(8, o.BatchSize, what);
            Assert.AreEqual(2, o.MaxEpochs, what);
            Assert.AreEqual(1e-3, o.LearningRate, what);
            Assert.AreSame(dev, o.ValidationSet, what);
            Assert.AreEqual("W", o.ExampleWeightColumnName, what);
        }
        Assert.AreEqual(4, ((LoraOptions)made[2]).Rank);
        Assert.AreEqual(4, ((LoraOptions)made[7]).Rank);
        Assert.AreEqual(12, ((AdaLoraOptions)made[5]).InitialRank);
        foreach (var o in made[8..10].Cast<LoraSquaredOptions>()) Assert.AreEqual((6, 3), (o.InitialRank, o.TargetRank));
        foreach (var o in made[10..].Cast<AdaLoraOptions>()) Assert.AreEqual((10, 5), (o.InitialRank, o.TargetRank));
        Assert.IsInstanceOfType<LoraSquaredRegressionTrainer>(r.LoraSquared("bb"));
        Assert.IsInstanceOfType<AdaLoraBinaryTrainer>(b.AdaLora("bb"));
    }
}
