using TorchSharp;
using TorchSharp.Modules;
using MlNetPeft.Backbone;
using static TorchSharp.torch;

namespace MlNetPeft.Adapters.LoraSquared;

/// <summary>
/// SVD-form update ΔW = α/(r + 1e-5)·U·diag(λ ⊙ mask)·V (the scale of PEFT's AdaLoRA and of the LoRA² code) with
/// λ = lora_E initialised to 0 (so ΔW starts at zero) and a 0/1 mask that rank pruning writes. AdaLoRA:
/// U = lora_B (out×r) and V = lora_A (r×in) are plain matrices.
/// LoRA²: each factor is itself a LoRA of inner rank k, U = lora_bb·lora_aa (out×k·k×r) and
/// V = lora_B·lora_A (r×k·k×in), the authors' parameter names. Factors start N(0, 0.02) as in both codebases.
/// </summary>
internal sealed class SvdUpdate : nn.Module<Tensor, Tensor>, IWeightDelta
{
    private readonly Parameter lora_A;
    private readonly Parameter lora_B;
    private readonly Parameter lora_E;
    private readonly Parameter? lora_aa;
    private readonly Parameter? lora_bb;
    private readonly Tensor rank_mask;
    private readonly FastDropout dropout;

    public SvdUpdate(int inFeatures, int outFeatures, int rank, int? innerRank, double alpha, double dropoutProbability)
        : base(nameof(SvdUpdate))
    {
        Rank = rank;
        Scaling = alpha / (rank + 1e-5); // both codebases: lora_alpha / (ranknum + 1e-5), ranknum = r
        static Parameter Normal(params long[] shape) => new(RandomInit.Normal(0.02, shape).DetachFromDisposeScope());
        using (no_grad())
        {
            if (innerRank is { } k)
            {
                lora_A = Normal(k, inFeatures);
                lora_B = Normal(rank, k);
                lora_aa = Normal(k, rank);
                lora_bb = Normal(outFeatures, k);
            }
            else
            {
                lora_A = Normal(rank, inFeatures);
                lora_B = Normal(outFeatures, rank);
            }
            lora_E = new Parameter(zeros(rank, 1).DetachFromDisposeScope());
            rank_mask = ones(rank, 1).DetachFromDisposeScope();
        }
        dropout = new FastDropout(dropoutProbability);
        RegisterComponents();
    }

    public int Rank { get; }
    public double Scaling { get; }
    public bool IsTwoPlane => lora_aa is not null;

    /// <summary>1 where singular value j is kept, 0 where pruned (r×1).</summary>
    public Tensor Mask => rank_mask;

    /// <summary>Singular values not pruned (reads the mask back to the host).</summary>
    public int KeptRank
    {
        get
        {
            using var kept = rank_mask.sum();
            return (int)kept.item<float>();
        }
    }
    public Parameter Values => lora_E;

    public override Tensor forward(Tensor x)
    {
        var dt = x.dtype;
        var h = nn.functional.linear(dropout.call(x), lora_A.to(dt));
        if (lora_aa is not null) h = nn.functional.linear(h, lora_B.to(dt));
        // The scaling rides on the r singular values rather than on the batch·seq·out output.
        h = h.mul(lora_E.mul(rank_mask).squeeze(1).mul(Scaling).to(dt));
        if (lora_aa is not null) return nn.functional.linear(nn.functional.linear(h, lora_aa.to(dt)), lora_bb!.to(dt));
        return nn.functional.linear(h, lora_B.to(dt));
    }

    public bool DropsInput => dropout.Drops;

    public Tensor Dropout(Tensor x) => dropout.call(x);

