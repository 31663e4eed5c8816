using System.Reflection;
using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetPeft.MlNet;
using MlNetPeft.Training;
using TorchSharp;

namespace MlNetPeft.Tests.MlNet;

/// <summary>End to end through ML.NET: learning, metrics, prediction engine, schema, progress, determinism.</summary>
[TestClass]
public sealed class TrainerTests
{
    public static IEnumerable<object[]> Trainers =>
    [
        [PeftTrainerFixture.Msplora()],
        [PeftTrainerFixture.Lora()],
        [PeftTrainerFixture.Dora()],
        [PeftTrainerFixture.LoraSquared()],
        [PeftTrainerFixture.AdaLora()],
        // On all six matrices (the LoRA² paper's setting). Not LoRA or MSPLoRA: on this tiny random backbone the FFN
        // adapters' gradients are 10-100× smaller than the attention ones, AdamW steps them at full size all the same, and at
        // this learning rate the model then collapses to one prediction (checked; their gradients equal PyTorch's).
        [PeftTrainerFixture.OnEveryLinear(PeftTrainerFixture.LoraSquared())],
        // What CUDA runs by default (bf16 frozen backbone, fp32 adapters, head and optimizer), here on the CPU.
        [PeftTrainerFixture.WithPrecision(PeftTrainerFixture.Msplora(), ComputePrecision.BFloat16)],
        // What GPUs without bf16 tensor cores (V100, T4) run by default: an fp16 backbone with the loss scaled.
        [PeftTrainerFixture.WithPrecision(PeftTrainerFixture.Lora(), ComputePrecision.Float16)],
    ];

    [TestMethod]
    [DynamicData(nameof(Trainers))]
    public void LearnsALabelThatDependsOnTheText(PeftTextTrainerOptions options)
    {
        var ml = new MLContext(seed: 1);
        var train = ml.Data.LoadFromEnumerable(ToyText.Rows(240, seed: 1));
        var test = ml.Data.LoadFromEnumerable(ToyText.Rows(90, seed: 2));
        var (model, progress) = PeftTrainerFixture.Fit(ml, train, options);

        double first = progress.First().Loss, last = progress.Last().Loss;
        Assert.IsLessThan(first / 2, last, $"training loss {first:F3} → {last:F3} should at least halve");
        var metrics = ml.MulticlassClassification.Evaluate(model.Transform(test));
        Assert.IsGreaterThan(0.8, metrics.MicroAccuracy, $"accuracy on held-out rows (chance 0.33): {metrics.MicroAccuracy:F3}");

        var engine = ml.Model.CreatePredictionEngine<ToyText.Row, ToyText.Prediction>(model);
        Assert.AreEqual("animal", engine.Predict(new ToyText.Row { Sentence1 = "zebra wolf fox owl" }).PredictedLabel);
        Assert.AreEqual("fruit", engine.Predict(new ToyText.Row { Sentence1 = "peach melon apple cherry" }).PredictedLabel);
    }

    /// <summary>ML.NET's CrossValidate fits and scores the estimator once per fold (split, Transform, Evaluate). With a
    /// TrainingStateDirectory each fold keeps its own state, so a second CrossValidate finds every fold finished and
    /// scores the same.</summary>
    [TestMethod]
    public void CrossValidatesLikeAnyMlNetTrainer()
    {
        var ml = new MLContext(seed: 1);
        var log = PeftTrainerFixture.LogMessages(ml, Microsoft.ML.Runtime.ChannelMessageKind.Info);
        var data = ml.Data.LoadFromEnumerable(ToyText.Rows(240, seed: 3));
        var options = PeftTrainerFixture.Lora();
        options.TrainingStateDirectory = TestFolders.Create("mlnetpeft-cv-state-");
        var pipeline = ToyText.KeyLabel(ml).Append(PeftTrainerFixture.Classifier(ml, options));
        var folds = ml.MulticlassClassification.CrossValidate(data, pipeline, numberOfFolds: 3);
        Assert.HasCount(3, folds);
        foreach (var fold in folds)
            Assert.IsGreaterThan(0.8, fold.Metrics.MicroAccuracy, $"fold {fold.Fold}: {fold.Metrics.MicroAccuracy:F3} (chance 0.33)");

        Assert.HasCount(3, Directory.GetFiles(options.TrainingStateDirectory, TrainingCheckpoint.FilePrefix + "*.safetensors"), "a state per fold");
        var again = ml.MulticlassClassification.CrossValidate(data, pipeline, numberOfFolds: 3);
        Assert.AreEqual(3, log.Count(m => m.Contains("that run has finished")), "every fold found its own finished state");
        CollectionAssert.AreEqual(folds.Select(f => f.Metrics.LogLoss).ToArray(), again.Select(f => f.Metrics.LogLoss).ToArray());
        Directory.Delete(options.TrainingStateDirectory, recursive: true);
    }

