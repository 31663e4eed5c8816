using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Transforms;
using MlNetPeft.MlNet;

namespace MlNetPeft.Tests.MlNet;

/// <summary>mlContext.BinaryClassification.Trainers: a Boolean label in, ML.NET's binary columns out.</summary>
[TestClass]
public sealed class BinaryClassificationTests
{
    public sealed class Row
    {
        public string Sentence1 { get; set; } = "";
        public bool Label { get; set; }
    }

    public sealed class Prediction
    {
        public float Score { get; set; }
        public float Probability { get; set; }
        public bool PredictedLabel { get; set; }
    }

    /// <summary>The toy set's fruit and animal rows; the label is true for fruit.</summary>
    private static List<Row> Rows(int count, int seed) =>
        ToyText.Rows(count, seed, classes: 2).Select(r => new Row { Sentence1 = r.Sentence1, Label = r.Label == "fruit" }).ToList();

    /// <summary>
    /// A binary model is a two-class model underneath: trained on the same rows as the multiclass trainer given the
    /// same label mapped to keys false, true, it gives that model's probability of true (to 1e-6), its Score is those two
    /// logits' difference, and ML.NET's binary evaluator reads its columns. Saved and loaded, it scores the same.
    /// </summary>
    [TestMethod]
    public void BinaryModelIsTheTwoClassModelWithMlNetsBinaryColumns()
    {
        var ml = new MLContext(seed: 1);
        var train = ml.Data.LoadFromEnumerable(Rows(240, 1));
        var test = ml.Data.LoadFromEnumerable(Rows(90, 2));
        var trainer = ml.BinaryClassification.Trainers.Msplora(PeftTrainerFixture.Msplora(6));
        var binary = trainer.Fit(train);
        var twoClass = ml.Transforms.Conversion.MapValueToKey("Label", keyOrdinality: ValueToKeyMappingEstimator.KeyOrdinality.ByValue)
            .Append(ml.MulticlassClassification.Trainers.Msplora(PeftTrainerFixture.Msplora(6))).Fit(train);

        var predictions = ml.Data.CreateEnumerable<Prediction>(binary.Transform(test), reuseRowObject: false).ToList();
        var classProbabilities = PeftTrainerFixture.Scores(twoClass, test, ml);
        for (int i = 0; i < predictions.Count; i++)
        {
            var (p, classes) = (predictions[i], classProbabilities[i]);
            Assert.AreEqual(classes[1], p.Probability, 1e-6, $"row {i}: probability of true");
            Assert.AreEqual(Math.Log(classes[1]) - Math.Log(classes[0]), p.Score, 1e-5, $"row {i}: log-odds");
            Assert.AreEqual(1 / (1 + Math.Exp(-p.Score)), p.Probability, 1e-6, $"row {i}: Probability = σ(Score)");
            Assert.AreEqual(p.Score > 0, p.PredictedLabel, $"row {i}: predicted label");
        }

        // The estimator describes the columns the model adds: Single Score and Probability, Boolean PredictedLabel.
        // (SchemaShape.Create is internal to ML.NET; estimators receive shapes built by it.)
        var inputShape = (SchemaShape)typeof(SchemaShape).GetMethod("Create", System.Reflection.BindingFlags.Static | System.Reflection.BindingFlags.NonPublic)!
            .Invoke(null, [train.Schema])!;
        var described = trainer.GetOutputSchema(inputShape);
        var actual = binary.GetOutputSchema(train.Schema);
        foreach (var (name, type) in new[] { ("Score", NumberDataViewType.Single), ("Probability", NumberDataViewType.Single), ("PredictedLabel", (DataViewType)BooleanDataViewType.Instance) })
        {
            Assert.AreEqual(type, actual[name].Type, name);
            Assert.AreEqual(type, described.Single(c => c.Name == name).ItemType, name);
        }

        var metrics = ml.BinaryClassification.Evaluate(binary.Transform(test));
        Assert.IsGreaterThan(0.9, metrics.Accuracy, $"accuracy {metrics.Accuracy:F3}");
        Assert.IsGreaterThan(0.95, metrics.AreaUnderRocCurve, $"AUC {metrics.AreaUnderRocCurve:F3}");
        Assert.IsLessThan(0.5, metrics.LogLoss);
        var goldLabels = test.GetColumn<bool>("Label").ToArray();
        double nats = predictions.Select((p, i) => -Math.Log(goldLabels[i] ? p.Probability : 1 - p.Probability)).Average();
        Assert.AreEqual(nats / Math.Log(2), metrics.LogLoss, 1e-6, "ML.NET's binary log-loss, in bits, of our Probability");

        var zip = Path.Combine(TestFolders.Create(), "binary.zip");
        ml.Model.Save(binary, train.Schema, zip);
        var fresh = new MLContext();
        var loaded = fresh.Model.Load(zip, out _);
        var again = fresh.Data.CreateEnumerable<Prediction>(loaded.Transform(test), reuseRowObject: false).ToList();
        for (int i = 0; i < predictions.Count; i++)
        {
            Assert.AreEqual(predictions[i].Score, again[i].Score, $"row {i}");
            Assert.AreEqual(predictions[i].Probability, again[i].Probability, $"row {i}");
            Assert.AreEqual(predictions[i].PredictedLabel, again[i].PredictedLabel, $"row {i}");
        }
        var engine = fresh.Model.CreatePredictionEngine<Row, Prediction>(loaded);
        Assert.IsTrue(engine.Predict(new() { Sentence1 = "apple cherry melon" }).PredictedLabel);
        Assert.IsFalse(engine.Predict(new() { Sentence1 = "zebra owl wolf" }).PredictedLabel);

        // Exported as a HF checkpoint, the two classes are named for the label's values.
        var dir = TestFolders.Create("binary-checkpoint");
        binary.SaveMergedCheckpoint(dir);
        using var config = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "config.json")));
        Assert.AreEqual("False", config.RootElement.GetProperty("id2label").GetProperty("0").GetString());
        Assert.AreEqual("True", config.RootElement.GetProperty("id2label").GetProperty("1").GetString());

        // Trained further only as the binary model it is.
        var e = Assert.ThrowsExactly<ArgumentException>(() => ml.MulticlassClassification.Trainers.Msplora(PeftTrainerFixture.Msplora(1))
            .Fit(twoClass.Transform(train), binary));
        StringAssert.Contains(e.Message, "binary");
        var further = ml.BinaryClassification.Trainers.Msplora(PeftTrainerFixture.Msplora(1)).Fit(train, binary);
        Assert.IsGreaterThan(0.9, ml.BinaryClassification.Evaluate(further.Transform(test)).Accuracy);
    }

    /// <summary>Score is the logits' difference, not log p1 − log p0 of fp32 probabilities: a certain model's Score stays
    /// finite (softmax of logits 120 apart rounds the smaller probability to 0, whose log is −∞).</summary>
    [TestMethod]
    public void ScoreIsTheLogitDifferenceEvenWhereAProbabilityRoundsToZero()
    {
        static T Read<T>(int output, float[] logits)
        {
            T value = default!;
            ((ValueGetter<T>)PeftTextTransformer.BinaryGetter(output, () => logits))(ref value);
            return value;
        }
        foreach (var logits in new[] { new[] { -60f, 60f }, new[] { 50f, -70f }, new[] { 0.25f, -0.5f } })
        {
            float gap = logits[1] - logits[0];
            Assert.AreEqual(gap, Read<float>(0, logits), $"Score of {logits[0]}, {logits[1]}");
            Assert.AreEqual((float)(1 / (1 + Math.Exp(-gap))), Read<float>(1, logits), $"Probability of {logits[0]}, {logits[1]}");
            Assert.AreEqual(gap > 0, Read<bool>(2, logits));
        }
    }

    /// <summary>ML.NET's binary CrossValidate (split, fit, Evaluate with its calibrated-classifier metrics) runs on
    /// the binary trainer; BalanceClasses weighs a Boolean label's two classes equally and raises the rare one's
    /// probability.</summary>
    [TestMethod]
    public void CrossValidatesAndBalancesTwoClasses()
    {
        var ml = new MLContext(seed: 1);
        var folds = ml.BinaryClassification.CrossValidate(ml.Data.LoadFromEnumerable(Rows(180, 3)),
            ml.BinaryClassification.Trainers.Lora(PeftTrainerFixture.Lora(6)), numberOfFolds: 3);
        Assert.HasCount(3, folds);
        foreach (var fold in folds)
            Assert.IsGreaterThan(0.95, fold.Metrics.AreaUnderRocCurve, $"fold {fold.Fold}: AUC {fold.Metrics.AreaUnderRocCurve:F3}");

        // Nine animal rows to each fruit row: balanced, the fruit rows' mean probability of true goes up.
        var rows = Rows(400, 4);
        var skewed = ml.Data.LoadFromEnumerable(rows.Where(r => !r.Label).Take(180).Concat(rows.Where(r => r.Label).Take(20)));
        var test = ml.Data.LoadFromEnumerable(Rows(60, 5).Where(r => r.Label));
        float MeanProbability(bool balance)
        {
            var options = PeftTrainerFixture.Lora(2);
            options.BalanceClasses = balance;
            var model = ml.BinaryClassification.Trainers.Lora(options).Fit(skewed);
            return ml.Data.CreateEnumerable<Prediction>(model.Transform(test), reuseRowObject: false).Average(p => p.Probability);
        }
        float plain = MeanProbability(false), balanced = MeanProbability(true);
        Assert.IsGreaterThan(plain + 0.2f, balanced, $"fruit rows' mean probability: plain {plain:F3}, balanced {balanced:F3}");
    }

    [TestMethod]
    public void BinaryTrainerNeedsABooleanLabelAndMulticlassPointsToIt()
    {
        var ml = new MLContext();
        var strings = ml.Data.LoadFromEnumerable(ToyText.Rows(10, seed: 1, classes: 2));
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.BinaryClassification.Trainers.Msplora(PeftTrainerFixture.Msplora(1)).Fit(strings));
        StringAssert.Contains(e.Message, "label column 'Label' must be Boolean");

        var booleans = ml.Data.LoadFromEnumerable(Rows(10, 1));
        e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.MulticlassClassification.Trainers.Msplora(PeftTrainerFixture.Msplora(1)).Fit(booleans));
        StringAssert.Contains(e.Message, "mlContext.BinaryClassification.Trainers");

        var options = PeftTrainerFixture.Lora(1);
        options.ValidationSet = strings;
        e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.BinaryClassification.Trainers.Lora(options).Fit(booleans));
        StringAssert.Contains(e.Message, "validation set: label column 'Label' must be Boolean");
    }
}