    /// <summary>
    /// The factors of many updates of one layout at once, for a stacked forward (see <see cref="StackedLowRank"/>):
    /// V's rows [n·r, in] and (scale·U·diag(λ⊙mask))ᵀ [n·r, out], in a handful of batched ops for all n.
    /// </summary>
    public static (Tensor Down, Tensor UpT) Stack(IReadOnlyList<SvdUpdate> updates)
    {
        Tensor Stacked(Func<SvdUpdate, Tensor> factor) => stack(updates.Select(factor).ToArray());
        var values = Stacked(u => u.lora_E).mul(Stacked(u => u.rank_mask)).mul(updates[0].Scaling); // [n, r, 1]
        var (v, uT) = updates[0].IsTwoPlane
            ? (Stacked(u => u.lora_B).bmm(Stacked(u => u.lora_A)),
               Stacked(u => u.lora_aa!).transpose(1, 2).bmm(Stacked(u => u.lora_bb!).transpose(1, 2)))
            : (Stacked(u => u.lora_A), Stacked(u => u.lora_B).transpose(1, 2));
        return (v.flatten(0, 1), uT.mul(values).flatten(0, 1));
    }

    /// <summary>Whether <paramref name="other"/> has this update's factor shapes and scaling (so they stack).</summary>
    public bool StacksWith(SvdUpdate other) =>
        other.Scaling == Scaling && other.lora_A.shape.SequenceEqual(lora_A.shape) && other.lora_B.shape.SequenceEqual(lora_B.shape)
        && other.IsTwoPlane == IsTwoPlane && (!IsTwoPlane || other.lora_bb!.shape.SequenceEqual(lora_bb!.shape));

    /// <summary>U (out×r) and V (r×in) of ΔW = scale·U·diag(λ⊙mask)·V.</summary>
    public (Tensor U, Tensor V) Factors() => lora_aa is not null
        ? (lora_bb!.matmul(lora_aa), lora_B.matmul(lora_A))
        : (lora_B, lora_A);

    public Tensor DeltaWeight()
    {
        var (down, up, scaling) = AsLoraPair();
        return up.matmul(down).mul(scaling);
    }

    /// <summary>V as the down-projection and U·diag(λ⊙mask) as the up-projection (a pruned value's column is zero).</summary>
    public (Tensor Down, Tensor Up, double Scaling) AsLoraPair()
    {
        var (u, v) = Factors();
        return (v, u.mul(lora_E.mul(rank_mask).t()), Scaling);
    }

    /// <summary>
    /// The factors whose sensitivity feeds the importance score, with the dimension that indexes the singular
    /// value: AdaLoRA scores all of V's rows and U's columns; LoRA² only the small inner factors lora_B (r×k, rows)
    /// and lora_aa (k×r, columns), its cheaper score.
    /// </summary>
    public IEnumerable<(Parameter Factor, int RankDim)> ScoredFactors() => lora_aa is not null
        ? [(lora_B, 0), (lora_aa, 1)]
        : [(lora_A, 0), (lora_B, 1)];

    /// <summary>Factors meant to have orthonormal rows (M·Mᵀ = I) and orthonormal columns (Mᵀ·M = I).</summary>
    public (IReadOnlyList<Tensor> Rows, IReadOnlyList<Tensor> Columns) OrthonormalFactors() => lora_aa is not null
        ? ([lora_A, lora_aa], [lora_B, lora_bb!])
        : ([lora_A], [lora_B]);

    /// <summary>
    /// LoRA² cross terms ‖U·V‖_F between the two planes (zero when they are mutually orthogonal) of a batch of updates,
    /// from their factors stacked along a first dimension, using k×k Gram matrices:
    /// ‖bb·(aa·B)·A‖²_F = tr(Mᵀ·(bbᵀbb)·M·(A·Aᵀ)) with M = aa·B.
    /// </summary>
    public static Tensor CrossTerms(Tensor a, Tensor aa, Tensor b, Tensor bb)
    {
        var m = aa.bmm(b);
        var squared = m.transpose(1, 2).bmm(bb.transpose(1, 2).bmm(bb)).bmm(m).mul(a.bmm(a.transpose(1, 2))).sum([1, 2]);
        return squared.clamp_min(0).add(1e-12).sqrt();
    }

    /// <summary>Trainable parameters that still matter: factor entries of kept singular values (plus LoRA²'s
    /// outer factors, which every kept value uses).</summary>
    public long EffectiveParameterCount(int keptRank)
    {
        if (keptRank == 0) return 0;
        if (lora_aa is null) return keptRank * (lora_A.shape[1] + lora_B.shape[0] + 1);
        long k = lora_A.shape[0];
        return lora_A.numel() + lora_bb!.numel() + keptRank * (2 * k + 1);
    }
}