    /// <summary>MLContext.CancelExecution stops training at the next batch, as it stops ML.NET's own trainers (it is
    /// internal in ML.NET 5, called by AutoML when an experiment's time is up; the test reaches it by reflection).</summary>
    [TestMethod]
    public void CancelExecutionStopsTraining()
    {
        var ml = new MLContext(seed: 1);
        var train = ml.Data.LoadFromEnumerable(ToyText.Rows(240, seed: 1));
        var options = PeftTrainerFixture.Lora(epochs: 50);
        var reports = new List<TrainingProgress>();
        options.ProgressCallback = p =>
        {
            reports.Add(p);
            typeof(MLContext).GetMethod("CancelExecution", BindingFlags.NonPublic | BindingFlags.Instance)!.Invoke(ml, null);
        };
        var pipeline = ToyText.KeyLabel(ml).Append(PeftTrainerFixture.Classifier(ml, options));
        Assert.ThrowsExactly<OperationCanceledException>(() => pipeline.Fit(train));
        Assert.HasCount(1, reports, "no batch after the cancel");
        Assert.AreEqual(options.LogEveryNSteps, reports[0].Step);
    }

    [TestMethod]
    public void SameSeedGivesTheSameModel()
    {
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(ToyText.Rows(64, seed: 3));
        var a = PeftTrainerFixture.Scores(PeftTrainerFixture.Fit(ml, data, PeftTrainerFixture.Msplora(2)).Model, data, ml);
        var b = PeftTrainerFixture.Scores(PeftTrainerFixture.Fit(ml, data, PeftTrainerFixture.Msplora(2)).Model, data, ml);
        var options = PeftTrainerFixture.Msplora(2);
        options.Seed = 7;
        var c = PeftTrainerFixture.Scores(PeftTrainerFixture.Fit(ml, data, options).Model, data, ml);
        PeftTrainerFixture.AssertSameScores(a, b);
        Assert.IsTrue(a.Zip(c).Any(p => !p.First.SequenceEqual(p.Second)), "another seed gives another model");
    }

    [TestMethod]
    public void ReportsProgressToTheCallbackAndTheLog()
    {
        var ml = new MLContext(seed: 1);
        var log = PeftTrainerFixture.LogMessages(ml, Microsoft.ML.Runtime.ChannelMessageKind.Info);
        var data = ml.Data.LoadFromEnumerable(ToyText.Rows(64, seed: 3));
        var options = PeftTrainerFixture.Msplora(3);
        options.ValidationSet = ToyText.KeyLabel(ml).Fit(data).Transform(ml.Data.LoadFromEnumerable(ToyText.Rows(30, seed: 4)));
        var (_, progress) = PeftTrainerFixture.Fit(ml, data, options);

        Assert.AreEqual(3 * 4, progress.Max(p => p.Step), "64 rows in batches of 16 for 3 epochs");
        Assert.IsTrue(progress.All(p => p.TotalSteps == 12 && double.IsFinite(p.Loss)));
        var validation = progress.Where(p => p.ValidationMetric is not null).ToList();
        CollectionAssert.AreEqual(new[] { 1, 2, 3 }, validation.Select(p => p.Epoch).ToArray(), "one validation score per epoch");
        Assert.IsTrue(log.Any(m => m.Contains("msplora adapters")), "parameter report logged");
        Assert.IsTrue(log.Any(m => m.Contains("validation")), "validation logged");
    }

