using Microsoft.ML;
using MlNetPeft.MlNet;

namespace MlNetPeft.Tests.MlNet;

/// <summary>Bad input is a clear exception naming the column, row or file — never a crash, hang or silent NaN.</summary>
[TestClass]
public sealed class BadInputTests
{
    private static MLContext Ml => new(seed: 1);

    private static void AssertNames(Exception e, params string[] parts)
    {
        foreach (var part in parts) StringAssert.Contains(e.Message, part);
    }

    private static List<ToyText.Row> RowsWith(int row, string? text)
    {
        var rows = ToyText.Rows(20, seed: 1);
        rows[row].Sentence1 = text!;
        return rows;
    }

    /// <summary>NaN or infinite settings are refused by name before training, not met later as a NaN loss or as a
    /// comparison that NaN passes (a NaN GradientClipNorm once turned clipping off silently).</summary>
    [TestMethod]
    [DataRow("LearningRate", double.NaN, "LearningRate")]
    [DataRow("HeadLearningRateRatio", double.PositiveInfinity, "HeadLearningRateRatio")]
    [DataRow("WeightDecay", double.NaN, "WeightDecay")]
    [DataRow("WarmupRatio", double.NaN, "WarmupRatio")]
    [DataRow("GradientClipNorm", double.NaN, "GradientClipNorm")]
    [DataRow("LoraAlpha", double.NaN, "Alpha")]
    [DataRow("LoraDropout", double.NaN, "Dropout")]
    [DataRow("Beta1", double.NaN, "Beta1")]
    [DataRow("OrthogonalityWeight", double.NaN, "OrthogonalityWeight")]
    [DataRow("CrossOrthogonalityWeight", double.PositiveInfinity, "CrossOrthogonalityWeight")]
    public void NonFiniteSettingsAreNamed(string option, double value, string named)
    {
        PeftTextTrainerOptions options = option.Contains("Orthogonality") || option == "Beta1" ? PeftTrainerFixture.LoraSquared(1) : PeftTrainerFixture.Msplora(1);
        options.GetType().GetField(option)!.SetValue(options, value);
        var data = Ml.Data.LoadFromEnumerable(ToyText.Rows(20, seed: 1));
        AssertNames(Assert.ThrowsExactly<ArgumentException>(() => PeftTrainerFixture.Fit(Ml, data, options)), named, value.ToString());
    }

    [TestMethod]
    [DataRow(20)]
    [DataRow(0)]
    public void FewerThanTwoClassesSaysWhy(int rows)
    {
        var ml = Ml;
        var oneLabel = ToyText.Rows(20, seed: 1).Take(rows).Select(r => new ToyText.Row { Sentence1 = r.Sentence1, Label = "same" }).ToList();
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(
            () => PeftTrainerFixture.Fit(ml, ml.Data.LoadFromEnumerable(oneLabel), PeftTrainerFixture.Msplora(1)));
        AssertNames(e, "label column 'Label'", "2 or more", "no rows");
    }

    [TestMethod]
    public void AStateDirectoryThatCannotHoldTheStateIsNamedBeforeTraining()
    {
        var ml = Ml;
        var notADirectory = Path.Combine(TestFolders.Create(), "a-file");
        File.WriteAllText(notADirectory, "");
        var options = PeftTrainerFixture.Msplora(1);
        options.TrainingStateDirectory = notADirectory;
        var progress = new List<MlNetPeft.Training.TrainingProgress>();
        options.ProgressCallback = progress.Add;
        var e = Assert.ThrowsExactly<IOException>(() => ToyText.KeyLabel(ml).Append(PeftTrainerFixture.Classifier(ml, options))
            .Fit(ml.Data.LoadFromEnumerable(ToyText.Rows(20, seed: 1))));
        AssertNames(e, "TrainingStateDirectory", notADirectory);
        Assert.IsEmpty(progress, "refused before the first step");
    }

