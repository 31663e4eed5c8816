using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetPeft.Backbone;

/// <summary>Multi-head self-attention; query, key and value are replaceable so adapters can wrap them.</summary>
internal sealed class RobertaSelfAttention : nn.Module
{
    private nn.Module<Tensor, Tensor> query;
    private nn.Module<Tensor, Tensor> key;
    private nn.Module<Tensor, Tensor> value;
    private readonly int _heads;
    private readonly int _headDim;
    private readonly double _dropout;
    private PackedProjections? _packed;
    private IPackedUpdate? _update;

    public RobertaSelfAttention(RobertaConfig c) : base(nameof(RobertaSelfAttention))
    {
        query = RandomInit.Linear(c.HiddenSize, c.HiddenSize);
        key = RandomInit.Linear(c.HiddenSize, c.HiddenSize);
        value = RandomInit.Linear(c.HiddenSize, c.HiddenSize);
        _heads = c.NumAttentionHeads;
        _headDim = c.HiddenSize / c.NumAttentionHeads;
        _dropout = c.AttentionProbsDropoutProb;
        RegisterComponents();
    }

    /// <summary>The projection called <paramref name="name"/> (query, key or value).</summary>
    public nn.Module<Tensor, Tensor> Projection(string name) => name switch
    {
        "query" => query,
        "key" => key,
        "value" => value,
        _ => throw new ArgumentException($"'{name}' is not an attention projection (query, key, value)", nameof(name)),
    };

    /// <summary>Swaps a projection for another module (an adapter wrapping it), keeping its state-dict name.</summary>
    public void ReplaceProjection(string name, nn.Module<Tensor, Tensor> replacement)
    {
        _ = Projection(name);
        register_module(name, null!);
        register_module(name, replacement);
        switch (name)
        {
            case "query": query = replacement; break;
            case "key": key = replacement; break;
            default: value = replacement; break;
        }
    }

    /// <summary>Attention of <paramref name="queries"/> [batch·q, hidden] over every position of
    /// <paramref name="tokens"/> [batch·seq, hidden] (keys and values), giving [batch·q, hidden]. Flat rows: a Linear
    /// of a 3-D input adds two views (two more autograd nodes) around its GEMM. <paramref name="keep"/>:
    /// [batch, 1, 1, seq] bool, true where a key may be attended; null when nothing is padded.</summary>
    public Tensor Attend(Tensor queries, Tensor tokens, long batch, Tensor? keep)
    {
        var (q, k, v) = ProjectHeads(queries, tokens, batch);
        var context = training && _dropout > 0 && q.device_type == DeviceType.CPU
            ? AttendWithFastDropout(q, k, v, keep)
            : nn.functional.scaled_dot_product_attention(q, k, v, keep, training ? _dropout : 0.0);
        return context.transpose(1, 2).reshape(queries.shape[0], _heads * _headDim);
    }

    /// <summary>Sets (or with null clears) the update that replaces the adapted projections' own updates while the
    /// projections are packed; its owner clears it before the tensors it holds are freed.</summary>
    public void UsePackedUpdate(IPackedUpdate? update) => _update = update;

    /// <summary>Whether a packed update is set (see <see cref="UsePackedUpdate"/>).</summary>
    public bool HasPackedUpdate => _update is not null;

    /// <summary>
    /// Query, key and value as heads [batch, heads, seq, head dim]: one GEMM for the frozen part of all three (two in
    /// the last layer, whose query is for &lt;s&gt; alone) once <see cref="PackProjections"/> has run, then the
    /// adapters' updates: all at once from a packed update, else each projection's own.
    /// </summary>
    private (Tensor Q, Tensor K, Tensor V) ProjectHeads(Tensor queries, Tensor tokens, long batch)
    {
        if (_packed is null || !_packed.IsCurrent(Linears()))
            return (Heads(query.call(queries), batch), Heads(key.call(tokens), batch), Heads(value.call(tokens), batch));
        var update = _update;
        bool ownUpdates = update is null && new[] { query, key, value }.Any(p => p is IAdaptedProjection { AddsUpdate: true });
        return ownUpdates ? PackedWithOwnUpdates(_packed, queries, tokens, batch) : Packed(_packed, queries, tokens, batch, update);
    }

