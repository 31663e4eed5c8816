using MlNetPeft.Adapters;
using MlNetPeft.Adapters.Lora;
using MlNetPeft.Tests.Adapters;
using MlNetPeft.Training;
using static TorchSharp.torch;

namespace MlNetPeft.Tests.Training;

/// <summary>fp16 training's dynamic loss scaling (PyTorch GradScaler's rules and defaults).</summary>
[TestClass]
public sealed class LossScalerTests
{
    [TestMethod]
    public void TheScaleHalvesOnOverflowAndDoublesAfterTwoThousandGoodSteps()
    {
        var scaler = new LossScaler();
        Assert.AreEqual(65536.0, scaler.Scale);
        Assert.IsFalse(scaler.Update(finite: false), "an overflowing step is skipped");
        Assert.AreEqual(32768.0, scaler.Scale);
        for (int i = 1; i < 2000; i++) Assert.IsTrue(scaler.Update(finite: true));
        Assert.AreEqual(32768.0, scaler.Scale, "1,999 good steps");
        Assert.IsTrue(scaler.Update(finite: true));
        Assert.AreEqual(65536.0, scaler.Scale, "the 2,000th doubles it");
        Assert.AreEqual(0, scaler.GoodSteps);
        scaler.Update(finite: true);
        scaler.Update(finite: false);
        Assert.AreEqual(0, scaler.GoodSteps, "an overflow restarts the count");

        var largest = new LossScaler(Math.Pow(2, 127));
        for (int i = 0; i < 2000; i++) largest.Update(finite: true);
        Assert.AreEqual(Math.Pow(2, 127), largest.Scale, "no growth past what fp32 holds");

        for (int i = 0; i < 5; i++) scaler.Update(finite: true);
        var restored = new LossScaler();
        restored.LoadState(scaler.State().ToDictionary(s => s.Name, s => s.Tensor));
        Assert.AreEqual((scaler.Scale, scaler.GoodSteps), (restored.Scale, restored.GoodSteps));
        restored.LoadState(new Dictionary<string, Tensor>());
        Assert.AreEqual(scaler.Scale, restored.Scale, "a state without a scale (another precision's) changes nothing");
    }

    /// <summary>The same tiny LoRA model in fp32 or fp16, its B factors made non-zero so that the A factors get
    /// gradients too.</summary>
    private static PeftModel Model(ScalarType dtype)
    {
        manual_seed(3);
        var model = AdapterTests.Tiny(new LoraConfig { Dropout = 0 });
        using (no_grad())
            foreach (var (_, b) in model.TrainableParameters().Where(p => p.Name.EndsWith("lora_B", StringComparison.Ordinal)))
                b.copy_(randn_like(b).mul_(0.1));
        model.To(CPU, dtype);
        model.Train();
        return model;
    }

    private static (Tensor Ids, Tensor Labels) Inputs()
    {
        manual_seed(5);
        return (randint(3, 100, [4, 8]), tensor(new long[] { 0, 1, 2, 0 }));
    }

    /// <summary>Scaling only moves the gradients' range: fp16's, divided by the scale again, equal fp32's to fp16's
    /// rounding; a gradient holding an inf is reported.</summary>
    [TestMethod]
    public void UnscaledFloat16GradientsEqualFloat32s()
    {
        var (ids, labels) = Inputs();
        using var reference = Model(ScalarType.Float32);
        nn.functional.cross_entropy(reference.Forward(ids, null), labels).backward();
        var expected = reference.TrainableParameters().ToDictionary(p => p.Name, p => p.Parameter.grad!.clone());

        using var model = Model(ScalarType.Float16);
        var trained = model.TrainableParameters().ToList();
        using var optimizer = new FlatAdamW([new(trained.Select(p => p.Parameter).ToList(), 1e-3, 0)]);
        void ScaledBackward() => nn.functional.cross_entropy(model.Forward(ids, null), labels).mul(LossScaler.InitialScale).backward();
        ScaledBackward();
        Assert.IsTrue(optimizer.Unscale(LossScaler.InitialScale));
        var unscaled = optimizer.View(trained.Select(p => p.Parameter).ToList()).Gradients();
        long offset = 0;
        foreach (var (name, p) in trained)
        {
            var gradient = unscaled.narrow(0, offset, p.numel()).view(p.shape);
            offset += p.numel();
            double error = gradient.sub(expected[name]).norm().item<float>() / expected[name].norm().item<float>();
            Assert.IsLessThan(1e-2, error, $"{name}: relative error {error:E2} (norm {expected[name].norm().item<float>():E2})");
        }

        optimizer.ZeroGrad();
        ScaledBackward();
        using (no_grad()) trained[0].Parameter.grad!.view(-1)[0] = float.PositiveInfinity;
        Assert.IsFalse(optimizer.Unscale(1), "an inf is found");
    }