    [TestMethod]
    public void MaxSequenceLengthBeyondTheBackboneIsCutAndLogged()
    {
        var ml = Ml;
        var info = PeftTrainerFixture.LogMessages(ml, Microsoft.ML.Runtime.ChannelMessageKind.Info);
        var options = PeftTrainerFixture.Msplora(1);
        options.MaxSequenceLength = 100_000;
        PeftTrainerFixture.Fit(ml, ml.Data.LoadFromEnumerable(ToyText.Rows(20, seed: 1)), options);
        int positions = MlNetPeft.Backbone.RobertaConfig.Load(Path.Combine(TestData.TinyBackbone, "config.json")).MaxSequenceLength;
        var logged = info.Single(m => m.Contains("MaxSequenceLength 100000"));
        StringAssert.Contains(logged, $"inputs are cut at {positions} tokens");
    }

    [TestMethod]
    [DataRow("")]
    [DataRow("   ")]
    [DataRow(null)]
    public void EmptyTrainingTextNamesColumnAndRow(string? text)
    {
        var ml = Ml;
        var e = Assert.ThrowsExactly<InvalidDataException>(() => PeftTrainerFixture.Fit(ml, ml.Data.LoadFromEnumerable(RowsWith(7, text)), PeftTrainerFixture.Msplora(1)));
        StringAssert.Contains(e.Message, "row 7");
        StringAssert.Contains(e.Message, "'Sentence1'");
    }

    [TestMethod]
    public void EmptyTextAtPredictionNamesTheColumn()
    {
        var ml = Ml;
        var (model, _) = PeftTrainerFixture.Fit(ml, ml.Data.LoadFromEnumerable(ToyText.Rows(20, seed: 1)), PeftTrainerFixture.Msplora(1));
        var engine = ml.Model.CreatePredictionEngine<ToyText.Row, ToyText.Prediction>(model);
        var e = Assert.ThrowsExactly<InvalidDataException>(() => engine.Predict(new ToyText.Row { Sentence1 = "" }));
        StringAssert.Contains(e.Message, "'Sentence1'");
    }

    [TestMethod]
    [DataRow(-1f)]
    [DataRow(float.NaN)]
    [DataRow(float.PositiveInfinity)]
    public void BadExampleWeightNamesColumnAndRow(float weight)
    {
        var ml = Ml;
        var data = ml.Data.LoadFromEnumerable(ToyText.Weighted(ToyText.Rows(20, seed: 1), i => i == 11 ? weight : 1));
        var options = PeftTrainerFixture.Msplora(1);
        options.ExampleWeightColumnName = "Weight";
        AssertNames(Assert.ThrowsExactly<InvalidDataException>(() => PeftTrainerFixture.Fit(ml, data, options)), "row 11", "'Weight'");
    }

    [TestMethod]
    [DataRow(float.NaN)]
    [DataRow(float.NegativeInfinity)]
    public void NonFiniteRegressionLabelNamesColumnAndRow(float label)
    {
        var ml = Ml;
        var rows = ToyText.Rows(20, seed: 1).Select((r, i) => new { r.Sentence1, Label = i == 13 ? label : i % 5 }).ToList();
        AssertNames(Assert.ThrowsExactly<InvalidDataException>(() => ml.Regression.Trainers.Msplora(PeftTrainerFixture.Msplora(1))
            .Fit(ml.Data.LoadFromEnumerable(rows))), "row 13", "'Label'");
    }

