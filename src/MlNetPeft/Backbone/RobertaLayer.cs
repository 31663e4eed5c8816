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

    public override Tensor forward(Tensor hidden, Tensor? keep)
    {
        var attended = attention.call(hidden, keep);
        return FeedForward(attended);
    }

    /// <summary>The block's output at position 0 only, [batch, 1, hidden]: what the last block owes the head.</summary>
    public Tensor FirstToken(Tensor hidden, Tensor? keep)
    {
        var attended = attention.FirstToken(hidden, keep);
        return FeedForward(attended);
    }

    private Tensor FeedForward(Tensor attended) => output.call(intermediate.call(attended), attended);
}

internal sealed class RobertaIntermediate : nn.Module<Tensor, Tensor>
{
    private readonly TorchSharp.Modules.Linear dense;

    public RobertaIntermediate(RobertaConfig c) : base(nameof(RobertaIntermediate))
    {
        dense = nn.Linear(c.HiddenSize, c.IntermediateSize);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => nn.functional.gelu(dense.call(x));
}
