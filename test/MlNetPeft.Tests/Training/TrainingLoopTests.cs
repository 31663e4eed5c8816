using MlNetPeft.Adapters;
using MlNetPeft.Backbone;
using MlNetPeft.Adapters.Lora;
using MlNetPeft.Adapters.LoraSquared;
using MlNetPeft.Adapters.Msplora;
using MlNetPeft.Tests.Adapters;
using MlNetPeft.Training;
using static TorchSharp.torch;

namespace MlNetPeft.Tests.Training;

[TestClass]
public sealed class TrainingLoopTests
{
    [TestMethod]
    public void ScheduleWarmsUpThenDecaysLinearlyToZero()
    {
        var factor = LearningRateSchedule.LinearWithWarmup(100, 0.06); // 6 warm-up steps
        Assert.AreEqual(1.0 / 6, factor(0), 1e-12);
        Assert.AreEqual(1.0, factor(5), 1e-12);
        Assert.AreEqual(94.0 / 94, factor(6), 1e-12);
        Assert.AreEqual(47.0 / 94, factor(53), 1e-12);
        Assert.AreEqual(1.0 / 94, factor(99), 1e-12);
        Assert.AreEqual(0.0, factor(100), 1e-12);
        Assert.AreEqual(1.0, LearningRateSchedule.LinearWithWarmup(10, 0)(0), 1e-12);
    }

    [TestMethod]
    public void StepperCountsStepsAndFollowsTheScheduleWithoutHooks()
    {
        using var model = AdapterTests.Tiny(new LoraConfig());
        var settings = new TrainingSettings { LearningRate = 1e-3, WarmupRatio = 0.2, HeadLearningRateRatio = 0.5 };
        using var stepper = new TrainingStepper(model, settings, TaskKind.Classification, totalSteps: 10);
        var factor = LearningRateSchedule.LinearWithWarmup(10, 0.2);
        Assert.AreEqual(1e-3 * factor(0), stepper.LearningRate, 1e-15);
        manual_seed(1);
        var batch = new Batch(randint(3, 100, [4, 8]), null, tensor(new long[] { 0, 1, 2, 0 }), 4);
        model.Train();
        for (int i = 1; i <= 3; i++)
        {
            using var scope = NewDisposeScope();
            stepper.Run(batch);
            Assert.AreEqual(i, stepper.Steps);
            Assert.AreEqual(1e-3 * factor(i), stepper.LearningRate, 1e-15, $"after step {i}");
        }
    }

    /// <summary>AdaLoRA's importance scores read the gradients the optimizer stepped on, clipped, as PEFT's
    /// update_and_allocate reads them after optimizer.step(): from the optimizer's flat buffer (the parameters' own
    /// gradients stay autograd's, unclipped). AdaLoRA scores all its adapter parameters, which lie side by side there;
    /// LoRA² scores three of its five factors.</summary>
    [TestMethod]
    [DataRow(SvdVariant.AdaLora)]
    [DataRow(SvdVariant.LoraSquared)]
    public void HooksSeeTheClippedGradients(SvdVariant variant)
    {
        Tensor Sensitivity(double clip)
        {
            using var model = AdapterTests.Tiny(new SvdConfig { Variant = variant, Dropout = 0 });
            using var stepper = new TrainingStepper(model, new TrainingSettings { LearningRate = 1e-3, GradientClipNorm = clip },
                TaskKind.Classification, totalSteps: 100);
            manual_seed(1);
            var batch = new Batch(randint(3, 100, [4, 8]), null, tensor(new long[] { 0, 1, 2, 0 }), 4);
            model.Train();
            using (NewDisposeScope()) stepper.Run(batch);
            return stepper.State().Single(s => s.Name == "hooks.sensitivity").Tensor.detach().clone();
        }
        var unclipped = Sensitivity(0);
        var clipped = Sensitivity(1e-4);
        // The weights after AdamW's first step hardly depend on the gradients' scale, so clipping a gradient of norm
        // far above 1e-4 shrinks the scores by about its clip factor; read from unclipped gradients they would not shrink.
        var ratio = clipped.sum().item<float>() / unclipped.sum().item<float>();
        Assert.IsLessThan(0.01f, ratio, "the scores came from the clipped gradients");
    }

    public static IEnumerable<object[]> AccumulatingMethods =>
    [
        [new LoraConfig { Dropout = 0 }],
        [new SvdConfig { Variant = SvdVariant.AdaLora, Dropout = 0 }], // extra loss, importance scores, pruning budget
    ];

    public static IEnumerable<object[]> AccumulationCases =>
        AccumulatingMethods.SelectMany(m => new[] { new[] { m[0], false }, [m[0], true] });

