using System.Text.Json.Serialization;
using MlNetPeft.Backbone;
using MlNetPeft.Training;

namespace MlNetPeft.Adapters.LoraSquared;

/// <summary>Which SVD-form adapter: AdaLoRA's plain factors, or LoRA²'s factors that are themselves LoRAs.</summary>
[JsonConverter(typeof(JsonStringEnumConverter))]
public enum SvdVariant
{
    /// <summary>AdaLoRA (Zhang et al. 2023): U and V plain matrices, scores over all their entries.</summary>
    AdaLora,
    /// <summary>LoRA² (Zhang et al. 2024): U = U₁U₂, V = V₁V₂ with inner rank k; scores over the small factors only.</summary>
    LoraSquared,
}

/// <summary>
/// SVD-form adapters with orthogonality regularisers and importance-based pruning of singular values on
/// AdaLoRA's cubic budget schedule. One record for both variants; the pruning code is shared.
/// </summary>
public sealed record SvdConfig : AdapterConfig
{
    public SvdVariant Variant { get; init; } = SvdVariant.LoraSquared;

    /// <summary>Initial rank r of every adapted matrix (number of singular values).</summary>
    public int InitialRank { get; init; } = 8;

    /// <summary>Average rank per matrix left after pruning: the final budget is TargetRank × adapted matrices.</summary>
    public int TargetRank { get; init; } = 2;

    /// <summary>LoRA² only: inner rank k of each factor's own LoRA.</summary>
    public int InnerRank { get; init; } = 8;

    /// <summary>Weight γ of the orthonormality regulariser (mean of ‖MMᵀ−I‖_F / ‖MᵀM−I‖_F over all factors).</summary>
    public double OrthogonalityWeight { get; init; } = 0.1;

    /// <summary>LoRA² only: weight of the cross term ‖U·V‖_F that keeps the two planes orthogonal.</summary>
    public double CrossOrthogonalityWeight { get; init; } = 0.1;

    /// <summary>Steps before pruning starts (t_init); negative = 15% of all steps.</summary>
    public int InitialWarmupSteps { get; init; } = -1;

    /// <summary>Final steps trained at the target budget with a fixed mask (t_final); negative = 45% of all steps.</summary>
    public int FinalSteps { get; init; } = -1;

    /// <summary>Prune every this many steps while the budget falls (ΔT).</summary>
    public int MaskInterval { get; init; } = 10;

    /// <summary>EMA factor β1 of the sensitivity.</summary>
    public double Beta1 { get; init; } = 0.85;

    /// <summary>EMA factor β2 of the uncertainty.</summary>
    public double Beta2 { get; init; } = 0.85;

    public override string MethodName => Variant == SvdVariant.LoraSquared ? "lorasquared" : "adalora";

    internal static string ComponentName(int layer, string target) => $"layer{layer}_{AdapterTargets.NamePart(target)}";

    internal override AdapterSet Attach(RobertaModel encoder)
    {
        var set = new AdapterSet();
        int? inner = Variant == SvdVariant.LoraSquared ? InnerRank : null;
        set.Attach(encoder, Targets, (layer, target, inF, outF) =>
            [set.Add(ComponentName(layer, target), new SvdUpdate(inF, outF, InitialRank, inner, Alpha, Dropout))]);
        return set;
    }

    internal override ITrainingHooks CreateHooks(AdapterSet adapters, int totalSteps) =>
        new RankAllocator(this, adapters.Components.Select(c => (c.Name, (SvdUpdate)c.Component)).ToList(), totalSteps);

    public override void Validate(int layers)
    {
        base.Validate(layers);
        if (InitialRank <= 0) throw new ArgumentException($"InitialRank must be positive, got {InitialRank}");
        if (TargetRank <= 0 || TargetRank > InitialRank) throw new ArgumentException($"TargetRank must be between 1 and InitialRank {InitialRank}, got {TargetRank}");
        if (Variant == SvdVariant.LoraSquared && InnerRank <= 0) throw new ArgumentException($"InnerRank must be positive, got {InnerRank}");
        if (OrthogonalityWeight is not (>= 0 and < double.PositiveInfinity) || CrossOrthogonalityWeight is not (>= 0 and < double.PositiveInfinity))
            throw new ArgumentException($"OrthogonalityWeight and CrossOrthogonalityWeight must be finite and not negative, got {OrthogonalityWeight} and {CrossOrthogonalityWeight}");
        if (MaskInterval <= 0) throw new ArgumentException($"MaskInterval must be positive, got {MaskInterval}");
        if (Beta1 is not (>= 0 and < 1) || Beta2 is not (>= 0 and < 1)) throw new ArgumentException($"Beta1 and Beta2 must be in [0, 1), got {Beta1} and {Beta2}");
    }

    /// <summary>
    /// Entries whose sensitivity is tracked for the importance score of one adapted in×out matrix: AdaLoRA tracks
    /// all of V (r×in), U (out×r) and λ; LoRA² only its inner factors V₁ (r×k), U₂ (k×r) and λ.
    /// </summary>
    public long ScoredEntriesPerMatrix(int inFeatures, int outFeatures) => Variant == SvdVariant.LoraSquared
        ? (long)InitialRank * (2 * InnerRank + 1)
        : (long)InitialRank * (inFeatures + outFeatures + 1);

    /// <summary>t_init and t_final for a run of <paramref name="totalSteps"/> steps (defaults: 15% and 45%).</summary>
    internal (int Init, int Final) Warmups(int totalSteps) =>
        (InitialWarmupSteps >= 0 ? InitialWarmupSteps : (int)(0.15 * totalSteps), FinalSteps >= 0 ? FinalSteps : (int)(0.45 * totalSteps));
}