    [TestMethod]
    public void EarlyStoppingStopsWhenValidationStallsAndKeepsTheBestEpoch()
    {
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(ToyText.Rows(64, seed: 3));
        var options = PeftTrainerFixture.Msplora(30);
        options.EarlyStoppingPatience = 2;
        // Validation labels that no text predicts: accuracy cannot keep improving, so training stops early.
        var noise = ToyText.Rows(30, seed: 4).Select((r, i) => new ToyText.Row { Sentence1 = r.Sentence1, Label = new[] { "fruit", "animal", "number" }[i % 3] });
        var noiseData = ml.Data.LoadFromEnumerable(noise);
        options.ValidationSet = ToyText.KeyLabel(ml).Fit(data).Transform(noiseData);
        var (model, progress) = PeftTrainerFixture.Fit(ml, data, options);
        int epochs = progress.Max(p => p.Epoch);
        Assert.IsLessThan(30, epochs, "stopped before MaxEpochs");
        var scores = progress.Where(p => p.ValidationMetric is not null).Select(p => p.ValidationMetric!.Value).ToList();
        Assert.AreEqual(scores.Count - 1 - 2, scores.IndexOf(scores.Max()), "stopped 2 epochs after the best one");
        var final = ml.MulticlassClassification.Evaluate(model.Transform(noiseData)).MicroAccuracy;
        Assert.AreEqual(scores.Max(), final, 1e-9, "the model returned is the best epoch's, not the last one's");
    }

    [TestMethod]
    [DataRow(1, false, false)]
    [DataRow(2, false, false)] // gradient accumulation: a dispose scope per batch inside the step
    [DataRow(1, true, false)]  // gradient checkpointing: each block's forward and replay in scopes of their own
    [DataRow(1, false, true)]  // DoRA: its norms and rescaled rows made in every forward
    public void MemoryStaysFlatAcrossEpochs(int accumulation, bool checkpointing, bool dora)
    {
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(ToyText.Rows(64, seed: 3));
        PeftTextTrainerOptions options = dora ? PeftTrainerFixture.Dora(4) : PeftTrainerFixture.Msplora(4);
        options.GradientAccumulationSteps = accumulation;
        options.GradientCheckpointing = checkpointing;
        int stepsPerEpoch = 64 / options.BatchSize / accumulation;
        var live = new List<long>();
        options.ProgressCallback = p =>
        {
            if (p.ValidationMetric is null && p.Step == p.Epoch * stepsPerEpoch) live.Add(DisposeScopeManager.Statistics.ThreadTotalLiveCount);
        };
        ToyText.KeyLabel(ml).Append(PeftTrainerFixture.Classifier(ml, options)).Fit(data);
        Assert.HasCount(4, live);
        Assert.IsTrue(live.Skip(1).All(n => n == live[0]), $"live tensors at each epoch end: {string.Join(", ", live)}");
    }

    /// <summary>The option reaches the training loop, and a checkpointed model scores as one trained without.</summary>
    [TestMethod]
    public void GradientCheckpointingTrainsTheSameModel()
    {
        float[][] Scores(bool checkpointing)
        {
            var ml = new MLContext(seed: 1);
            var data = ml.Data.LoadFromEnumerable(ToyText.Rows(48, seed: 3));
            var options = PeftTrainerFixture.Msplora(3);
            options.GradientCheckpointing = checkpointing;
            Assert.AreEqual(checkpointing, options.ToTrainingSettings().GradientCheckpointing);
            var (model, _) = PeftTrainerFixture.Fit(ml, data, options);
            return PeftTrainerFixture.Scores(model, data, ml);
        }
        var plain = Scores(false);
        var checkpointed = Scores(true);
        double largest = plain.Zip(checkpointed).Max(p => p.First.Zip(p.Second).Max(s => Math.Abs(s.First - s.Second)));
        Assert.IsLessThan(1e-4, largest, "scores of the two models");
    }

