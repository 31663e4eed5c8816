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
/// after a backward gathers them into one flat buffer with one cat. <see cref="View"/> reads the gradients the step
/// used (unscaled, clipped) from there; a parameter's own <c>grad</c> is not kept in step with them (re-seating each as
/// a view costs three TorchSharp calls, host time on an op-bound GPU step). A group may train a bf16 compute copy
/// against fp32 masters (full fine-tuning in mixed precision).
/// </summary>
internal sealed class FlatAdamW : IDisposable
{
    /// <summary>Parameters with their learning rate and weight decay. With <paramref name="Masters"/> (fp32 tensors of
    /// the same shapes, one per parameter) the parameters are a low-precision compute copy: AdamW updates the masters and
    /// each step casts them back into the parameters (mixed precision without autocast; PyTorch's AMP keeps fp32 weights
    /// and casts them on every forward instead).</summary>
    public sealed record ParameterGroup(IReadOnlyList<Parameter> Parameters, double LearningRate, double WeightDecay,
        IReadOnlyList<Tensor>? Masters = null);

    private sealed class Group : IDisposable
    {
        public Group(ParameterGroup group)
        {
            Parameters = group.Parameters.ToArray();
            BaseLearningRate = group.LearningRate;
            WeightDecay = group.WeightDecay;
            if (group.Masters is null)
                Weights = Flatten(Parameters);
            else
            {
                Compute = Flatten(Parameters);
                Weights = Flatten(group.Masters);
            }
            ExpAvg = zeros_like(Weights).DetachFromDisposeScope();
            ExpAvgSq = zeros_like(Weights).DetachFromDisposeScope();
        }

        public Parameter[] Parameters { get; }
        /// <summary>The fp32 weights AdamW updates: the parameters' own storage, or their masters'.</summary>
        public Tensor Weights { get; }
        /// <summary>The parameters' storage when they are a low-precision copy of <see cref="Weights"/>, else null.</summary>
        public Tensor? Compute { get; }
        public Tensor ExpAvg { get; }
        public Tensor ExpAvgSq { get; }
        public double BaseLearningRate { get; }
        public double WeightDecay { get; }

        /// <summary>This step's gradients, flat and fp32 (null until gathered after a backward).</summary>
        public Tensor? Grads { get; private set; }

        /// <summary>Copies the tensors into one new flat buffer and re-seats each as a view of it.</summary>
        private static Tensor Flatten(IReadOnlyList<Tensor> tensors)
        {
            Tensor flat;
            using (NewDisposeScope())
                flat = cat(tensors.Select(t => t.detach().flatten()).ToArray()).DetachFromDisposeScope();
            long offset = 0;
            foreach (var t in tensors)
            {
                long n = t.numel();
                using var view = flat.narrow(0, offset, n).view(t.shape);
                t.set_(view);
                offset += n;
                if (t is Parameter p) p.grad = null;
            }
            return flat;
        }

        /// <summary>One flat copy of every parameter's gradient (zeros where a parameter got none). With
        /// <paramref name="reseat"/> (accumulation), fp32 parameters then have their gradients re-seated as views of it,
        /// so the next backward adds to it (three TorchSharp calls per parameter, so only then); a compute copy's
        /// gradients are cast into it and dropped, and a further backward's are added at the next gather.</summary>
        public void Gather(bool reseat)
        {
            if (Compute is null)
            {
                if (Grads is not null) return;
                using (NewDisposeScope()) Grads = FlatGrads().DetachFromDisposeScope();
                if (!reseat) return;
                long offset = 0;
                foreach (var p in Parameters)
                {
                    long n = p.numel();
                    p.grad = Grads.narrow(0, offset, n).view(p.shape);
                    offset += n;
                }
                return;
            }
            if (Grads is not null && Parameters.All(p => p.grad is null)) return;
            using (NewDisposeScope())
            {
                var grads = FlatGrads().to(ScalarType.Float32);
                if (Grads is null) Grads = grads.DetachFromDisposeScope();
                else Grads.add_(grads);
            }
            foreach (var p in Parameters) p.grad = null;
        }

        private Tensor FlatGrads() => cat(Parameters.Select(p => (p.grad ?? zeros_like(p)).flatten()).ToArray());

        /// <summary>After a step: the compute copy takes the updated weights (one cast).</summary>
        public void RefreshCompute() => Compute?.copy_(Weights);

        public void DropGrads()
        {
            foreach (var p in Parameters) p.grad = null;
            Grads?.Dispose();
            Grads = null;
        }

        public void Dispose()
        {
            foreach (var t in new[] { Weights, Compute, ExpAvg, ExpAvgSq, Grads }) t?.Dispose();
        }
    }