    /// <summary>While the scaled gradients overflow fp16 the step is skipped: weights, AdamW's step count and the
    /// learning rate stay, and the scale halves, until it is small enough; then training goes on at that scale. The
    /// loss returned is never scaled.</summary>
    [TestMethod]
    public void StepsWhoseScaledGradientsOverflowAreSkipped()
    {
        var (ids, labels) = Inputs();
        using var model = Model(ScalarType.Float16);
        var settings = new TrainingSettings { LearningRate = 1e-3, WarmupRatio = 0.1, InitialLossScale = Math.Pow(2, 40) };
        using var stepper = new TrainingStepper(model, settings, TaskKind.Classification, totalSteps: 50);
        double scale = settings.InitialLossScale;
        var batch = new Batch(ids, null, labels, 4);
        while (stepper.Steps == 0 && stepper.SkippedSteps < 40)
        {
            using var scope = NewDisposeScope();
            var before = model.TrainableState();
            double learningRate = stepper.LearningRate;
            float loss = stepper.Run(batch).item<float>();
            Assert.IsTrue(loss is > 0 and < 5, $"loss {loss}: unscaled");
            bool changed = model.TrainableState().Any(s => !s.Value.equal(before[s.Key]).all().item<bool>());
            if (stepper.Steps == 0)
            {
                scale /= 2;
                Assert.AreEqual(scale, stepper.LossScaler!.Scale, "halved");
                Assert.IsFalse(changed, $"skipped step {stepper.SkippedSteps} changed the weights");
                Assert.AreEqual(learningRate, stepper.LearningRate, "the schedule waits");
            }
            else
            {
                Assert.AreEqual(scale, stepper.LossScaler!.Scale, "a good step keeps the scale");
                Assert.IsTrue(changed, "a good step trains");
            }
        }
        Assert.AreEqual(1, stepper.Steps);
        Assert.IsInRange(1, 39, stepper.SkippedSteps);
    }

    /// <summary>An fp16 forward that overflows (a weight beyond what fp16 activations can carry) makes every gradient
    /// NaN: the stepper stops once the scale has fallen 2^24-fold below 1, and the loop on its first NaN loss; both say
    /// what to use instead.</summary>
    [TestMethod]
    public void AnOverflowingForwardEndsWithAnErrorThatNamesTheOtherPrecisions()
    {
        var (ids, labels) = Inputs();
        using var model = Model(ScalarType.Float16);
        using (no_grad()) ((TorchSharp.Modules.Linear)model.Network.Encoder.Layers[0].Projection("intermediate.dense")).weight!.uniform_(-1, 1).mul_(60000);
        var settings = new TrainingSettings { InitialLossScale = Math.Pow(2, -24) };
        using (var stepper = new TrainingStepper(model, settings, TaskKind.Classification, totalSteps: 5))
        {
            var e = Assert.ThrowsExactly<InvalidOperationException>(() => stepper.Run(new Batch(ids, null, labels, 4)));
            StringAssert.Contains(e.Message, "Training in Float16 skipped step after step");
            StringAssert.Contains(e.Message, "Use Precision = BFloat16");
        }

        var rows = Enumerable.Range(0, 8).Select(i => new Example([5, 6 + i, 7], i % 3, i)).ToList();
        var loop = new TrainingLoop(model, new TrainingSettings { BatchSize = 4, MaxEpochs = 1, LogEveryNSteps = 1 }, TaskKind.Classification, padId: 1, _ => { });
        var diverged = Assert.ThrowsExactly<InvalidOperationException>(() => loop.Run(rows, null));
        StringAssert.Contains(diverged.Message, "Training diverged");
        StringAssert.Contains(diverged.Message, "In Float16 the backbone's activations may also overflow fp16");
    }
}
