using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetPeft.Backbone;

/// <summary>HF "...output" block: dense → dropout → LayerNorm(x + residual). Serves both the attention
/// output (hidden→hidden) and the feed-forward output (intermediate→hidden).</summary>
internal sealed class RobertaSelfOutput : nn.Module<Tensor, Tensor, Tensor>
{
    private nn.Module<Tensor, Tensor> dense;
    private readonly LayerNorm LayerNorm;
    private readonly FastDropout dropout;

    public RobertaSelfOutput(int inFeatures, RobertaConfig c) : base(nameof(RobertaSelfOutput))
    {
        dense = RandomInit.Linear(inFeatures, c.HiddenSize);
        LayerNorm = nn.LayerNorm(c.HiddenSize, c.LayerNormEps);
        dropout = new FastDropout(c.HiddenDropoutProb);
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

    public override Tensor forward(Tensor x, Tensor residual) =>
        LayerNorm.call(dropout.call(dense.call(x)).add(residual));
}