    private readonly List<Group> _groups = [];
    private readonly List<Tensor> _viewIndexes = [];
    private readonly double _beta1, _beta2, _eps;
    private int _step;
    private double _scheduleFactor = 1;

    /// <param name="groups">Parameters on one device with their learning rate and weight decay; a group may be empty.
    /// Parameters are fp32, or any floating type with fp32 masters. Each parameter (and master) keeps its identity
    /// (modules still hold it); only its storage moves.</param>
    /// <param name="beta1">Decay of the gradient's running mean (PyTorch's default).</param>
    /// <param name="beta2">Decay of the squared gradient's running mean (PyTorch's default).</param>
    /// <param name="eps">Added to the denominator (PyTorch's default).</param>
    public FlatAdamW(IEnumerable<ParameterGroup> groups, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8)
    {
        (_beta1, _beta2, _eps) = (beta1, beta2, eps);
        using var _ = no_grad();
        foreach (var group in groups)
        {
            if (group.Parameters.Count == 0) continue;
            Validate(group);
            _groups.Add(new Group(group));
        }
    }

    private static void Validate(ParameterGroup group)
    {
        var first = group.Parameters[0];
        var all = group.Parameters.Concat<Tensor>(group.Masters ?? []);
        if (all.Any(t => t.device_type != first.device_type || t.device_index != first.device_index))
            throw new InvalidOperationException("FlatAdamW needs all of a group's tensors on one device");
        if (group.Masters is null)
        {
            if (group.Parameters.Any(p => p.dtype != ScalarType.Float32))
                throw new InvalidOperationException("FlatAdamW needs fp32 parameters, or fp32 masters for them");
            return;
        }
        if (group.Masters.Count != group.Parameters.Count
            || group.Masters.Zip(group.Parameters).Any(m => m.First.dtype != ScalarType.Float32 || !m.First.shape.SequenceEqual(m.Second.shape))
            || group.Parameters.Any(p => !p.is_floating_point()))
            throw new InvalidOperationException("FlatAdamW needs one fp32 master of the same shape per floating-point parameter");
    }

    /// <summary>
    /// Where <paramref name="parameters"/> (all of one group) lie in the flat buffers: a view that reads their weights,
    /// and this step's gathered gradients (unscaled, clipped), as one flat tensor each in the order given, in one op (a
    /// narrow where they lie in that order side by side, else an index_select), where reading them parameter by
    /// parameter costs a few TorchSharp calls each. Valid while this optimizer is.
    /// </summary>
    public FlatView View(IReadOnlyList<Parameter> parameters)
    {
        for (int g = 0; g < _groups.Count; g++)
        {
            var offsets = new Dictionary<Parameter, long>(ReferenceEqualityComparer.Instance);
            long offset = 0;
            foreach (var p in _groups[g].Parameters) { offsets[p] = offset; offset += p.numel(); }
            if (!parameters.All(offsets.ContainsKey)) continue;
            var starts = parameters.Select(p => offsets[p]).ToArray();
            long start = starts.Length == 0 ? 0 : starts[0], length = parameters.Sum(p => p.numel());
            bool contiguous = true;
            for (int i = 1; i < starts.Length; i++) contiguous &= starts[i] == starts[i - 1] + parameters[i - 1].numel();
            Tensor? index = null;
            if (!contiguous)
            {
                var positions = parameters.SelectMany((p, i) => Enumerable.Range(0, (int)p.numel()).Select(j => starts[i] + j)).ToArray();
                index = tensor(positions, device: _groups[g].Weights.device).DetachFromDisposeScope();
                _viewIndexes.Add(index);
            }
            return new FlatView(this, g, start, length, index);
        }
        throw new ArgumentException("FlatAdamW.View needs parameters that all train in one of its groups", nameof(parameters));
    }

    /// <summary>Some parameters' entries in one group's flat buffers (see <see cref="View"/>).</summary>
    public sealed class FlatView
    {
        private readonly FlatAdamW _owner;
        private readonly int _group;
        private readonly long _start, _length;
        private readonly Tensor? _index;

        internal FlatView(FlatAdamW owner, int group, long start, long length, Tensor? index) =>
            (_owner, _group, _start, _length, _index) = (owner, group, start, length, index);

        /// <summary>Their weights as AdamW updates them (the parameters' storage, or their fp32 masters); a view where
        /// possible: do not write to it.</summary>
        public Tensor Weights() => Read(_owner._groups[_group].Weights);

