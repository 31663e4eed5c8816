using TorchSharp;
using static TorchSharp.torch;

namespace MlNetPeft.Backbone;

internal sealed class RobertaAttention : nn.Module<Tensor, Tensor?, Tensor>
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

    public override Tensor forward(Tensor hidden, Tensor? keep) => output.call(@self.call(hidden, keep), hidden);

    /// <summary>The output at position 0 only, [batch, 1, hidden]; keys and values still cover every token.</summary>
    public Tensor FirstToken(Tensor hidden, Tensor? keep)
    {
        // Contiguous: MKL's small strided GEMM path rounds differently depending on where the weight lives.
        var first = hidden.narrow(1, 0, 1).contiguous();
        return output.call(@self.Attend(first, hidden, keep), first);
    }
}
