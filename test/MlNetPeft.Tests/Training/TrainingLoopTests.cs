using MlNetPeft.Training;
using TorchSharp;
using TorchSharp.Modules;
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
    public void ClippingMatchesTorchClipGradNorm()
    {
        manual_seed(5);
        var ours = new[] { new Parameter(randn(4, 3)), new Parameter(randn(7)) };
        var theirs = ours.Select(p => new Parameter(p.detach().clone())).ToArray();
        foreach (var set in new[] { ours, theirs })
        {
            var loss = set[0].pow(2).sum().mul(3).add(set[1].exp().sum());
            loss.backward();
        }
        TrainingStepper.ClipByGlobalNorm(ours, 0.5);
        nn.utils.clip_grad_norm_(theirs, 0.5);
        for (int i = 0; i < ours.Length; i++)
            Assert.IsTrue(ours[i].grad!.allclose(theirs[i].grad!, rtol: 1e-6, atol: 1e-7), $"parameter {i}");
        var norm = ours.Select(p => p.grad!.pow(2).sum().item<float>()).Sum();
        Assert.AreEqual(0.25, norm, 1e-4, "clipped global norm² is 0.5²");
    }
}