    [TestMethod]
    public void ExampleWeightColumnMustExistBeSingleAndWeighSomething()
    {
        var ml = Ml;
        var options = PeftTrainerFixture.Msplora(1);
        options.ExampleWeightColumnName = "Importance";
        var weighted = ml.Data.LoadFromEnumerable(ToyText.Weighted(ToyText.Rows(20, seed: 1), _ => 1));
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => PeftTrainerFixture.Fit(ml, weighted, options)).Message, "'Importance' not found");
        options.ExampleWeightColumnName = "Sentence1";
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => PeftTrainerFixture.Fit(ml, weighted, options)).Message, "must be Single");
        options.ExampleWeightColumnName = "Weight";
        var zero = ml.Data.LoadFromEnumerable(ToyText.Weighted(ToyText.Rows(20, seed: 1), _ => 0));
        StringAssert.Contains(Assert.ThrowsExactly<InvalidDataException>(() => PeftTrainerFixture.Fit(ml, zero, options)).Message, "is 0");
    }

    [TestMethod]
    public void MissingLabelColumnIsNamed()
    {
        var ml = Ml;
        var data = ml.Data.LoadFromEnumerable(ToyText.Rows(20, seed: 1));
        var options = PeftTrainerFixture.Msplora(1);
        options.LabelColumnName = "Category";
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.MulticlassClassification.Trainers.Msplora(options).Fit(data));
        StringAssert.Contains(e.Message, "'Category'");
    }

    [TestMethod]
    public void TextLabelWithoutMapValueToKeySaysWhatToAdd()
    {
        var ml = Ml;
        var data = ml.Data.LoadFromEnumerable(ToyText.Rows(20, seed: 1));
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.MulticlassClassification.Trainers.Msplora(PeftTrainerFixture.Msplora(1)).Fit(data));
        StringAssert.Contains(e.Message, "'Label'");
        StringAssert.Contains(e.Message, "MapValueToKey");
    }

    [TestMethod]
    public void MissingTextColumnIsNamed()
    {
        var ml = Ml;
        var options = PeftTrainerFixture.Msplora(1);
        options.Sentence1ColumnName = "Review";
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => PeftTrainerFixture.Fit(ml, ml.Data.LoadFromEnumerable(ToyText.Rows(20, seed: 1)), options));
        StringAssert.Contains(e.Message, "'Review'");
    }

    [TestMethod]
    public void UnseenLabelInTheValidationSetNamesRowAndColumn()
    {
        var ml = Ml;
        var train = ml.Data.LoadFromEnumerable(ToyText.Rows(20, seed: 1));
        var validationRows = ToyText.Rows(10, seed: 2);
        validationRows[4].Label = "vegetable"; // never seen by MapValueToKey
        var options = PeftTrainerFixture.Msplora(1);
        options.ValidationSet = ToyText.KeyLabel(ml).Fit(train).Transform(ml.Data.LoadFromEnumerable(validationRows));
        AssertNames(Assert.ThrowsExactly<InvalidDataException>(() => PeftTrainerFixture.Fit(ml, train, options)), "validation set, row 4", "'Label'");
    }

    [TestMethod]
    public void DivergingLossStopsWithAnExplanation()
    {
        var ml = Ml;
        var options = PeftTrainerFixture.Msplora(3);
        options.LearningRate = 1e30;
        options.GradientClipNorm = 0;
        options.LogEveryNSteps = 1;
        var e = Assert.ThrowsExactly<InvalidOperationException>(() => PeftTrainerFixture.Fit(ml, ml.Data.LoadFromEnumerable(ToyText.Rows(40, seed: 1)), options));
        StringAssert.Contains(e.Message, "diverged");
        StringAssert.Contains(e.Message, "LearningRate");
    }

    [TestMethod]
    public void BackboneProblemsNameTheDirectoryOrFile()
    {
        var ml = Ml;
        var data = ml.Data.LoadFromEnumerable(ToyText.Rows(20, seed: 1));
        var options = PeftTrainerFixture.Msplora(1);
        options.BackboneDirectory = "";
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentException>(() => PeftTrainerFixture.Fit(ml, data, options)).Message, "BackboneDirectory");

        var dir = PeftTrainerFixture.CopyOfTinyBackbone();
        File.Delete(Path.Combine(dir, "merges.txt"));
        options.BackboneDirectory = dir;
        StringAssert.Contains(Assert.ThrowsExactly<FileNotFoundException>(() => PeftTrainerFixture.Fit(ml, data, options)).Message, "merges.txt");
    }

    [TestMethod]
    public void BadOptionsAreNamed()
    {
        var ml = Ml;
        var data = ml.Data.LoadFromEnumerable(ToyText.Rows(20, seed: 1));
        var options = PeftTrainerFixture.Msplora(1);
        options.BatchSize = 0;
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentException>(() => PeftTrainerFixture.Fit(ml, data, options)).Message, "BatchSize");
        options = PeftTrainerFixture.Msplora(1);
        options.GradientAccumulationSteps = 0;
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentException>(() => PeftTrainerFixture.Fit(ml, data, options)).Message, "GradientAccumulationSteps");
        options = PeftTrainerFixture.Msplora(1);
        options.SaveStateEveryNSteps = 10; // and no TrainingStateDirectory to save to
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentException>(() => PeftTrainerFixture.Fit(ml, data, options)).Message, "TrainingStateDirectory");
        options = PeftTrainerFixture.Msplora(1);
        options.Ranks = [8, 0, 2];
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentException>(() => PeftTrainerFixture.Fit(ml, data, options)).Message, "Ranks");
        options = PeftTrainerFixture.Msplora(1);
        options.BalanceClasses = true;
        var scores = ml.Data.LoadFromEnumerable(ToyText.Rows(20, seed: 1).Select((r, i) => new { r.Sentence1, Label = (float)i }).ToList());
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentException>(() => ml.Regression.Trainers.Msplora(options).Fit(scores)).Message, "BalanceClasses");
        options = PeftTrainerFixture.Msplora(1);
        options.EarlyStoppingPatience = 2; // and no ValidationSet to score
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentException>(() => PeftTrainerFixture.Fit(ml, data, options)).Message, "ValidationSet");
        options = PeftTrainerFixture.Msplora(1);
        options.Precision = (MlNetPeft.Training.ComputePrecision)77;
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentException>(() => PeftTrainerFixture.Fit(ml, data, options)).Message, "Precision");
        var lora = PeftTrainerFixture.Lora(1);
        lora.Bias = (MlNetPeft.Adapters.LoraBias)5;
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentException>(() => PeftTrainerFixture.Fit(ml, data, lora)).Message, "Bias");
        // A pipeline asks the trainer for its output schema before Fit: a missing name is named there too.
        options = PeftTrainerFixture.Msplora(1);
        options.LabelColumnName = null!;
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentException>(() => PeftTrainerFixture.Fit(ml, data, options)).Message, "LabelColumnName");
    }

    /// <summary>A validation metric of another task would pick the best epoch by noise (the exact-match accuracy of real
    /// values, a correlation of class indices, a two-class F1 over three classes).</summary>
    [TestMethod]
    [DataRow("Accuracy", "regression")]
    [DataRow("MatthewsCorrelation", "regression")]
    [DataRow("Spearman", "classification")]
    [DataRow("F1", "classification")]
    public void ValidationMetricOfAnotherTaskIsRefused(string metric, string task)
    {
        var ml = Ml;
        var options = PeftTrainerFixture.Msplora(1);
        options.ValidationMetric = Enum.Parse<MlNetPeft.Training.ValidationMetric>(metric);
        var rows = ToyText.Rows(20, seed: 1); // three classes
        Exception e = task == "regression"
            ? Assert.ThrowsExactly<ArgumentException>(() => ml.Regression.Trainers.Msplora(options)
                .Fit(ml.Data.LoadFromEnumerable(rows.Select((r, i) => new { r.Sentence1, Label = (float)i }).ToList())))
            : Assert.ThrowsExactly<ArgumentException>(() => PeftTrainerFixture.Fit(ml, ml.Data.LoadFromEnumerable(rows), options));
        AssertNames(e, $"ValidationMetric {metric}");
    }
}