    /// <summary>The weight column reaches the loss: weights of 1 change nothing (bit for bit), and rows weighted 1, 2
    /// and 3 train the model that repeating them does (one batch per epoch, so only the order of a sum differs; the
    /// training loop's tests check the loss itself, and weight 0). No row is left out here: MapValueToKey numbers the
    /// classes in order of first appearance, which must not change.</summary>
    [TestMethod]
    public void ExampleWeightsCountRowsAsOftenAsTheirWeight()
    {
        var rows = ToyText.Rows(30, seed: 3);
        float[][] FitAndScore<TRow>(List<TRow> data, string? weightColumn) where TRow : class
        {
            var ml = new MLContext(seed: 1);
            var options = PeftTrainerFixture.Msplora(3);
            options.BatchSize = 64;
            options.ExampleWeightColumnName = weightColumn;
            var (model, _) = PeftTrainerFixture.Fit(ml, ml.Data.LoadFromEnumerable(data), options);
            return PeftTrainerFixture.Scores(model, ml.Data.LoadFromEnumerable(rows), ml);
        }
        static double Largest(float[][] a, float[][] b) => a.Zip(b).Max(p => p.First.Zip(p.Second).Max(s => Math.Abs(s.First - s.Second)));

        var plain = FitAndScore(rows, null);
        Assert.AreEqual(0, Largest(plain, FitAndScore(ToyText.Weighted(rows, _ => 1), "Weight")), "all weights 1");
        var weighted = FitAndScore(ToyText.Weighted(rows, i => 1 + i % 3), "Weight");
        var repeated = FitAndScore(rows.SelectMany((r, i) => Enumerable.Repeat(r, 1 + i % 3)).ToList(), null);
        Assert.IsLessThan(1e-4, Largest(weighted, repeated), "weights 1, 2, 3 = rows repeated");
        Assert.IsGreaterThan(1e-3, Largest(weighted, plain), "the weights change the model");
    }

    /// <summary>BalanceClasses gives each row the weight rows / (classes × rows of its class): the same model as that
    /// weight in an example weight column (bit for bit), and on a 9-to-1 imbalanced set, more probability for the rare
    /// class than training without.</summary>
    [TestMethod]
    public void BalancedClassesWeighRowsByTheirClassesRarity()
    {
        var rows = ToyText.Rows(200, seed: 5, classes: 2);
        var majority = rows[0].Label;
        rows = rows.Where(r => r.Label == majority).Take(90).Concat(rows.Where(r => r.Label != majority).Take(10)).ToList();
        (float[][] Scores, int Rare) FitAndScore<TRow>(List<TRow> data, bool balance, string? weightColumn) where TRow : class
        {
            var ml = new MLContext(seed: 1);
            var options = PeftTrainerFixture.Msplora(1);
            options.BalanceClasses = balance;
            options.ExampleWeightColumnName = weightColumn;
            var keys = ToyText.KeyLabel(ml).Fit(ml.Data.LoadFromEnumerable(rows)); // one class order for every run
            var model = ml.MulticlassClassification.Trainers.Msplora(options).Fit(keys.Transform(ml.Data.LoadFromEnumerable(data)));
            var keyed = keys.Transform(ml.Data.LoadFromEnumerable(rows));
            var names = new VBuffer<ReadOnlyMemory<char>>();
            keyed.Schema["Label"].GetKeyValues(ref names);
            int rare = names.DenseValues().Select(v => v.ToString()).ToList().FindIndex(n => n != majority);
            return (PeftTrainerFixture.Scores(model, keyed, ml), rare);
        }
        var (balanced, rare) = FitAndScore(rows, balance: true, null);
        var explicitly = FitAndScore(ToyText.Weighted(rows, i => (float)(100.0 / 2 / (rows[i].Label == majority ? 90 : 10))), false, "Weight").Scores;
        for (int row = 0; row < rows.Count; row++) CollectionAssert.AreEqual(explicitly[row], balanced[row], $"row {row}");

        var plain = FitAndScore(rows, balance: false, null).Scores;
        double Rare(float[][] scores) => scores.Average(s => s[rare]);
        Assert.IsGreaterThan(Rare(plain) + 0.03, Rare(balanced), $"mean probability of the rare class: {Rare(plain):F3} without, {Rare(balanced):F3} balanced");
    }

