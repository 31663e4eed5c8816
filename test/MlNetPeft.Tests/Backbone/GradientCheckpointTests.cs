using MlNetPeft.Adapters;
using MlNetPeft.Adapters.Full;
using MlNetPeft.Adapters.Lora;
using MlNetPeft.Adapters.LoraSquared;
using MlNetPeft.Adapters.Msplora;
using MlNetPeft.Backbone;
using MlNetPeft.Tests.Adapters;
using MlNetPeft.Training;
using static TorchSharp.torch;

namespace MlNetPeft.Tests.Backbone;

[TestClass]
public sealed class GradientCheckpointTests
{
    public static IEnumerable<object[]> Methods =>
    [
        [new LoraConfig { Dropout = 0.1 }, true],
        [new LoraConfig { Dropout = 0.1 }, false], // each projection adds its own update
        [new MsploraConfig { Dropout = 0.1 }, true],
        [new MsploraConfig { Dropout = 0.1 }, false], // fused pairs with a dropout mask each (PairDropout)
        [new SvdConfig { Variant = SvdVariant.AdaLora, Dropout = 0.1 }, true],
        [new SvdConfig { Variant = SvdVariant.LoraSquared, Dropout = 0.1 }, true],
        [new SvdConfig { Variant = SvdVariant.LoraSquared, Dropout = 0.1, Targets = [.. AdapterTargets.All] }, true], // dense ones too
        [new FullFineTuningConfig(), true], // the blocks' inputs need gradients too
        [new LoraConfig { Dropout = 0.1, UseDora = true, Targets = [.. AdapterTargets.All] }, true], // DoRA's dropped-input GEMM in the replay
    ];

    /// <summary>A tiny model with dropout everywhere (backbone, attention probabilities, adapters), random adapters,
    /// packed projections, in training mode.</summary>
    private static PeftModel Model(AdapterConfig adapters)
    {
        var model = AdapterTests.Tiny(adapters, backboneDropout: 0.1);
        model.To(CPU, ScalarType.Float32);
        model.Train();
        return model;
    }

    /// <summary>With the blocks recomputed in the backward, a training forward gives bit-identical logits and every
    /// trainable parameter the gradient it gets without (the replay draws the same dropout masks, and adds each
    /// projection's own update where the forward added the stacked ones; shared MSPLoRA pairs summed over layers).</summary>
    [TestMethod]
    [DynamicData(nameof(Methods))]
    public void CheckpointedBlocksGiveTheSameLogitsAndGradients(AdapterConfig adapters, bool stacking)
    {
        using var plain = Model(adapters);
        using var checkpointed = Model(adapters);
        plain.Adapters.StackingEnabled = checkpointed.Adapters.StackingEnabled = stacking;
        // SVD forms multiply 3-5 factors, so larger values; on all six matrices less large, or rounding (the replay adds
        // each projection's own update where the forward added the stacked ones) reaches 1.2e-5 of a gradient.
        double scale = adapters is SvdConfig ? adapters.Targets.Length > 3 ? 0.3 : 0.4 : 0.1;
        AdapterTests.SetSameRandomAdapters(plain, checkpointed, seed: 3, scale);
        checkpointed.Network.Encoder.GradientCheckpointing = true;
        var labels = tensor(new long[] { 0, 1, 2 });

        Tensor Step(PeftModel model)
        {
            manual_seed(11);
            var logits = model.Forward(AdapterTests.Ids, AdapterTests.Mask);
            nn.functional.cross_entropy(logits, labels).backward();
            return logits;
        }
        var expected = Step(plain);
        var actual = Step(checkpointed);
        Assert.IsTrue(expected.equal(actual).all().item<bool>(), $"logits differ by {(expected - actual).abs().max().item<float>()}");
        manual_seed(12);
        using (no_grad())
            Assert.IsFalse(plain.Forward(AdapterTests.Ids, AdapterTests.Mask).equal(expected).all().item<bool>(), "dropout is active");

        var pairs = plain.TrainableParameters().Zip(checkpointed.TrainableParameters()).ToList();
        Assert.IsNotEmpty(pairs);
        foreach (var ((name, a), (_, b)) in pairs)
        {
            Assert.IsNotNull(a.grad, name);
            Assert.IsNotNull(b.grad, $"{name} gets no gradient through the checkpointed blocks");
            float size = a.grad.abs().max().item<float>();
            Assert.IsGreaterThan(0f, size, $"{name} has a gradient to compare"); // the first block's adapters too
            Assert.IsLessThan(1e-7 + 1e-5 * size, (a.grad - b.grad).abs().max().item<float>(), $"{name}: {(a.grad - b.grad).abs().max().item<float>()} of {size}");
        }
    }

