using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetPeft.Adapters.Lora;

/// <summary>
/// DoRA's magnitude (Liu et al. 2024; PEFT's use_dora, its lora_magnitude_vector): one trainable length per output
/// row of an adapted weight. The projection's weight becomes m ⊙ (W + ΔW) / ‖W + ΔW‖ row by row, where the norm is
/// treated as a constant (no gradient, as the paper's §4.3 and PEFT). It starts at ‖W‖, so a fresh adapter changes
/// nothing.
/// </summary>
internal sealed class DoraMagnitude : nn.Module
{
    private readonly Parameter weight;

    public DoraMagnitude(Tensor baseWeight) : base(nameof(DoraMagnitude))
    {
        using (no_grad())
            weight = new Parameter(RowNorms(baseWeight).DetachFromDisposeScope());
        RegisterComponents();
    }

    public Parameter Weight => weight;

    /// <summary>m / ‖W + ΔW‖ per output row, fp32 [out], on m's device, given <paramref name="adaptedWeight"/> = W + ΔW:
    /// the norm without gradient, m with.</summary>
    public Tensor Scale(Tensor adaptedWeight)
    {
        Tensor norms;
        using (no_grad()) norms = RowNorms(adaptedWeight).to(weight.device);
        return weight.div(norms);
    }

    /// <summary>The L2 norm of each row, in fp32 whatever the weight's precision.</summary>
    private static Tensor RowNorms(Tensor weight) => weight.detach().to(ScalarType.Float32).norm(1, keepdim: false, p: 2);
}