    /// <summary>A Fit that stops part way (a crash, a cancellation) and a second Fit on the same directory give the
    /// model one uninterrupted Fit gives (the loop's own tests cover every method; this one, the options and the log).</summary>
    [TestMethod]
    public void AnInterruptedFitResumesFromItsTrainingStateDirectory()
    {
        var rows = ToyText.Rows(48, seed: 3); // 3 steps an epoch of 16 rows, 9 steps in all
        float[][] FitAndScore(string? directory, int? stopAfter, List<string>? log = null)
        {
            var ml = new MLContext(seed: 1);
            if (log is not null) ml.Log += (_, e) => { lock (log) log.Add(e.Message); };
            var data = ml.Data.LoadFromEnumerable(rows);
            var options = PeftTrainerFixture.Msplora(3);
            options.LoraDropout = 0.1;
            options.TrainingStateDirectory = directory;
            options.SaveStateEveryNSteps = directory is null ? 0 : 2;
            options.ProgressCallback = p => { if (p.Step == stopAfter) throw new OperationCanceledException("stopped by the test"); };
            var model = ToyText.KeyLabel(ml).Append(ml.MulticlassClassification.Trainers.Msplora(options)).Fit(data);
            return PeftTrainerFixture.Scores(model, data, ml);
        }

        var whole = FitAndScore(null, null);
        var directory = TestFolders.Create("mlnetpeft-fit-state-");
        try
        {
            Assert.ThrowsExactly<OperationCanceledException>(() => FitAndScore(directory, stopAfter: 5));
            var log = new List<string>();
            var resumed = FitAndScore(directory, null, log);
            Assert.IsTrue(log.Any(m => m.Contains($"Resuming from {Path.Combine(directory, TrainingCheckpoint.FilePrefix)}") && m.Contains(": epoch 2, step 4 of 9")),
                "resumed from the save after step 4 (saved every 2 steps and at epoch ends; step 5 was not saved)");
            for (int row = 0; row < whole.Length; row++) CollectionAssert.AreEqual(whole[row], resumed[row], $"scores of row {row}");
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [TestMethod]
    public void EstimatorDescribesItsOutputColumns()
    {
        var ml = new MLContext();
        var data = ml.Data.LoadFromEnumerable(ToyText.Rows(10, seed: 1));
        var keyed = ToyText.KeyLabel(ml).Fit(data).Transform(data);
        // SchemaShape.Create is internal to ML.NET; estimators receive shapes built by it.
        var input = (SchemaShape)typeof(SchemaShape).GetMethod("Create", System.Reflection.BindingFlags.Static | System.Reflection.BindingFlags.NonPublic)!
            .Invoke(null, [keyed.Schema])!;
        var shape = ml.MulticlassClassification.Trainers.Msplora(PeftTrainerFixture.Msplora()).GetOutputSchema(input);
        var score = shape.Single(c => c.Name == "Score");
        Assert.AreEqual(SchemaShape.Column.VectorKind.Vector, score.Kind);
        Assert.IsTrue(shape.Single(c => c.Name == "PredictedLabel").IsKey);
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() =>
            ml.MulticlassClassification.Trainers.Msplora(PeftTrainerFixture.Msplora()).GetOutputSchema(
                (SchemaShape)typeof(SchemaShape).GetMethod("Create", System.Reflection.BindingFlags.Static | System.Reflection.BindingFlags.NonPublic)!
                    .Invoke(null, [data.Schema])!));
        StringAssert.Contains(e.Message, "MapValueToKey");
    }
}
