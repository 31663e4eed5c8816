using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetPeft.Backbone;

/// <summary>Multi-head self-attention; query, key and value are replaceable so adapters can wrap them.</summary>
internal sealed class RobertaSelfAttention : nn.Module<Tensor, Tensor?, Tensor>
{
    private nn.Module<Tensor, Tensor> query;
    private nn.Module<Tensor, Tensor> key;
    private nn.Module<Tensor, Tensor> value;
    private readonly int _heads;
    private readonly int _headDim;
    private readonly double _dropout;

    public RobertaSelfAttention(RobertaConfig c) : base(nameof(RobertaSelfAttention))
    {
        query = nn.Linear(c.HiddenSize, c.HiddenSize);
        key = nn.Linear(c.HiddenSize, c.HiddenSize);
        value = nn.Linear(c.HiddenSize, c.HiddenSize);
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

    /// <param name="hidden">[batch, seq, hidden]</param>
    /// <param name="keep">[batch, 1, 1, seq] bool, true where a key may be attended; null when nothing is padded.</param>
    public override Tensor forward(Tensor hidden, Tensor? keep) => Attend(hidden, hidden, keep);

    /// <summary>Attention of <paramref name="queries"/> [batch, q, hidden] over every position of
    /// <paramref name="tokens"/> [batch, seq, hidden] (keys and values).</summary>
    public Tensor Attend(Tensor queries, Tensor tokens, Tensor? keep)
    {
        long b = tokens.shape[0];
        Tensor Heads(Tensor x) => x.view(b, x.shape[1], _heads, _headDim).transpose(1, 2);
        var q = Heads(query.call(queries));
        var k = Heads(key.call(tokens));
        var v = Heads(value.call(tokens));
        var context = training && _dropout > 0 && q.device_type == DeviceType.CPU
            ? AttendWithFastDropout(q, k, v, keep)
            : nn.functional.scaled_dot_product_attention(q, k, v, keep, training ? _dropout : 0.0);
        return context.transpose(1, 2).reshape(b, queries.shape[1], _heads * _headDim);
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
