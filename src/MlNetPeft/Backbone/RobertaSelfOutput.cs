using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetPeft.Backbone;

/// <summary>HF "...output" block: dense → dropout → LayerNorm(x + residual). Serves both the attention
/// output (hidden→hidden) and the feed-forward output (intermediate→hidden).</summary>
internal sealed class RobertaSelfOutput : nn.Module<Tensor, Tensor, Tensor>
{
    private readonly Linear dense;
    private readonly LayerNorm LayerNorm;
    private readonly FastDropout dropout;

    public RobertaSelfOutput(int inFeatures, RobertaConfig c) : base(nameof(RobertaSelfOutput))
    {
        dense = nn.Linear(inFeatures, c.HiddenSize);
        LayerNorm = nn.LayerNorm(c.HiddenSize, c.LayerNormEps);
        dropout = new FastDropout(c.HiddenDropoutProb);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor residual) =>
        LayerNorm.call(dropout.call(dense.call(x)).add(residual));
}
