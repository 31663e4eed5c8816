using MlNetPeft.Adapters.Lora;
using MlNetPeft.Backbone;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetPeft.Adapters;

/// <summary>
/// A frozen Linear (kept as <c>base_layer</c>, as PEFT names it) plus a sum of updates. The updates are
/// owned by the method's <see cref="AdapterSet"/>, not registered here, because MSPLoRA shares one update
/// between many layers and each parameter must appear once in the optimizer and the saved state.
/// </summary>
internal sealed class AdaptedLinear : nn.Module<Tensor, Tensor>, IAdaptedProjection
{
    private readonly Linear base_layer;
    private readonly IReadOnlyList<IWeightDelta> _updates;
    private readonly LowRankUpdate[]? _pairs;
    private readonly DeviceConstant? _fusedScaling; // each fused column's alpha/r, [1, total rank]
    private readonly PairDropout? _pairDropout;     // fused pairs: a dropout mask each
    private DoraMagnitude? _magnitude;
    private bool _merged;

    /// <param name="baseLayer">The frozen projection.</param>
    /// <param name="updates">Its updates (owned, and possibly shared, by the method's AdapterSet).</param>
    /// <param name="fuse">When every update is a LoRA pair, run them as one: the A's stacked into one down-projection
    /// and the scaled B's into one up-projection (two matmuls instead of two per pair, e.g. MSPLoRA's rank 8+4+2 = 14).
    /// Each pair still draws its own dropout mask (<see cref="Adapters.PairDropout"/>).</param>
    public AdaptedLinear(Linear baseLayer, IReadOnlyList<IWeightDelta> updates, bool fuse = false) : base(nameof(AdaptedLinear))
    {
        base_layer = baseLayer;
        _updates = updates;
        if ((fuse || updates.Count == 1) && updates.All(u => u is LowRankUpdate))
            _pairs = updates.Cast<LowRankUpdate>().ToArray();
        if (_pairs is { Length: > 1 })
        {
            _fusedScaling = new DeviceConstant(_pairs.SelectMany(u => Enumerable.Repeat((float)u.Scaling, u.Rank)).ToArray(), [1, _pairs.Sum(u => u.Rank)]);
            _pairDropout = new PairDropout(_pairs.Select(u => u.Rank).ToArray());
        }
        register_module(nameof(base_layer), base_layer);
    }

    public Linear BaseLayer => base_layer;
    public IReadOnlyList<IWeightDelta> Updates => _updates;
    public bool IsMerged => _merged;
    public bool AddsUpdate => !_merged;

    /// <summary>The updates when all are LoRA pairs run as one (fused, or a single pair); null otherwise.</summary>
    public IReadOnlyList<LowRankUpdate>? Pairs => _pairs;

    /// <summary>How fused pairs draw a dropout mask each; null for a single pair or separate updates.</summary>
    public PairDropout? PairDropout => _pairDropout;

    /// <summary>Whether the adapters' input dropout is on now (training, with a positive probability).</summary>
    public bool DropsInput => _updates[0].DropsInput;

    /// <summary>DoRA's magnitude when the weight is decomposed (owned by the AdapterSet), else null.</summary>
    public DoraMagnitude? Magnitude => _magnitude;

    /// <summary>Decomposes the adapted weight as DoRA does (one LoRA pair only).</summary>
    public void UseMagnitude(DoraMagnitude magnitude)
    {
        if (_pairs is not { Length: 1 }) throw new InvalidOperationException("DoRA decomposes a projection with one LoRA pair");
        _magnitude = magnitude;
    }

    public override Tensor forward(Tensor x) => AddUpdate(base_layer.call(x), x);

    public Tensor AddUpdate(Tensor y, Tensor x)
    {
        if (_merged) return y;
        if (_magnitude is not null) return AddDora(y, x);
        if (_pairs is not null) return AddLowRank(y, x);
        foreach (var update in _updates) y = y.add(update.call(x));
        return y;
    }

    /// <summary>
    /// y + dropout(x)·Aᵀ·Bᵀ·(alpha/r) for the pair, or for the pairs stacked into one (cast and scaled once: kernels
    /// do not grow with the number of pairs). Training forwards of packed layers run <see cref="StackedLowRank"/> instead.
    /// </summary>
    private Tensor AddLowRank(Tensor y, Tensor x)
    {
        var dt = x.dtype;
        if (_pairs!.Length == 1)
        {
            var pair = _pairs[0];
            return LowRank.AddTo(y, nn.functional.linear(pair.Dropout(x), pair.A.to(dt)), pair.B.to(dt).t(), (float)pair.Scaling);
        }
        var down = cat(_pairs.Select(u => (Tensor)u.A).ToArray(), 0).to(dt);
        var up = cat(_pairs.Select(u => (Tensor)u.B).ToArray(), 1).mul(_fusedScaling!.On(x.device)).to(dt);
        var h = DropsInput
            ? nn.functional.linear(_pairDropout!.DroppedCopies(x, _pairs[0].Dropout), _pairDropout.BlockDiagonal(down))
            : nn.functional.linear(x, down);
        return LowRank.AddTo(y, h, up.t());
    }

    /// <summary>
    /// DoRA, as PEFT computes it: y + (s − 1) ⊙ x'·Wᵀ + s ⊙ B·A·x'·(alpha/r), with s = m / ‖W + ΔW‖ per output and x' the
    /// adapter-dropped input (so x'·Wᵀ is y without its bias when nothing is dropped; otherwise one more GEMM).
    /// </summary>
    private Tensor AddDora(Tensor y, Tensor x)
    {
        var pair = _pairs![0];
        var weight = base_layer.weight!;
        Tensor adapted;
        using (no_grad()) adapted = weight.to(ScalarType.Float32).add(pair.DeltaWeight());
        var scale = _magnitude!.Scale(adapted).to(x.dtype);
        var dropped = pair.Dropout(x);
        var frozen = pair.DropsInput ? nn.functional.linear(dropped, weight)
            : base_layer.bias is { } bias ? y.sub(bias) : y;
        var update = nn.functional.linear(nn.functional.linear(dropped, pair.A.to(x.dtype)).mul(pair.Scaling), pair.B.to(x.dtype));
        return y.add(scale.sub(1).mul(frozen)).add(scale.mul(update));
    }

    /// <summary><paramref name="baseWeight"/> with every update folded in: W + ΔW, and for DoRA each row rescaled to its
    /// magnitude, m ⊙ (W + ΔW) / ‖W + ΔW‖ (fp32 when <paramref name="baseWeight"/> is).</summary>
    public Tensor MergedWeight(Tensor baseWeight)
    {
        var weight = baseWeight;
        foreach (var update in _updates) weight = weight.add(update.DeltaWeight().to(baseWeight.dtype).to(baseWeight.device));
        if (_magnitude is null) return weight;
        var scale = _magnitude.Scale(weight).detach();
        return weight.mul(scale.to(baseWeight.dtype).to(baseWeight.device).unsqueeze(1));
    }

    /// <summary>Folds every update into the base weight (inference only: the updates stop training).</summary>
    public void Merge()
    {
        if (_merged) return;
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var weight = base_layer.weight!;
        // DoRA's row norms in fp32; additive updates in the weight's own precision, as they were always added.
        weight.copy_(MergedWeight(_magnitude is null ? weight : weight.to(ScalarType.Float32)));
        _merged = true;
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _fusedScaling?.Dispose();
            _pairDropout?.Dispose();
        }
        base.Dispose(disposing);
    }
}