    [TestMethod]
    [DynamicData(nameof(AccumulationCases))]
    public void AccumulatedBatchesStepLikeOneBatchOfAllTheirRows(AdapterConfig adapters, bool weighted)
    {
        // Rows of different lengths, so each small batch is padded to its own width; weighted, a step's batches carry
        // different total weights (and some rows none).
        var random = new Random(3);
        var examples = Enumerable.Range(0, 20)
            .Select(i => new Example(Enumerable.Range(0, random.Next(3, 13)).Select(_ => random.Next(3, 100)).ToArray(), i % 3, i,
                weighted ? random.Next(0, 4) * 0.5f : 1))
            .ToList();

        // The fixture has no dropout and the adapters none: runs differ only in how the rows are batched.
        Dictionary<string, Tensor> Train(int batchSize, int accumulation, out int steps)
        {
            manual_seed(7);
            using var model = AdapterTests.Tiny(adapters);
            var settings = new TrainingSettings
            {
                BatchSize = batchSize, GradientAccumulationSteps = accumulation, MaxEpochs = 2, LearningRate = 1e-2,
                LogEveryNSteps = 1,
            };
            var result = new TrainingLoop(model, settings, TaskKind.Classification, padId: 1, _ => { }).Run(examples, null);
            steps = result.Steps;
            return model.TrainableState();
        }

        var whole = Train(batchSize: 8, accumulation: 1, out int wholeSteps);
        var accumulated = Train(batchSize: 4, accumulation: 2, out int accumulatedSteps);
        var small = Train(batchSize: 4, accumulation: 1, out _);
        Assert.AreEqual(6, wholeSteps, "3 steps (8, 8 and 4 rows) per epoch");
        Assert.AreEqual(wholeSteps, accumulatedSteps);
        static double Difference(Dictionary<string, Tensor> a, Dictionary<string, Tensor> b) =>
            a.Keys.Max(k => (a[k] - b[k]).abs().max().item<float>());
        Assert.IsLessThan(2e-6, Difference(whole, accumulated), "2 batches of 4 accumulated = 1 batch of 8");
        Assert.IsGreaterThan(1e-3, Difference(whole, small), "without accumulation, batches of 4 train differently");
    }

    [TestMethod]
    public void ARowOfWeightKTrainsAsThatRowKTimes()
    {
        var random = new Random(5);
        var rows = Enumerable.Range(0, 12)
            .Select(i => (Ids: Enumerable.Range(0, random.Next(3, 13)).Select(_ => random.Next(3, 100)).ToArray(), Label: i % 3, Weight: i % 4))
            .ToList();
        var weighted = rows.Select((r, i) => new Example(r.Ids, r.Label, i, r.Weight)).ToList();
        var repeated = rows.SelectMany(r => Enumerable.Repeat(r, r.Weight)).Select((r, i) => new Example(r.Ids, r.Label, i)).ToList();

        // One batch per epoch holds every row, so both runs take the same steps on the same loss (the loss reported is
        // that of the last step: the weighted mean over the rows).
        (Dictionary<string, Tensor> Weights, double Loss) Train(List<Example> examples, TaskKind task)
        {
            manual_seed(7);
            using var model = task == TaskKind.Classification
                ? AdapterTests.Tiny(new LoraConfig { Dropout = 0 })
                : PeftModel.Create(RobertaConfig.Load(Path.Combine(TestData.TinyRoberta, "config.json")), 1, new LoraConfig { Dropout = 0 },
                    SafeTensors.Load(Path.Combine(TestData.TinyRoberta, "model.safetensors")), "tiny"); // one output, a new head
            var settings = new TrainingSettings { BatchSize = 64, MaxEpochs = 3, LearningRate = 1e-2, LogEveryNSteps = 1 };
            var result = new TrainingLoop(model, settings, task, padId: 1, _ => { }).Run(examples, null);
            return (model.TrainableState(), result.FinalLoss);
        }
        static double Difference(Dictionary<string, Tensor> a, Dictionary<string, Tensor> b) =>
            a.Keys.Max(k => (a[k] - b[k]).abs().max().item<float>());
        foreach (var task in new[] { TaskKind.Classification, TaskKind.Regression })
        {
            var byWeight = Train(weighted, task);
            var byRepeat = Train(repeated, task);
            var unweighted = Train(weighted.Select(e => e with { Weight = 1 }).ToList(), task);
            Assert.AreEqual(byRepeat.Loss, byWeight.Loss, 1e-6 * byRepeat.Loss, $"{task}: the loss is the mean over the rows counted by weight");
            // AdamW's first steps move each weight by about the learning rate, so float rounding in a gradient that nearly
            // cancels shows at 1e-6 to 1e-5 here; weights ignored would move them by 1e-3 and more.
            Assert.IsLessThan(1e-4, Difference(byWeight.Weights, byRepeat.Weights), $"{task}: weights 0-3 = rows left out or repeated");
            Assert.IsGreaterThan(1e-3, Difference(byWeight.Weights, unweighted.Weights), $"{task}: the weights change the model");
        }
    }