    /// <summary>A replay that throws (memory running out on the second run, say) inside libtorch's backward, where a
    /// .NET exception would end the process, comes out after the backward as an exception that says what failed.</summary>
    [TestMethod]
    public void AFailingReplayIsAnExceptionAfterTheBackwardNotACrash()
    {
        manual_seed(1);
        var weight = randn(8, 8).requires_grad_(true);
        int runs = 0;
        Tensor Block(Tensor h) => ++runs == 1 ? h.matmul(weight) : throw new OutOfMemoryException("simulated");
        GradientCheckpoint.Run(Block, randn(2, 8)).sum().backward();
        Assert.AreEqual(2, runs, "the backward ran the block again");
        var e = Assert.ThrowsExactly<InvalidOperationException>(GradientCheckpoint.ThrowIfReplayFailed);
        StringAssert.Contains(e.Message, "simulated");
        Assert.IsInstanceOfType<OutOfMemoryException>(e.InnerException);
        GradientCheckpoint.ThrowIfReplayFailed(); // reported once
    }

    /// <summary>Training through the loop with checkpointing (its options' switch) ends at the weights it ends at
    /// without, dropout on; the backward leaves no tensors behind per step.</summary>
    [TestMethod]
    public void TrainingWithCheckpointingMatchesTrainingWithout()
    {
        var random = new Random(5);
        var examples = Enumerable.Range(0, 24)
            .Select(i => new Example(Enumerable.Range(0, random.Next(3, 13)).Select(_ => random.Next(3, 100)).ToArray(), i % 3, i))
            .ToList();
        (Dictionary<string, Tensor> State, long LiveAfterFirst, long LiveAfterLast) Train(bool checkpointing)
        {
            manual_seed(7);
            using var model = Model(new MsploraConfig { Dropout = 0.1 });
            var settings = new TrainingSettings { BatchSize = 4, MaxEpochs = 1, LearningRate = 1e-2, GradientCheckpointing = checkpointing };
            new TrainingLoop(model, settings, TaskKind.Classification, padId: 1, _ => { }).Run(examples.Take(4).ToList(), null);
            long first = LiveTensors();
            new TrainingLoop(model, settings with { MaxEpochs = 3 }, TaskKind.Classification, padId: 1, _ => { }).Run(examples, null);
            long last = LiveTensors();
            Assert.AreEqual(checkpointing, model.Network.Encoder.GradientCheckpointing, "the setting reached the encoder");
            return (model.TrainableState(), first, last);
        }
        static long LiveTensors()
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
            return Tensor.TotalCount;
        }
        var plain = Train(checkpointing: false);
        var checkpointed = Train(checkpointing: true);
        foreach (var key in plain.State.Keys)
            Assert.IsLessThan(1e-5, (plain.State[key] - checkpointed.State[key]).abs().max().item<float>(), key);
        // Not equal: an earlier test's garbage may be finalized in between, but nothing may pile up.
        Assert.IsLessThanOrEqualTo(checkpointed.LiveAfterFirst, checkpointed.LiveAfterLast, "live tensors after 1 step and after 18 more");
    }
}
