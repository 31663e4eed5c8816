using MlNetPeft.Adapters.LoraSquared;
using MlNetPeft.Backbone;
using static TorchSharp.torch;

namespace MlNetPeft.Adapters;

/// <summary>
/// For one training forward, gathers every layer's adapter factors into one down- and one up-projection stack and
/// hands each attention layer its slice as a single update of its packed query|key|value output (<see cref="IPackedUpdate"/>).
/// On a GPU a training step is bound by the number of launched kernels and autograd nodes: per projection, casting
/// the factors (and for MSPLoRA concatenating and scaling its pairs, for AdaLoRA and LoRA² forming U·diag(λ) and V),
/// the adapter GEMMs and the head split cost a dozen ops each way, plus a gradient add per further use of a shared
/// pair (MSPLoRA's global pair is used 24 times). Stacked, the whole model costs a dozen ops per forward and four per
/// layer. LoRA pairs are gathered by 0/1 selection matmuls (the up side's rows carry each pair's alpha/r), whose
/// backward sums a shared pair's gradients in one deterministic GEMM; SVD-form updates by batched matmuls.
/// </summary>
internal sealed class StackedLowRank : IDisposable
{
    private static readonly string[] Slots = ["query", "key", "value"];
    private readonly RobertaSelfAttention[] _attentions;
    private readonly AdaptedLinear[] _linears;   // layer-major, then query, key, value order
    private readonly IFactorSource _factors;
    private readonly int _targets, _rank;
    private readonly DeviceConstant _placement;  // [targets, 3]: 1 where a target's rows sit in the packed output
    private Tensor[]? _kept;                      // the layers' factors while kept for prediction (Keep)

    private StackedLowRank(RobertaSelfAttention[] attentions, AdaptedLinear[] linears, int[] slots, IFactorSource factors, int rank)
    {
        _attentions = attentions;
        _linears = linears;
        _factors = factors;
        _targets = slots.Length;
        _rank = rank;
        var placement = new float[_targets * 3];
        for (int t = 0; t < _targets; t++) placement[t * 3 + slots[t]] = 1;
        _placement = new DeviceConstant(placement, [1, _targets, 1, 3, 1]);
    }

    /// <summary>
    /// A stack over all adapted projections, or null when they do not stack: they must be the same targets in every
    /// layer, of one shape, and either all LoRA pairs (fused or single) of the same ranks or all SVD-form updates of
    /// one layout.
    /// </summary>
    public static StackedLowRank? TryPlan(RobertaModel encoder, IEnumerable<(int Layer, string Target, AdaptedLinear Linear)> wrapped)
    {
        var all = wrapped.OrderBy(w => w.Layer).ThenBy(w => Array.IndexOf(Slots, w.Target)).ToArray();
        if (all.Length == 0 || all.Any(w => w.Linear.Magnitude is not null)) return null; // DoRA rescales each output
        var linears = all.Select(w => w.Linear).ToArray();
        var first = linears[0].BaseLayer;
        if (linears.Any(l => l.BaseLayer.in_features != first.in_features || l.BaseLayer.out_features != first.out_features))
            return null;
        var slots = all.Where(w => w.Layer == 0).Select(w => Array.IndexOf(Slots, w.Target)).ToArray();
        var expected = Enumerable.Range(0, encoder.Layers.Count).SelectMany(l => slots.Select(s => (l, s)));
        if (!all.Select(w => (w.Layer, Array.IndexOf(Slots, w.Target))).SequenceEqual(expected)) return null;

        IFactorSource? factors = null;
        int rank = 0;
        if (linears.All(l => l.Pairs is not null && l.Pairs.Select(p => p.Rank).SequenceEqual(linears[0].Pairs!.Select(p => p.Rank))))
            (factors, rank) = (new SharedPairs(linears.SelectMany(l => l.Pairs!).ToArray()), linears[0].Pairs!.Sum(p => p.Rank));
        else if (linears.All(l => l.Updates is [SvdUpdate]))
        {
            var updates = linears.Select(l => (SvdUpdate)l.Updates[0]).ToArray();
            if (updates.All(u => u.StacksWith(updates[0]))) (factors, rank) = (new SvdFactors(updates), updates[0].Rank);
        }
        return factors is null ? null
            : new StackedLowRank(encoder.Layers.Select(l => l.SelfAttention).ToArray(), linears, slots, factors, rank);
    }

    /// <summary>Whether every layer projects with its packed matrix (otherwise the projections' own updates run).</summary>
    public bool CanApply => _attentions.All(a => a.IsPacked);

    /// <summary>Builds the stacks in <paramref name="dtype"/> (in the caller's dispose scope) and gives every attention
    /// layer its update until <see cref="Release"/>.</summary>
    public void Prepare(ScalarType dtype) => Give(dtype);

