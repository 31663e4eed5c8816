using TorchSharp;
using TorchSharp.Modules;
using MlNetPeft.Backbone;
using static TorchSharp.torch;

namespace MlNetPeft.Adapters;

/// <summary>
/// One LoRA pair: Δy = B·A·dropout(x)·(alpha/r), or alpha/√r rank-stabilized (rsLoRA). A is Kaiming-uniform (a=√5)
/// and B zero, as PEFT, so the update starts at exactly zero. Parameter names follow PEFT (lora_A, lora_B).
/// </summary>
internal sealed class LowRankUpdate : nn.Module<Tensor, Tensor>, IWeightDelta
{
    private readonly Parameter lora_A;
    private readonly Parameter lora_B;
    private readonly FastDropout dropout;

    public LowRankUpdate(int inFeatures, int outFeatures, int rank, double alpha, double dropoutProbability, bool rankStabilized = false)
        : base(nameof(LowRankUpdate))
    {
        if (rank <= 0) throw new ArgumentOutOfRangeException(nameof(rank), $"LoRA rank must be positive, got {rank}");
        Rank = rank;
        Scaling = rankStabilized ? alpha / Math.Sqrt(rank) : alpha / rank;
        // Detached from any caller's dispose scope: a bare Parameter made inside one would be freed at its end.
        using (no_grad())
        {
            lora_A = new Parameter(empty(rank, inFeatures).DetachFromDisposeScope());
            RandomInit.KaimingUniform_(lora_A, Math.Sqrt(5));
            lora_B = new Parameter(zeros(outFeatures, rank).DetachFromDisposeScope());
        }
        dropout = new FastDropout(dropoutProbability);
        RegisterComponents();
    }

    public int Rank { get; }
    public double Scaling { get; }
    public Parameter A => lora_A;
    public Parameter B => lora_B;

    public override Tensor forward(Tensor x)
    {
        // Scaled at rank width (batch·seq·r values) rather than at the output's (batch·seq·out).
        var h = nn.functional.linear(dropout.call(x), lora_A.to(x.dtype)).mul(Scaling);
        return nn.functional.linear(h, lora_B.to(x.dtype));
    }

    public Tensor DeltaWeight() => lora_B.matmul(lora_A).mul(Scaling);

    public (Tensor Down, Tensor Up, double Scaling) AsLoraPair() => (lora_A, lora_B, Scaling);

    public bool DropsInput => dropout.Drops;

    /// <summary>This pair's input dropout (a fused group drops a copy of the input per pair with it, see <see cref="PairDropout"/>).</summary>
    public Tensor Dropout(Tensor x) => dropout.call(x);
}