    /// <summary>The packed GEMM plus, when given, the layer's packed update; heads split in three ops.</summary>
    private (Tensor Q, Tensor K, Tensor V) Packed(PackedProjections packed, Tensor queries, Tensor tokens, long batch, IPackedUpdate? update)
    {
        long h = _heads * _headDim;
        var lowRank = update?.Down(tokens);
        if (ReferenceEquals(queries, tokens))
        {
            var qkv = nn.functional.linear(tokens, packed.Weight, packed.Bias);
            if (update is not null) qkv = LowRank.AddTo(qkv, lowRank!, update.UpT);
            var heads = SplitHeads(qkv, batch);
            return (heads[0], heads[1], heads[2]);
        }
        var q = nn.functional.linear(queries, packed.Weight.narrow(0, 0, h), packed.Bias.narrow(0, 0, h));
        var kv = nn.functional.linear(tokens, packed.Weight.narrow(0, h, 2 * h), packed.Bias.narrow(0, h, 2 * h));
        if (update is not null)
        {
            // The queries are the leading tokens: their rank-space activations are the tokens' leading rows.
            var leading = lowRank!.view(batch, -1, lowRank.shape[^1]).narrow(1, 0, queries.shape[0] / batch);
            q = LowRank.AddTo(q, leading.reshape(queries.shape[0], -1), update.UpT.narrow(1, 0, h));
            kv = LowRank.AddTo(kv, lowRank, update.UpT.narrow(1, h, 2 * h));
        }
        var kvHeads = SplitHeads(kv, batch);
        return (Heads(q, batch), kvHeads[0], kvHeads[1]);
    }

    /// <summary>The packed GEMM, then each adapted projection adds its own update to its slice (forwards that do not
    /// stack: prediction without merging, methods whose updates do not stack).</summary>
    private (Tensor Q, Tensor K, Tensor V) PackedWithOwnUpdates(PackedProjections packed, Tensor queries, Tensor tokens, long batch)
    {
        long h = _heads * _headDim;
        if (ReferenceEquals(queries, tokens))
        {
            var qkv = nn.functional.linear(tokens, packed.Weight, packed.Bias).split(h, -1);
            return (Heads(WithUpdate(query, qkv[0], tokens), batch), Heads(WithUpdate(key, qkv[1], tokens), batch),
                Heads(WithUpdate(value, qkv[2], tokens), batch));
        }
        var kv = nn.functional.linear(tokens, packed.Weight.narrow(0, h, 2 * h), packed.Bias.narrow(0, h, 2 * h)).split(h, -1);
        return (Heads(query.call(queries), batch), Heads(WithUpdate(key, kv[0], tokens), batch), Heads(WithUpdate(value, kv[1], tokens), batch));
    }

    /// <summary>[batch·seq, hidden] → [batch, heads, seq, head dim].</summary>
    private Tensor Heads(Tensor x, long batch) => x.view(batch, -1, _heads, _headDim).transpose(1, 2);

    /// <summary>The heads of each projection in a packed [batch·seq, n·hidden] output, in three ops rather than a
    /// split and a view and a transpose each.</summary>
    private Tensor[] SplitHeads(Tensor packed, long batch) =>
        packed.view(batch, -1, packed.shape[1] / (_heads * _headDim), _heads, _headDim).permute(2, 0, 3, 1, 4).unbind(0);

    private static Tensor WithUpdate(nn.Module<Tensor, Tensor> projection, Tensor frozenOutput, Tensor input) =>
        projection is IAdaptedProjection adapted ? adapted.AddUpdate(frozenOutput, input) : frozenOutput;

    private Linear?[] Linears() => [BaseLinear(query), BaseLinear(key), BaseLinear(value)];

    private static Linear? BaseLinear(nn.Module<Tensor, Tensor> projection) =>
        projection as Linear ?? (projection as IAdaptedProjection)?.BaseLayer;

    /// <summary>Whether the next forward projects with the packed matrix (see <see cref="PackProjections"/>).</summary>
    public bool IsPacked => _packed?.IsCurrent(Linears()) == true;

