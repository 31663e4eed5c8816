using TorchSharp;
using static TorchSharp.torch;

namespace MlNetPeft.Backbone;

/// <summary>Self-attention, then dense → dropout → LayerNorm(x + queries), on flat [batch·seq, hidden] rows.</summary>
internal sealed class RobertaAttention : nn.Module
{
    private readonly RobertaSelfAttention @self;
    private readonly RobertaSelfOutput output;

    public RobertaAttention(RobertaConfig c) : base(nameof(RobertaAttention))
    {
        @self = new RobertaSelfAttention(c);
        output = new RobertaSelfOutput(c.HiddenSize, c);
        RegisterComponents();
    }

    public RobertaSelfAttention SelfAttention => @self;
    public RobertaSelfOutput Output => output;

    /// <summary>The block's output for <paramref name="queries"/> [batch·q, hidden] attending over
    /// <paramref name="tokens"/> [batch·seq, hidden] (the same tensor for full self-attention).</summary>
    public Tensor Attend(Tensor queries, Tensor tokens, long batch, Tensor? keep) =>
        output.call(@self.Attend(queries, tokens, batch, keep), queries);
}
