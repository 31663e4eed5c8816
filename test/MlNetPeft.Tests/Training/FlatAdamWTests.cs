using MlNetPeft.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetPeft.Tests.Training;

/// <summary>The flat-buffer AdamW against TorchSharp's own AdamW and clip_grad_norm_.</summary>
[TestClass]
public sealed class FlatAdamWTests
{
    private static Parameter[] Parameters(int seed)
    {
        manual_seed(seed);
        return [new Parameter(randn(4, 3)), new Parameter(randn(7)), new Parameter(randn(2, 5))];
    }

    /// <summary>The tensors (or their gradients) flattened and laid end to end, as a view of the flat buffers reads them.</summary>
    private static Tensor Flat(IEnumerable<Tensor> tensors) => cat(tensors.Select(t => t.detach().flatten()).ToArray());

    /// <summary>One step of each optimizer, then the gradients zeroed (ours dropped).</summary>
    private static void StepBoth(FlatAdamW flat, AdamW reference)
    {
        flat.Step();
        reference.step();
        flat.ZeroGrad();
        reference.zero_grad();
    }

    /// <summary>A loss whose gradient differs per parameter and step.</summary>
    private static void Backward(Parameter[] p, int step) =>
        p[0].pow(2).sum().mul(3 + step).add(p[1].exp().sum()).add(p[2].sin().sum().mul(0.5)).backward();

    /// <summary>Copies of the same parameters stepped by FlatAdamW and by TorchSharp's AdamW, the first two parameters
    /// in one group and the third in another.</summary>
    private static (Parameter[] Ours, Parameter[] Theirs, FlatAdamW Flat, AdamW Reference) TwoGroups(
        int seed, (double Rate, double Decay) first, (double Rate, double Decay) second)
    {
        var ours = Parameters(seed);
        var theirs = ours.Select(p => new Parameter(p.detach().clone())).ToArray();
        var flat = new FlatAdamW([new(ours[..2], first.Rate, first.Decay), new(ours[2..], second.Rate, second.Decay)]);
        var reference = optim.AdamW(new[]
        {
            new AdamW.ParamGroup(theirs[..2], lr: first.Rate, weight_decay: first.Decay),
            new AdamW.ParamGroup(theirs[2..], lr: second.Rate, weight_decay: second.Decay),
        }, lr: first.Rate);
        return (ours, theirs, flat, reference);
    }

    [TestMethod]
    public void StepsMatchTorchSharpAdamWWithTwoGroupsAndSchedule()
    {
        var (ours, theirs, flat, reference) = TwoGroups(5, (0.1, 0.01), (0.03, 0.0));
        using var disposeFlat = flat;
        using var disposeReference = reference;
        var schedule = LearningRateSchedule.LinearWithWarmup(6, 0.34);
        var scheduler = optim.lr_scheduler.LambdaLR(reference, schedule);
        flat.ScaleLearningRates(schedule(0));
        for (int step = 0; step < 5; step++)
        {
            Backward(ours, step);
            Backward(theirs, step);
            Assert.IsTrue(ours[1].grad!.allclose(theirs[1].grad!, rtol: 1e-6, atol: 1e-7), "gradients reach the flat buffer");
            StepBoth(flat, reference);
            flat.ScaleLearningRates(schedule(step + 1));
            scheduler.step();
            Assert.AreEqual(reference.ParamGroups.First().LearningRate, flat.LearningRate, 1e-12);
        }
        for (int i = 0; i < ours.Length; i++)
        {
            Assert.IsTrue(ours[i].allclose(theirs[i], rtol: 1e-5, atol: 1e-6), $"parameter {i} after 5 steps");
            Assert.IsFalse(ours[i].allclose(Parameters(5)[i]), $"parameter {i} moved");
            Assert.IsNull(ours[i].grad, "zeroed by dropping (set to none)");
        }
    }

    /// <summary>Two backward passes before a step add up, as with PyTorch's optimizers; a parameter the loss does not
    /// reach steps on a zero gradient (weight decay only).</summary>
    [TestMethod]
    public void GradientsAccumulateAndUnreachedParametersStepOnZero()
    {
        var ours = Parameters(8);
        var theirs = ours.Select(p => new Parameter(p.detach().clone())).ToArray();
        var unused = new Parameter(randn(3));
        var unusedBefore = unused.detach().clone();
        using var flat = new FlatAdamW([new(ours.Append(unused).ToList(), 0.1, 0.01)]);
        using var reference = optim.AdamW(theirs, lr: 0.1, weight_decay: 0.01);
        for (int pass = 0; pass < 2; pass++)
        {
            Backward(ours, pass);
            Backward(theirs, pass);
        }
        flat.Step();
        reference.step();
        var gathered = flat.View(ours.Append(unused).ToList()).Gradients();
        Assert.IsTrue(gathered.allclose(Flat(theirs.Select(p => p.grad!).Append(zeros(3))), rtol: 1e-6, atol: 1e-7),
            "the step's gradients: both passes added up, zeros for the unreached parameter");
        for (int i = 0; i < ours.Length; i++)
            Assert.IsTrue(ours[i].allclose(theirs[i], rtol: 1e-6, atol: 1e-7), $"parameter {i}");
        Assert.IsTrue(unused.allclose(unusedBefore.mul(1 - 0.1 * 0.01), rtol: 1e-6, atol: 1e-7), "weight decay only");
    }

