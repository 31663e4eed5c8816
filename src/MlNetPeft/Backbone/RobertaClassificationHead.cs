using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetPeft.Backbone;

/// <summary>HF RobertaClassificationHead: &lt;s&gt; state → dropout → dense → tanh → dropout → out_proj.</summary>
internal sealed class RobertaClassificationHead : nn.Module<Tensor, Tensor>
{
    private readonly Linear dense;
    private readonly FastDropout dropout;
    private readonly Linear out_proj;

    public RobertaClassificationHead(RobertaConfig c, int outputs) : base(nameof(RobertaClassificationHead))
    {
        dense = RandomInit.Linear(c.HiddenSize, c.HiddenSize);
        dropout = new FastDropout(c.ClassifierDropout ?? c.HiddenDropoutProb);
        out_proj = RandomInit.Linear(c.HiddenSize, outputs);
        RegisterComponents();
    }

    /// <summary>Normal(0, 0.02) weights and zero biases, as HF's _init_weights for a new head.</summary>
    public void ResetParameters(double std = 0.02)
    {
        using var _ = no_grad();
        foreach (var linear in new[] { dense, out_proj })
        {
            RandomInit.Normal_(linear.weight!, 0, std);
            nn.init.zeros_(linear.bias!);
        }
    }

    public override Tensor forward(Tensor hidden)
    {
        var x = dropout.call(hidden.select(1, 0));
        x = dropout.call(dense.call(x).tanh());
        return out_proj.call(x);
    }
}