    /// <summary>
    /// Re-seats the frozen query, key and value weights and biases as row blocks of one matrix and one vector, so the
    /// layer projects with one GEMM forward and one backward instead of three and three (plus two adds): on a GPU a
    /// training step is bound by the number of launches. In-place changes to the three weights (loading, merging)
    /// land in the packed matrix; if a weight is replaced (moved, cast) the layer falls back to three GEMMs until
    /// this runs again. Does nothing while the weights train (their gradients need separate tensors), are not loaded
    /// yet (no elements: a shared backbone's), or are packed already, unless given a packed
    /// <paramref name="weight"/> or <paramref name="bias"/> to use instead of concatenating its own (another model's,
    /// of the same values: <see cref="SharedBackbone"/>).
    /// </summary>
    public void PackProjections(Tensor? weight = null, Tensor? bias = null)
    {
        if (weight is null && bias is null && IsPacked) return;
        _packed?.Dispose();
        _packed = null;
        var linears = Linears();
        if (linears.Any(l => l?.weight is null || l.bias is null || l.weight.requires_grad || l.bias.requires_grad || l.weight.numel() == 0))
            return;
        _packed = new PackedProjections(linears!, weight, bias);
    }

    /// <summary>The packed matrix and vector while the layer projects with them (see <see cref="PackProjections"/>).</summary>
    public Tensor? PackedWeight => IsPacked ? _packed!.Weight : null;

    /// <summary>The packed bias, as <see cref="PackedWeight"/>.</summary>
    public Tensor? PackedBias => IsPacked ? _packed!.Bias : null;

    /// <summary>The packed frozen projections and the parameters that are views of them.</summary>
    private sealed class PackedProjections : IDisposable
    {
        private readonly Parameter[] _views;

        public PackedProjections(Linear[] linears, Tensor? weight, Tensor? bias)
        {
            using var _ = no_grad();
            Weight = Concatenated(linears.Select(l => (Tensor)l.weight!).ToArray(), weight);
            Bias = Concatenated(linears.Select(l => (Tensor)l.bias!).ToArray(), bias);
            long offset = 0;
            foreach (var l in linears)
            {
                long rows = l.weight!.shape[0];
                using (var w = Weight.narrow(0, offset, rows)) l.weight.set_(w);
                using (var b = Bias.narrow(0, offset, rows)) l.bias!.set_(b);
                offset += rows;
            }
            _views = linears.SelectMany(l => new[] { l.weight!, l.bias! }).ToArray();
        }

        public Tensor Weight { get; }
        public Tensor Bias { get; }

        /// <summary>The row blocks as one tensor: <paramref name="given"/> itself (a new handle) where it has their shape.</summary>
        private static Tensor Concatenated(Tensor[] blocks, Tensor? given)
        {
            long[] shape = [blocks.Sum(b => b.shape[0]), .. blocks[0].shape[1..]];
            return given is not null && given.shape.SequenceEqual(shape) && given.dtype == blocks[0].dtype
                && given.device_type == blocks[0].device_type && given.device_index == blocks[0].device_index
                ? given.detach().DetachFromDisposeScope()
                : cat(blocks, 0).DetachFromDisposeScope();
        }

        public bool IsCurrent(Linear?[] linears) =>
            linears.SelectMany(l => new[] { l?.weight, l?.bias }).SequenceEqual(_views, ReferenceEqualityComparer.Instance);

        public void Dispose()
        {
            Weight.Dispose();
            Bias.Dispose();
        }
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) _packed?.Dispose();
        base.Dispose(disposing);
    }

    /// <summary>What SDPA runs on the CPU when it must drop attention probabilities (its math path), with the mask
    /// drawn by <see cref="FastDropout"/> rather than libtorch's one-thread generator.</summary>
    private Tensor AttendWithFastDropout(Tensor q, Tensor k, Tensor v, Tensor? keep)
    {
        var scores = q.matmul(k.transpose(-1, -2)).mul_(1 / Math.Sqrt(_headDim));
        if (keep is not null) scores = scores.masked_fill(keep.logical_not(), double.NegativeInfinity);
        return FastDropout.Apply(scores.softmax(-1), _dropout, true).matmul(v);
    }
}
