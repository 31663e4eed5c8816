using MlNetPeft.Backbone;
using static TorchSharp.torch;

namespace MlNetPeft.Adapters;

/// <summary>
/// For one training forward, gathers every layer's LoRA factors into one down- and one up-projection stack and hands
/// each attention layer its slice as a single update of its packed query|key|value output (<see cref="IPackedUpdate"/>).
/// On a GPU a training step is bound by the number of launched kernels and autograd nodes: per projection, casting
/// and (for MSPLoRA) concatenating and scaling the pairs, the adapter GEMMs and the head split cost a dozen ops each
/// way, plus a gradient add per further use of a shared pair (MSPLoRA's global pair is used 24 times). Stacked, the
/// whole model costs a dozen ops per forward and four per layer. Pairs are gathered by 0/1 selection matmuls (the up
/// side's rows carry each pair's alpha/r), whose backward sums a shared pair's gradients in one deterministic GEMM.
/// </summary>
internal sealed class StackedLowRank : IDisposable
{
    private static readonly string[] Slots = ["query", "key", "value"];
    private readonly RobertaSelfAttention[] _attentions;
    private readonly AdaptedLinear[] _linears;   // layer-major, then query, key, value order
    private readonly LowRankUpdate[] _unique;
    private readonly int _targets, _rank;
    private readonly float[] _downSelection;     // [linears·rank, Σ unique ranks]
    private readonly float[] _upSelection;       // same shape, scaled
    private readonly float[] _placement;         // [targets, 3]: 1 where a target's rows sit in the packed output
    private (Tensor Down, Tensor Up, Tensor Placement)? _constants;

    private StackedLowRank(RobertaSelfAttention[] attentions, AdaptedLinear[] linears, int[] slots)
    {
        _attentions = attentions;
        _linears = linears;
        _targets = slots.Length;
        _rank = linears[0].Pairs!.Sum(p => p.Rank);
        var uses = linears.SelectMany(l => l.Pairs!).ToArray();
        _unique = uses.Distinct().ToArray();
        var offsets = new Dictionary<LowRankUpdate, int>();
        int width = 0;
        foreach (var p in _unique) { offsets[p] = width; width += p.Rank; }
        _downSelection = new float[uses.Sum(p => p.Rank) * width];
        _upSelection = new float[_downSelection.Length];
        int row = 0;
        foreach (var p in uses)
            for (int r = 0; r < p.Rank; r++, row++)
            {
                _downSelection[row * width + offsets[p] + r] = 1;
                _upSelection[row * width + offsets[p] + r] = (float)p.Scaling;
            }
        _placement = new float[_targets * 3];
        for (int t = 0; t < _targets; t++) _placement[t * 3 + slots[t]] = 1;
    }

    /// <summary>A stack over all adapted projections, or null when they are not all LoRA pairs (fused or single) of
    /// one shape and total rank on the same targets in every layer.</summary>
    public static StackedLowRank? TryPlan(RobertaModel encoder, IEnumerable<(int Layer, string Target, AdaptedLinear Linear)> wrapped)
    {
        var all = wrapped.OrderBy(w => w.Layer).ThenBy(w => Array.IndexOf(Slots, w.Target)).ToArray();
        if (all.Length == 0 || all.Any(w => w.Linear.Pairs is null)) return null;
        var first = all[0].Linear;
        if (all.Any(w => w.Linear.BaseLayer.in_features != first.BaseLayer.in_features
                         || w.Linear.BaseLayer.out_features != first.BaseLayer.out_features
                         || w.Linear.Pairs!.Sum(p => p.Rank) != first.Pairs!.Sum(p => p.Rank)))
            return null;
        int layers = encoder.Layers.Count;
        var slots = all.Where(w => w.Layer == 0).Select(w => Array.IndexOf(Slots, w.Target)).ToArray();
        var expected = Enumerable.Range(0, layers).SelectMany(l => slots.Select(s => (l, s)));
        if (!all.Select(w => (w.Layer, Array.IndexOf(Slots, w.Target))).SequenceEqual(expected)) return null;
        return new StackedLowRank(encoder.Layers.Select(l => l.SelfAttention).ToArray(), all.Select(w => w.Linear).ToArray(), slots);
    }

    /// <summary>Whether every layer projects with its packed matrix (otherwise the projections' own updates run).</summary>
    public bool CanApply => _attentions.All(a => a.IsPacked);

    /// <summary>Builds the stacks in <paramref name="dtype"/> (in the caller's dispose scope) and gives every attention
    /// layer its update until <see cref="Release"/>.</summary>
    public void Prepare(ScalarType dtype)
    {
        int layers = _attentions.Length;
        var (selectDown, selectUp, placement) = Constants(_unique[0].A.device, dtype);
        var down = selectDown.mm(cat(_unique.Select(p => (Tensor)p.A).ToArray(), 0));         // [linears·rank, in]
        var upT = selectUp.mm(cat(_unique.Select(p => (Tensor)p.B).ToArray(), 1).t());        // [linears·rank, out]
        var downs = down.to(dtype).view(layers, _targets * _rank, -1).unbind(0);
        // Each target's rows placed at its third of the packed output: [layers, targets·rank, 3·out], zeros elsewhere.
        var upTs = upT.to(dtype).view(layers, _targets, _rank, 1, -1).mul(placement).view(layers, _targets * _rank, -1).unbind(0);
        for (int l = 0; l < layers; l++)
            _attentions[l].UsePackedUpdate(new LayerUpdate(downs[l], upTs[l], _linears.AsSpan(l * _targets, _targets).ToArray(), _rank));
    }

    public void Release()
    {
        foreach (var attention in _attentions) attention.UsePackedUpdate(null);
    }

    private (Tensor Down, Tensor Up, Tensor Placement) Constants(Device device, ScalarType dtype)
    {
        if (_constants is { } c && c.Down.device_type == device.type && c.Down.device_index == device.index && c.Placement.dtype == dtype)
            return c;
        Dispose();
        long rows = _linears.Length * _rank, width = _downSelection.Length / rows;
        using var scope = NewDisposeScope();
        _constants = (tensor(_downSelection, [rows, width]).to(device).DetachFromDisposeScope(),
            tensor(_upSelection, [rows, width]).to(device).DetachFromDisposeScope(),
            tensor(_placement, [1, _targets, 1, 3, 1]).to(dtype).to(device).DetachFromDisposeScope());
        return _constants.Value;
    }

    public void Dispose()
    {
        _constants?.Down.Dispose();
        _constants?.Up.Dispose();
        _constants?.Placement.Dispose();
        _constants = null;
    }

    /// <summary>One layer's slice: its targets' down-projections stacked [targets·rank, in] and the placed up-projection.</summary>
    private sealed class LayerUpdate(Tensor down, Tensor upT, AdaptedLinear[] targets, int rank) : IPackedUpdate
    {
        public Tensor UpT => upT;

        public Tensor Down(Tensor tokens)
        {
            if (!targets.Any(t => t.Pairs![0].DropsInput))
                return nn.functional.linear(tokens, down);
            // Each target draws its own dropout mask, as separate adapters would.
            return cat(targets.Select((t, i) => nn.functional.linear(t.Pairs![0].Dropout(tokens), down.narrow(0, i * rank, rank))).ToArray(), -1);
        }
    }
}