        /// <summary>Their gradients as this step's clipping and AdamW use them: from the step's first clip or step
        /// until <see cref="ZeroGrad"/>.</summary>
        public Tensor Gradients() => Read(_owner._groups[_group].Grads
            ?? throw new InvalidOperationException("no gradients gathered: read them after the step's clip or step, before ZeroGrad"));

        private Tensor Read(Tensor flat) => _index is null ? flat.narrow(0, _start, _length) : flat.index_select(0, _index);
    }

    /// <summary>Learning rate of the first group (the body: adapters, or the backbone when fine-tuning fully).</summary>
    public double LearningRate => _groups.Count > 0 ? _groups[0].BaseLearningRate * _scheduleFactor : 0;

    /// <summary>Sets every group's rate to its base rate times <paramref name="factor"/> (the schedule).</summary>
    public void ScaleLearningRates(double factor) => _scheduleFactor = factor;

    /// <summary>Optimizer steps taken (AdamW's bias correction counts them).</summary>
    public int Steps => _step;

    /// <summary>The running averages of every group, by name: the tensors themselves, not copies.</summary>
    public IEnumerable<(string Name, Tensor Tensor)> State() =>
        _groups.SelectMany((g, i) => new[] { ($"{i}.exp_avg", g.ExpAvg), ($"{i}.exp_avg_sq", g.ExpAvgSq) });

    /// <summary>Goes on from a saved <see cref="State"/> after <paramref name="steps"/> steps; <paramref name="source"/>
    /// names the state in errors.</summary>
    public void LoadState(IReadOnlyDictionary<string, Tensor> state, int steps, string source)
    {
        using var _ = no_grad();
        foreach (var (name, tensor) in State())
        {
            if (!state.TryGetValue(name, out var saved) || !saved.shape.SequenceEqual(tensor.shape))
                throw new InvalidDataException($"{source}: optimizer state '{name}' is missing or has another shape");
            tensor.copy_(saved);
        }
        _step = steps;
    }

    public void Step()
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        _step++;
        double correction1 = 1 - Math.Pow(_beta1, _step), correction2 = 1 - Math.Pow(_beta2, _step);
        foreach (var g in _groups)
        {
            g.Gather(reseat: false);
            double lr = g.BaseLearningRate * _scheduleFactor;
            g.Weights.mul_(1 - lr * g.WeightDecay);
            g.ExpAvg.mul_(_beta1).add_(g.Grads!, alpha: 1 - _beta1);
            g.ExpAvgSq.mul_(_beta2).addcmul_(g.Grads!, g.Grads!, value: 1 - _beta2);
            var denominator = g.ExpAvgSq.sqrt().div_(Math.Sqrt(correction2)).add_(_eps);
            g.Weights.addcdiv_(g.ExpAvg, denominator, value: -lr / correction1);
            g.RefreshCompute();
        }
    }

    /// <summary>Takes the gradients of the last backward into the flat buffers, so that the next backward of the same
    /// step adds to them there: a bf16 compute copy's gradients are then summed in fp32, not in bf16.</summary>
    public void AccumulateGradients()
    {
        using var _ = no_grad();
        foreach (var g in _groups) g.Gather(reseat: true); // the next backward adds to the flat buffer
    }

    /// <summary>Drops the gradients: the next backward gives each parameter a fresh one.</summary>
    public void ZeroGrad()
    {
        foreach (var g in _groups) g.DropGrads();
    }

    /// <summary>Divides this step's gradients by the loss scale (<see cref="LossScaler"/>) and says whether they are all
    /// finite: one host sync, as in PyTorch's GradScaler, which must know before the step whether to skip it.</summary>
    public bool Unscale(double lossScale)
    {
        if (_groups.Count == 0) return true;
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        foreach (var g in _groups)
        {
            g.Gather(reseat: false);
            g.Grads!.mul_(1 / lossScale);
        }
        return stack(_groups.Select(g => g.Grads!.isfinite().all()).ToArray()).all().item<bool>();
    }

    /// <summary>Scales all gradients so their global L2 norm is at most <paramref name="maxNorm"/>, without a host sync.</summary>
    public void ClipGradNorm(double maxNorm)
    {
        if (_groups.Count == 0) return;
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        foreach (var g in _groups) g.Gather(reseat: false);
        var total = stack(_groups.Select(g => g.Grads!.norm()).ToArray()).norm();
        var factor = total.add(1e-6).reciprocal().mul(maxNorm).clamp_max(1.0);
        foreach (var g in _groups) g.Grads!.mul_(factor);
    }

    public void Dispose()
    {
        foreach (var g in _groups) g.Dispose();
        foreach (var i in _viewIndexes) i.Dispose();
        _groups.Clear();
        _viewIndexes.Clear();
    }
}