    /// <summary>Clipping scales the gathered gradients as clip_grad_norm_ scales the parameters' own, across groups.</summary>
    [TestMethod]
    public void ClippingMatchesTorchClipGradNorm()
    {
        var ours = Parameters(6);
        var theirs = ours.Select(p => new Parameter(p.detach().clone())).ToArray();
        using var flat = new FlatAdamW([new(ours[..1], 0.1, 0.0), new(ours[1..], 0.1, 0.0)]);
        Backward(ours, 0);
        Backward(theirs, 0);
        flat.ClipGradNorm(0.5);
        nn.utils.clip_grad_norm_(theirs, 0.5);
        var clipped = cat([flat.View(ours[..1]).Gradients(), flat.View(ours[1..]).Gradients()]);
        Assert.IsTrue(clipped.allclose(Flat(theirs.Select(p => p.grad!)), rtol: 1e-6, atol: 1e-7), "clipped as clip_grad_norm_ clips");
        Assert.AreEqual(0.25, clipped.pow(2).sum().item<float>(), 1e-4, "clipped global norm² is 0.5²");
    }

    /// <summary>Gradient accumulation (the first pass taken into the flat buffer, the second added there by autograd)
    /// and clipping, over several steps and two groups: the weights take the steps TorchSharp's AdamW and
    /// clip_grad_norm_ give them.</summary>
    [TestMethod]
    public void AccumulatedClippedStepsMatchTorchSharp()
    {
        var (ours, theirs, flat, reference) = TwoGroups(12, (0.1, 0.01), (0.05, 0.01));
        using var disposeFlat = flat;
        using var disposeReference = reference;
        for (int step = 0; step < 4; step++)
        {
            Backward(ours, step);
            Backward(theirs, step);
            if (step % 2 == 1)
            {
                flat.AccumulateGradients();
                Backward(ours, step + 10);
                Backward(theirs, step + 10);
            }
            flat.ClipGradNorm(0.5);
            nn.utils.clip_grad_norm_(theirs, 0.5);
            StepBoth(flat, reference);
            for (int i = 0; i < ours.Length; i++)
                Assert.IsTrue(ours[i].allclose(theirs[i], rtol: 1e-6, atol: 1e-7), $"parameter {i} after step {step}");
        }
    }

    /// <summary>A view of some parameters reads, in the order asked, the weights after the step and the gradients the
    /// step used (clipped), whether the parameters lie side by side in the flat buffer (a narrow) or not (an
    /// index_select).</summary>
    [TestMethod]
    public void ViewsReadWeightsAndClippedGradientsInTheOrderAsked()
    {
        var ours = Parameters(13);
        var theirs = ours.Select(p => new Parameter(p.detach().clone())).ToArray();
        var other = new Parameter(randn(3));
        using var flat = new FlatAdamW([new(ours, 0.1, 0.01), new([other], 0.1, 0.01)]);
        using var reference = optim.AdamW(theirs, lr: 0.1, weight_decay: 0.01);
        var sideBySide = flat.View(ours[1..]);
        var scattered = flat.View([ours[2], ours[0]]);
        Assert.ThrowsExactly<ArgumentException>(() => flat.View([ours[0], other]), "parameters of two groups");
        Assert.ThrowsExactly<ArgumentException>(() => flat.View([new Parameter(randn(2))]), "a parameter it does not train");

        Backward(ours, 0);
        Backward(theirs, 0);
        flat.ClipGradNorm(0.5);
        nn.utils.clip_grad_norm_(theirs, 0.5);
        flat.Step();
        reference.step();
        foreach (var (view, order) in new[] { (sideBySide, new[] { 1, 2 }), (scattered, new[] { 2, 0 }) })
        {
            Assert.IsTrue(view.Weights().equal(Flat(order.Select(i => (Tensor)ours[i]))).all().item<bool>(), $"weights {string.Join(",", order)}");
            Assert.IsTrue(view.Weights().allclose(Flat(order.Select(i => (Tensor)theirs[i])), rtol: 1e-6, atol: 1e-7), $"stepped weights {string.Join(",", order)}");
            Assert.IsTrue(view.Gradients().allclose(Flat(order.Select(i => theirs[i].grad!)), rtol: 1e-6, atol: 1e-7), $"gradients {string.Join(",", order)}");
        }
        flat.ZeroGrad();
        Assert.ThrowsExactly<InvalidOperationException>(() => sideBySide.Gradients(), "no gradients once dropped");
    }

