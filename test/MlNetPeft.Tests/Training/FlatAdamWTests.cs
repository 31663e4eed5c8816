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

    /// <summary>A loss whose gradient differs per parameter and step.</summary>
    private static void Backward(Parameter[] p, int step) =>
        p[0].pow(2).sum().mul(3 + step).add(p[1].exp().sum()).add(p[2].sin().sum().mul(0.5)).backward();

    [TestMethod]
    public void StepsMatchTorchSharpAdamWWithTwoGroupsAndSchedule()
    {
        var ours = Parameters(5);
        var theirs = ours.Select(p => new Parameter(p.detach().clone())).ToArray();
        using var flat = new FlatAdamW([new(ours[..2], 0.1, 0.01), new(ours[2..], 0.03, 0.0)]);
        using var reference = optim.AdamW(new[]
        {
            new AdamW.ParamGroup(theirs[..2], lr: 0.1, weight_decay: 0.01),
            new AdamW.ParamGroup(theirs[2..], lr: 0.03, weight_decay: 0.0),
        }, lr: 0.1);
        var schedule = LearningRateSchedule.LinearWithWarmup(6, 0.34);
        var scheduler = optim.lr_scheduler.LambdaLR(reference, schedule);
        flat.ScaleLearningRates(schedule(0));
        for (int step = 0; step < 5; step++)
        {
            Backward(ours, step);
            Backward(theirs, step);
            Assert.IsTrue(ours[1].grad!.allclose(theirs[1].grad!, rtol: 1e-6, atol: 1e-7), "gradients reach the flat buffer");
            flat.Step();
            reference.step();
            flat.ZeroGrad();
            reference.zero_grad();
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
        for (int i = 0; i < ours.Length; i++)
        {
            Assert.IsTrue(ours[i].grad!.allclose(theirs[i].grad!, rtol: 1e-6, atol: 1e-7), $"accumulated gradient {i}");
            Assert.IsTrue(ours[i].allclose(theirs[i], rtol: 1e-6, atol: 1e-7), $"parameter {i}");
        }
        Assert.AreEqual(0f, unused.grad!.abs().max().item<float>());
        Assert.IsTrue(unused.allclose(unusedBefore.mul(1 - 0.1 * 0.01), rtol: 1e-6, atol: 1e-7), "weight decay only");
    }

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
        for (int i = 0; i < ours.Length; i++)
            Assert.IsTrue(ours[i].grad!.allclose(theirs[i].grad!, rtol: 1e-6, atol: 1e-7), $"parameter {i}");
        var norm = ours.Select(p => p.grad!.pow(2).sum().item<float>()).Sum();
        Assert.AreEqual(0.25, norm, 1e-4, "clipped global norm² is 0.5²");
    }

    /// <summary>Without exposed gradients (the training step's setting when no hook reads them) the weights take the
    /// same steps bit for bit, through clipping, accumulation and an unreached parameter; only the parameters' own
    /// <c>grad</c> stays autograd's, unclipped.</summary>
    [TestMethod]
    public void StepsAreTheSameWithoutExposedGradients()
    {
        var exposed = Parameters(12).Append(new Parameter(randn(3))).ToArray();
        var hidden = exposed.Select(p => new Parameter(p.detach().clone())).ToArray();
        using var withViews = new FlatAdamW([new(exposed[..2], 0.1, 0.01), new(exposed[2..], 0.05, 0.01)]);
        using var without = new FlatAdamW([new(hidden[..2], 0.1, 0.01), new(hidden[2..], 0.05, 0.01)], exposeGradients: false);
        for (int step = 0; step < 4; step++)
        {
            foreach (var (p, optimizer) in new[] { (exposed, withViews), (hidden, without) })
            {
                Backward(p, step);
                if (step % 2 == 1)
                {
                    optimizer.AccumulateGradients();
                    Backward(p, step + 10);
                }
                optimizer.ClipGradNorm(0.5);
            }
            var raw = hidden[0].grad!.detach().clone();
            withViews.Step();
            without.Step();
            if (step % 2 == 0) // accumulating re-seats the gradients either way: the next backward adds to the flat buffer
            {
                Assert.IsLessThan(raw.pow(2).sum().item<float>(), exposed[0].grad!.pow(2).sum().item<float>(), $"the exposed gradient is clipped, step {step}");
                Assert.IsTrue(hidden[0].grad!.equal(raw).all().item<bool>(), "the hidden one is left as it was");
            }
            withViews.ZeroGrad();
            without.ZeroGrad();
            for (int i = 0; i < exposed.Length; i++)
                Assert.IsTrue(exposed[i].equal(hidden[i]).all().item<bool>(), $"parameter {i} after step {step}");
        }
    }

    /// <summary>A view of some parameters reads, in the order asked, the weights after the step and the gradients the
    /// step used (clipped): what an optimizer exposing its gradients leaves in each parameter, whether the parameters
    /// lie side by side in the flat buffer (a narrow) or not (an index_select).</summary>
    [TestMethod]
    public void ViewsReadWeightsAndClippedGradientsInTheOrderAsked()
    {
        var exposed = Parameters(13);
        var hidden = exposed.Select(p => new Parameter(p.detach().clone())).ToArray();
        var other = new Parameter(randn(3));
        using var withViews = new FlatAdamW([new(exposed, 0.1, 0.01)]);
        using var without = new FlatAdamW([new(hidden, 0.1, 0.01), new([other], 0.1, 0.01)], exposeGradients: false);
        var sideBySide = without.View(hidden[1..]);
        var scattered = without.View([hidden[2], hidden[0]]);
        Assert.ThrowsExactly<ArgumentException>(() => without.View([hidden[0], other]), "parameters of two groups");
        Assert.ThrowsExactly<ArgumentException>(() => without.View([new Parameter(randn(2))]), "a parameter it does not train");

        Backward(exposed, 0);
        Backward(hidden, 0);
        withViews.ClipGradNorm(0.5);
        without.ClipGradNorm(0.5);
        withViews.Step();
        without.Step();
        static Tensor Flat(params Tensor[] tensors) => cat(tensors.Select(t => t.detach().flatten()).ToArray());
        foreach (var (view, order) in new[] { (sideBySide, new[] { 1, 2 }), (scattered, new[] { 2, 0 }) })
        {
            Assert.IsTrue(view.Weights().equal(Flat(order.Select(i => (Tensor)exposed[i]).ToArray())).all().item<bool>(), $"weights {string.Join(",", order)}");
            Assert.IsTrue(view.Gradients().equal(Flat(order.Select(i => exposed[i].grad!).ToArray())).all().item<bool>(), $"gradients {string.Join(",", order)}");
        }
        Assert.IsFalse(hidden[1].grad!.equal(exposed[1].grad!).all().item<bool>(), "the parameter's own gradient is autograd's, unclipped");
        without.ZeroGrad();
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
            flat.Step();
            reference.step();
            flat.ZeroGrad();
            reference.zero_grad();
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
            flat.Step();
            reference.step();
            flat.ZeroGrad();
            reference.zero_grad();
        }
        for (int i = 0; i < ours.Length; i++)
            Assert.IsTrue(masters[i].allclose(theirs[i], rtol: 1e-6, atol: 1e-7), $"master {i}: {(masters[i] - theirs[i]).abs().max().item<float>()}");
    }
}
