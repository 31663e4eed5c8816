using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetPeft.Training;

/// <summary>
/// AdamW (as PyTorch's and TorchSharp's, amsgrad off) over parameters re-seated as views of one flat buffer per
/// group. A step, a clip and a zero_grad are then a dozen kernels in all, where TorchSharp's AdamW runs a dozen per
/// parameter: MSPLoRA on roberta-base has 68 trainable tensors, and on a GPU each kernel is a launch (PyTorch's
/// foreach/fused AdamW exist for the same reason). Gradients are zeroed by dropping them (set to none, PyTorch's
/// default), so the autograd engine hands each parameter its new gradient without an add; the first clip or step
/// after a backward gathers them into one flat buffer and re-seats each gradient as a view of it.
/// </summary>
internal sealed class FlatAdamW : IDisposable
{
    private sealed class Group(IReadOnlyList<Parameter> parameters, Tensor weights, double learningRate, double weightDecay) : IDisposable
    {
        public IReadOnlyList<Parameter> Parameters { get; } = parameters;
        public Tensor Weights { get; } = weights;
        public Tensor ExpAvg { get; } = zeros_like(weights).DetachFromDisposeScope();
        public Tensor ExpAvgSq { get; } = zeros_like(weights).DetachFromDisposeScope();
        public double BaseLearningRate { get; } = learningRate;
        public double WeightDecay { get; } = weightDecay;

        /// <summary>This step's gradients, flat (null until gathered after a backward).</summary>
        public Tensor? Grads { get; set; }

        /// <summary>One copy of every parameter's gradient (zeros where a parameter got none), each parameter's
        /// gradient then a view of it.</summary>
        public void Gather()
        {
            if (Grads is not null) return;
            using (var scope = NewDisposeScope())
                Grads = cat(Parameters.Select(p => (p.grad ?? zeros_like(p)).flatten()).ToArray()).DetachFromDisposeScope();
            long offset = 0;
            foreach (var p in Parameters)
            {
                long n = p.numel();
                p.grad = Grads.narrow(0, offset, n).view(p.shape);
                offset += n;
            }
        }

        public void DropGrads()
        {
            foreach (var p in Parameters) p.grad = null;
            Grads?.Dispose();
            Grads = null;
        }

        public void Dispose()
        {
            foreach (var t in new[] { Weights, ExpAvg, ExpAvgSq, Grads }) t?.Dispose();
        }
    }

    private readonly List<Group> _groups = [];
    private readonly double _beta1, _beta2, _eps;
    private int _step;
    private double _scheduleFactor = 1;

    /// <param name="groups">Parameters (fp32, one device) with their learning rate and weight decay; a group may
    /// be empty. Each parameter keeps its identity (modules still hold it); only its storage moves.</param>
    /// <param name="beta1">Decay of the gradient's running mean (PyTorch's default).</param>
    /// <param name="beta2">Decay of the squared gradient's running mean (PyTorch's default).</param>
    /// <param name="eps">Added to the denominator (PyTorch's default).</param>
    public FlatAdamW(IEnumerable<(IReadOnlyList<Parameter> Parameters, double LearningRate, double WeightDecay)> groups,
        double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8)
    {
        (_beta1, _beta2, _eps) = (beta1, beta2, eps);
        using var _ = no_grad();
        foreach (var (parameters, lr, wd) in groups)
        {
            if (parameters.Count == 0) continue;
            var first = parameters[0];
            if (parameters.Any(p => p.dtype != ScalarType.Float32 || p.device_type != first.device_type || p.device_index != first.device_index))
                throw new InvalidOperationException("FlatAdamW needs fp32 parameters on one device");
            Tensor weights;
            using (NewDisposeScope())
                weights = cat(parameters.Select(p => p.detach().flatten()).ToArray()).DetachFromDisposeScope();
            long offset = 0;
            foreach (var p in parameters)
            {
                long n = p.numel();
                using var weightView = weights.narrow(0, offset, n).view(p.shape);
                p.set_(weightView);
                p.grad = null;
                offset += n;
            }
            _groups.Add(new Group(parameters.ToArray(), weights, lr, wd));
        }
    }

    /// <summary>Learning rate of the first group (the body: adapters, or the backbone when fine-tuning fully).</summary>
    public double LearningRate => _groups.Count > 0 ? _groups[0].BaseLearningRate * _scheduleFactor : 0;

    /// <summary>Sets every group's rate to its base rate times <paramref name="factor"/> (the schedule).</summary>
    public void ScaleLearningRates(double factor) => _scheduleFactor = factor;

    public void Step()
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        _step++;
        double correction1 = 1 - Math.Pow(_beta1, _step), correction2 = 1 - Math.Pow(_beta2, _step);
        foreach (var g in _groups)
        {
            g.Gather();
            double lr = g.BaseLearningRate * _scheduleFactor;
            g.Weights.mul_(1 - lr * g.WeightDecay);
            g.ExpAvg.mul_(_beta1).add_(g.Grads!, alpha: 1 - _beta1);
            g.ExpAvgSq.mul_(_beta2).addcmul_(g.Grads!, g.Grads!, value: 1 - _beta2);
            var denominator = g.ExpAvgSq.sqrt().div_(Math.Sqrt(correction2)).add_(_eps);
            g.Weights.addcdiv_(g.ExpAvg, denominator, value: -lr / correction1);
        }
    }

    /// <summary>Drops the gradients: the next backward gives each parameter a fresh one.</summary>
    public void ZeroGrad()
    {
        foreach (var g in _groups) g.DropGrads();
    }

    /// <summary>Scales all gradients so their global L2 norm is at most <paramref name="maxNorm"/>, without a host sync.</summary>
    public void ClipGradNorm(double maxNorm)
    {
        if (_groups.Count == 0) return;
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        foreach (var g in _groups) g.Gather();
        var total = stack(_groups.Select(g => g.Grads!.norm()).ToArray()).norm();
        var factor = total.add(1e-6).reciprocal().mul(maxNorm).clamp_max(1.0);
        foreach (var g in _groups) g.Grads!.mul_(factor);
    }

    public void Dispose()
    {
        foreach (var g in _groups) g.Dispose();
        _groups.Clear();
    }
}