    [TestMethod]
    public void ParametersKeepTheirIdentityAndValues()
    {
        var parameters = Parameters(7);
        var before = parameters.Select(p => p.detach().clone()).ToArray();
        using var flat = new FlatAdamW([new(parameters, 0.1, 0.0)]);
        for (int i = 0; i < parameters.Length; i++)
        {
            Assert.IsTrue(parameters[i].equal(before[i]).all().item<bool>(), $"parameter {i} keeps its values");
            Assert.IsTrue(parameters[i].is_leaf && parameters[i].requires_grad);
        }
        Assert.ThrowsExactly<InvalidOperationException>(() => new FlatAdamW([new([new Parameter(randn(2).to(ScalarType.Float64))], 0.1, 0.0)]));
    }

    /// <summary>A bf16 compute copy trained against fp32 masters: AdamW and clipping act on the masters as TorchSharp's do
    /// on fp32 parameters given the same (bf16) gradients, a backward after the clip adds to the clipped gradients, and
    /// every step casts the masters into the compute copy. The steps are below bf16's resolution at these weights, so
    /// only the masters keep them.</summary>
    [TestMethod]
    public void MastersTrainAndRefreshTheirBfloatCopy()
    {
        var theirs = Parameters(9);
        var masters = theirs.Select(p => p.detach().clone()).ToArray();
        var start = theirs.Select(p => p.detach().clone()).ToArray();
        var ours = theirs.Select(p => new Parameter(p.detach().to(ScalarType.BFloat16))).ToArray();
        using var flat = new FlatAdamW([new(ours, 1e-3, 0.01, masters)]);
        using var reference = optim.AdamW(theirs, lr: 1e-3, weight_decay: 0.01);
        for (int step = 0; step < 3; step++)
        {
            Backward(ours, step);
            for (int i = 0; i < ours.Length; i++) theirs[i].grad = ours[i].grad!.to(ScalarType.Float32);
            flat.ClipGradNorm(0.5);
            nn.utils.clip_grad_norm_(theirs, 0.5);
            Backward(ours, step + 10);
            for (int i = 0; i < ours.Length; i++) theirs[i].grad!.add_(ours[i].grad!.to(ScalarType.Float32));
            StepBoth(flat, reference);
            for (int i = 0; i < ours.Length; i++)
            {
                Assert.IsTrue(masters[i].allclose(theirs[i], rtol: 1e-6, atol: 1e-7), $"master {i}, step {step}");
                Assert.IsTrue(ours[i].equal(masters[i].to(ScalarType.BFloat16)).all().item<bool>(), $"compute copy {i} is its master cast");
            }
        }
        for (int i = 0; i < ours.Length; i++)
        {
            Assert.IsTrue(masters[i].ne(start[i]).all().item<bool>(), $"every element of master {i} moved");
            Assert.IsTrue(ours[i].eq(start[i].to(ScalarType.BFloat16)).any().item<bool>(), $"some of compute copy {i} did not");
            Assert.AreEqual(ScalarType.BFloat16, ours[i].dtype);
        }
        Assert.ThrowsExactly<InvalidOperationException>(() => new FlatAdamW([new(ours[..1], 0.1, 0.0, [randn(2)])]), "master of another shape");
    }

    [TestMethod]
    public void AccumulatedGradientsOfABfloatCopyAddUpInFloat32()
    {
        var theirs = Parameters(11);
        var masters = theirs.Select(p => p.detach().clone()).ToArray();
        var ours = theirs.Select(p => new Parameter(p.detach().to(ScalarType.BFloat16))).ToArray();
        using var flat = new FlatAdamW([new(ours, 0.1, 0.01, masters)]);
        using var reference = optim.AdamW(theirs, lr: 0.1, weight_decay: 0.01);
        for (int step = 0; step < 3; step++)
        {
            Backward(ours, step);
            var first = ours.Select(p => p.grad!.to(ScalarType.Float32)).ToArray();
            flat.AccumulateGradients(); // the bf16 gradients go into fp32 now; the next backward starts afresh
            Assert.IsTrue(ours.All(p => p.grad is null));
            Backward(ours, step + 10);
            for (int i = 0; i < ours.Length; i++) theirs[i].grad = first[i].add(ours[i].grad!.to(ScalarType.Float32));
            StepBoth(flat, reference);
        }
        for (int i = 0; i < ours.Length; i++)
            Assert.IsTrue(masters[i].allclose(theirs[i], rtol: 1e-6, atol: 1e-7), $"master {i}: {(masters[i] - theirs[i]).abs().max().item<float>()}");
    }
}