    /// <summary>For prediction with unmerged adapters: builds the stacks once, with no graph, and gives every attention
    /// layer its update until disposed, so that a forward adds all of a layer's adapter updates in two ops (a few per
    /// projection otherwise: most of a short sentence's extra time on the CPU).</summary>
    public void Keep(ScalarType dtype)
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        _kept = Give(dtype).Select(t => t.DetachFromDisposeScope()).ToArray();
    }

    /// <summary>Builds the stacks and gives each layer its slices, which it returns.</summary>
    private IEnumerable<Tensor> Give(ScalarType dtype)
    {
        int layers = _attentions.Length;
        var (down, upT) = _factors.Gather(); // [linears·rank, in], [linears·rank, out], fp32
        down = down.to(dtype);
        // Fused pairs under dropout: each pair reads its own dropped copy of the input (PairDropout).
        var pairDropout = _linears[0].DropsInput ? _linears[0].PairDropout : null;
        if (pairDropout is not null) down = pairDropout.BlockDiagonal(down.view(_linears.Length, _rank, -1));
        var downs = down.view(layers, _targets * _rank, -1).unbind(0);
        // Each target's rows placed at its third of the packed output: [layers, targets·rank, 3·out], zeros elsewhere.
        var upTs = upT.to(dtype).view(layers, _targets, _rank, 1, -1).mul(_placement.On(upT.device, dtype))
            .view(layers, _targets * _rank, -1).unbind(0);
        for (int l = 0; l < layers; l++)
            _attentions[l].UsePackedUpdate(new LayerUpdate(downs[l], upTs[l], _linears.AsSpan(l * _targets, _targets).ToArray(), _rank, pairDropout));
        return downs.Concat(upTs);
    }

    public void Release()
    {
        foreach (var attention in _attentions) attention.UsePackedUpdate(null);
    }

    public void Dispose()
    {
        if (_kept is not null)
        {
            Release();
            foreach (var t in _kept) t.Dispose();
        }
        _placement.Dispose();
        _factors.Dispose();
    }

    /// <summary>The factors of all stacked projections, built from their parameters for one forward.</summary>
    private interface IFactorSource : IDisposable
    {
        /// <summary>Down-projections [projections·rank, in] and scaled transposed up-projections [projections·rank, out].</summary>
        (Tensor Down, Tensor UpT) Gather();
    }

    /// <summary>LoRA pairs, some shared between projections (MSPLoRA), each projection's pairs in order.</summary>
    private sealed class SharedPairs : IFactorSource
    {
        private readonly LowRankUpdate[] _unique;
        private readonly DeviceConstant _downSelection; // [uses' ranks, unique ranks]: 1 where a use reads a pair's row
        private readonly DeviceConstant _upSelection;   // same, scaled by alpha/r

        public SharedPairs(LowRankUpdate[] uses)
        {
            _unique = uses.Distinct().ToArray();
            var offsets = new Dictionary<LowRankUpdate, int>();
            int width = 0;
            foreach (var p in _unique) { offsets[p] = width; width += p.Rank; }
            int rows = uses.Sum(p => p.Rank);
            var down = new float[rows * width];
            var up = new float[down.Length];
            int row = 0;
            foreach (var p in uses)
                for (int r = 0; r < p.Rank; r++, row++)
                {
                    down[row * width + offsets[p] + r] = 1;
                    up[row * width + offsets[p] + r] = (float)p.Scaling;
                }
            (_downSelection, _upSelection) = (new DeviceConstant(down, [rows, width]), new DeviceConstant(up, [rows, width]));
        }

        public (Tensor Down, Tensor UpT) Gather()
        {
            var device = _unique[0].A.device;
            return (_downSelection.On(device).mm(cat(_unique.Select(p => (Tensor)p.A).ToArray(), 0)),
                _upSelection.On(device).mm(cat(_unique.Select(p => (Tensor)p.B).ToArray(), 1).t()));
        }

        public void Dispose()
        {
            _downSelection.Dispose();
            _upSelection.Dispose();
        }
    }

    /// <summary>SVD-form updates (AdaLoRA, LoRA²), one per projection.</summary>
    private sealed class SvdFactors(SvdUpdate[] updates) : IFactorSource
    {
        public (Tensor Down, Tensor UpT) Gather() => SvdUpdate.Stack(updates);

        public void Dispose() { }
    }

    /// <summary>One layer's slice: its targets' down-projections stacked [targets·rank, in] (block-diagonal
    /// [targets·rank, pairs·in] when <paramref name="pairDropout"/> is given) and the placed up-projection.</summary>
    private sealed class LayerUpdate(Tensor down, Tensor upT, AdaptedLinear[] targets, int rank, PairDropout? pairDropout) : IPackedUpdate
    {
        public Tensor UpT => upT;

        public Tensor Down(Tensor tokens)
        {
            if (!targets.Any(t => t.DropsInput))
                return nn.functional.linear(tokens, down);
            // Each target draws its own dropout mask, as separate adapters would (and each of its pairs one of its own).
            return cat(targets.Select((t, i) => nn.functional.linear(Dropped(tokens, t.Updates[0]), down.narrow(0, i * rank, rank))).ToArray(), -1);
        }

        private Tensor Dropped(Tensor tokens, IWeightDelta update) =>
            pairDropout is null ? update.Dropout(tokens) : pairDropout.DroppedCopies(tokens, update.Dropout);
    }
}
