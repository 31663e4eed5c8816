using TorchSharp;
using static TorchSharp.torch;

namespace MlNetPeft.Backbone;

/// <summary>One post-LayerNorm transformer block: attention, then dense → GELU → dense feed-forward.</summary>
internal sealed class RobertaLayer : nn.Module<Tensor, Tensor?, Tensor>
{
    private readonly RobertaAttention attention;
    private readonly RobertaIntermediate intermediate;
    private readonly RobertaSelfOutput output;

    public RobertaLayer(RobertaConfig c) : base(nameof(RobertaLayer))
    {
        attention = new RobertaAttention(c);
        intermediate = new RobertaIntermediate(c);
        output = new RobertaSelfOutput(c.IntermediateSize, c);
        RegisterComponents();
    }

    public RobertaSelfAttention SelfAttention => attention.SelfAttention;

    /// <summary>The Linear called <paramref name="target"/>: query, key, value, or "attention.output.dense",
    /// "intermediate.dense", "output.dense" (its path in the block).</summary>
    public nn.Module<Tensor, Tensor> Projection(string target) => target switch
    {
        "attention.output.dense" => attention.Output.Dense,
        "intermediate.dense" => intermediate.Dense,
        "output.dense" => output.Dense,
        _ => SelfAttention.Projection(target),
    };

    /// <summary>Swaps the Linear called <paramref name="target"/> for an adapter wrapping it.</summary>
    public void ReplaceProjection(string target, nn.Module<Tensor, Tensor> replacement)
    {
        switch (target)
        {
            case "attention.output.dense": attention.Output.ReplaceDense(replacement); break;
            case "intermediate.dense": intermediate.ReplaceDense(replacement); break;
            case "output.dense": output.ReplaceDense(replacement); break;
            default: SelfAttention.ReplaceProjection(target, replacement); break;
        }
    }

    /// <summary>[batch, seq, hidden] → same; inside, rows are flat [batch·seq, hidden] (a Linear of a 3-D input adds two
    /// views, two more autograd nodes, around its GEMM).</summary>
    public override Tensor forward(Tensor hidden, Tensor? keep)
    {
        var (batch, seq) = (hidden.shape[0], hidden.shape[1]);
        var flat = hidden.view(batch * seq, -1);
        return FeedForward(attention.Attend(flat, flat, batch, keep)).view(batch, seq, -1);
    }

    /// <summary>The block's output at position 0 only, [batch, 1, hidden]: what the last block owes the head. Keys
    /// and values still cover every token.</summary>
    public Tensor FirstToken(Tensor hidden, Tensor? keep)
    {
        long batch = hidden.shape[0];
        // Contiguous: MKL's small strided GEMM path rounds differently depending on where the weight lives.
        var first = hidden.select(1, 0).contiguous();
        return FeedForward(attention.Attend(first, hidden.view(batch * hidden.shape[1], -1), batch, keep)).unsqueeze(1);
    }

    private Tensor FeedForward(Tensor attended) => output.call(intermediate.call(attended), attended);
}

internal sealed class RobertaIntermediate : nn.Module<Tensor, Tensor>
{
    private nn.Module<Tensor, Tensor> dense;
    private readonly Func<Tensor, Tensor> _activation;

    public RobertaIntermediate(RobertaConfig c) : base(nameof(RobertaIntermediate))
    {
        dense = RandomInit.Linear(c.HiddenSize, c.IntermediateSize);
        _activation = HiddenActivation.Of(c.HiddenAct);
        RegisterComponents();
    }

    /// <summary>The dense projection (frozen Linear, or an adapter wrapping it).</summary>
    public nn.Module<Tensor, Tensor> Dense => dense;

    /// <summary>Swaps the dense projection for an adapter wrapping it, keeping its state-dict name.</summary>
    public void ReplaceDense(nn.Module<Tensor, Tensor> replacement)
    {
        register_module(nameof(dense), null!); // unregisters the Linear; the name stays the one HF's keys use
        register_module(nameof(dense), dense = replacement);
    }

    public override Tensor forward(Tensor x) => _activation(dense.call(x));
}