    /// <summary>LoRA+: one AdamW step from the same start moves the B factors by exactly the ratio times what plain LoRA
    /// moves them (AdamW's first step is the rate times a function of the gradient alone), and A and the head alike.</summary>
    [TestMethod]
    [DataRow(false)]
    [DataRow(true)]
    public void LoraPlusStepsTheBFactorsAtItsRatio(bool msplora)
    {
        AdapterConfig adapters = msplora ? new MsploraConfig { Dropout = 0, GroupCount = 2 } : new LoraConfig { Dropout = 0 };
        Dictionary<string, Tensor> Step(double ratio)
        {
            manual_seed(7);
            using var model = AdapterTests.Tiny(adapters);
            var settings = new TrainingSettings { LearningRate = 1e-3, WarmupRatio = 0, LoraPlusLearningRateRatio = ratio };
            using var stepper = new TrainingStepper(model, settings, TaskKind.Classification, totalSteps: 10);
            model.Train();
            using (NewDisposeScope()) stepper.Run(new Batch(AdapterTests.Ids, AdapterTests.Mask, tensor(new long[] { 0, 1, 2 }), 3));
            return model.TrainableState();
        }
        var start = Step(1e-30); // B factors that do not move: the starting point, to rounding
        var plain = Step(1);
        var plus = Step(16);
        int bs = 0;
        foreach (var name in plain.Keys)
        {
            var moved = plain[name] - start[name];
            var movedPlus = plus[name] - start[name];
            if (name.EndsWith(".lora_B", StringComparison.Ordinal))
            {
                bs++;
                Assert.IsGreaterThan(1e-4, moved.abs().max().item<float>(), $"{name} moves");
                Assert.IsLessThan(1e-4 * movedPlus.abs().max().item<float>(), (movedPlus - moved.mul(16)).abs().max().item<float>(), $"{name}: 16 times");
            }
            else Assert.IsLessThan(1e-9, (movedPlus - moved).abs().max().item<float>(), $"{name} moves as without LoRA+");
        }
        Assert.IsGreaterThan(0, bs);
        using var adaLora = AdapterTests.Tiny(new SvdConfig { Variant = SvdVariant.AdaLora });
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentException>(() =>
            new TrainingStepper(adaLora, new TrainingSettings { LoraPlusLearningRateRatio = 16 }, TaskKind.Classification, 10)).Message, "LoraPlusLearningRateRatio");
        using var full = AdapterTests.Tiny(new MlNetPeft.Adapters.Full.FullFineTuningConfig());
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentException>(() =>
            new TrainingStepper(full, new TrainingSettings { LoraPlusLearningRateRatio = 16 }, TaskKind.Classification, 10)).Message, "LoraPlusLearningRateRatio");
    }

    /// <summary>With ValidationMetric.Loss the best epoch is the one of the lowest validation loss (and the loop keeps
    /// its weights); the loss reported is the mean cross-entropy of the validation rows.</summary>
    [TestMethod]
    public void ValidationLossPicksTheEpochOfTheLowestLoss()
    {
        var random = new Random(8);
        List<Example> Rows(int n) => Enumerable.Range(0, n)
            .Select(i => new Example(Enumerable.Range(0, random.Next(3, 13)).Select(_ => random.Next(3, 100)).ToArray(), i % 3, i)).ToList();
        var (train, validation) = (Rows(24), Rows(9));
        manual_seed(7);
        using var model = AdapterTests.Tiny(new LoraConfig { Dropout = 0 });
        var losses = new List<double>();
        var settings = new TrainingSettings
        {
            BatchSize = 8, MaxEpochs = 6, LearningRate = 5e-2, ValidationMetric = ValidationMetric.Loss,
            Progress = p => { if (p.ValidationMetric is { } v) losses.Add(v); },
        };
        var loop = new TrainingLoop(model, settings, TaskKind.Classification, padId: 1, _ => { });
        var result = loop.Run(train, validation);
        Assert.HasCount(6, losses);
        Assert.AreEqual(losses.IndexOf(losses.Min()) + 1, result.BestEpoch, $"validation losses {string.Join(", ", losses)}");
        Assert.AreEqual(losses.Min(), loop.Evaluate(validation), 1e-6, "the model returned is the best epoch's");
        Assert.IsTrue(losses.All(l => l > 0 && double.IsFinite(l)));
    }
}
