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
}
