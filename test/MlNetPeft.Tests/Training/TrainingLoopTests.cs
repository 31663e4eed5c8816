using MlNetPeft.Adapters.Lora;
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
}
