using static TorchSharp.torch;

namespace MlNetPeft.Adapters;

/// <summary>
/// Gathers the LoRA factors of many adapted projections of one shape (every layer's query and value) into one
/// down- and one up-projection stack per training forward, and hands each projection its slice. On a GPU a training
/// step is bound by the number of launched kernels and autograd nodes: per layer, casting and (for MSPLoRA)
/// concatenating and scaling the pairs costs five ops forward and more backward, plus one gradient add per extra
/// use of a shared pair (MSPLoRA's global pair is used 24 times). Stacked, the whole model costs a handful of ops
/// each way. Pairs used by several projections are gathered by a 0/1 selection matmul (its columns carry each
/// pair's alpha/r), whose backward sums the shared pair's gradients in one deterministic GEMM.
/// </summary>
internal sealed class StackedLowRank : IDisposable
{
    private readonly AdaptedLinear[] _linears;
    private readonly LowRankUpdate[] _unique;
    private readonly int _rank;
    private readonly float[]? _downSelection; // [linears·rank, Σ unique ranks], row-major; null when the stack is the unique pairs in order
    private readonly float[]? _upSelection;   // [Σ unique ranks, linears·rank], scaled
    private readonly float _alpha;
    private (Tensor Down, Tensor Up)? _selection;

    private StackedLowRank(AdaptedLinear[] linears)
    {
        _linears = linears;
        _rank = linears[0].Pairs!.Sum(p => p.Rank);
        var uses = linears.SelectMany(l => l.Pairs!).ToArray();
        _unique = uses.Distinct().ToArray();
        var scalings = uses.Select(p => (float)p.Scaling).Distinct().ToArray();
        if (_unique.Length == uses.Length && scalings.Length == 1)
        {
            _alpha = scalings[0]; // each pair used once, in order: the concatenation is the stack, scaled by addmm
            return;
        }
        _alpha = 1;
        var offsets = new Dictionary<LowRankUpdate, int>();
        int width = 0;
        foreach (var p in _unique) { offsets[p] = width; width += p.Rank; }
        int rows = uses.Sum(p => p.Rank);
        _downSelection = new float[rows * width];
        _upSelection = new float[width * rows];
        int row = 0;
        foreach (var p in uses)
            for (int r = 0; r < p.Rank; r++, row++)
            {
                _downSelection[row * width + offsets[p] + r] = 1;
                _upSelection[(offsets[p] + r) * rows + row] = (float)p.Scaling;
            }
    }

    /// <summary>One stack per (in, out, total rank) among the projections whose updates are all LoRA pairs.</summary>
    public static StackedLowRank[] Plan(IEnumerable<AdaptedLinear> linears) =>
        linears.Where(l => l.Pairs is not null)
            .GroupBy(l => (l.BaseLayer.in_features, l.BaseLayer.out_features, l.Pairs!.Sum(p => p.Rank)))
            .Where(g => g.Count() > 1)
            .Select(g => new StackedLowRank(g.ToArray()))
            .ToArray();

    /// <summary>Builds the stacks in <paramref name="dtype"/> (in the caller's dispose scope) and gives every
    /// projection its slice until <see cref="Release"/>.</summary>
    public void Prepare(ScalarType dtype)
    {
        var device = _unique[0].A.device;
        Tensor down = cat(_unique.Select(p => (Tensor)p.A).ToArray(), 0);
        Tensor up = cat(_unique.Select(p => (Tensor)p.B).ToArray(), 1);
        if (_downSelection is not null)
        {
            var (selectDown, selectUp) = Selection(device);
            (down, up) = (selectDown.mm(down), up.mm(selectUp));
        }
        var downs = down.to(dtype).view(_linears.Length, _rank, -1).unbind(0);
        var ups = up.to(dtype).view(up.shape[0], _linears.Length, _rank).unbind(1);
        for (int i = 0; i < _linears.Length; i++) _linears[i].UseStacked(downs[i], ups[i], _alpha);
    }

    public void Release()
    {
        foreach (var linear in _linears) linear.UseStacked(null, null, 1);
    }

    private (Tensor Down, Tensor Up) Selection(Device device)
    {
        if (_selection is { } s && s.Down.device_type == device.type && s.Down.device_index == device.index) return s;
        Dispose();
        long rows = _linears.Length * _rank, width = _unique.Sum(p => p.Rank);
        using var scope = NewDisposeScope();
        _selection = (tensor(_downSelection!, [rows, width]).to(device).DetachFromDisposeScope(),
            tensor(_upSelection!, [width, rows]).to(device).DetachFromDisposeScope());
        return _selection.Value;
    }

    public void Dispose()
    {
        _selection?.Down.Dispose();
        _selection?.Up.Dispose();
        _selection = null;
    }
}
