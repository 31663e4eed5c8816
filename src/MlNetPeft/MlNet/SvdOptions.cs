using MlNetPeft.Adapters;
using MlNetPeft.Adapters.LoraSquared;

namespace MlNetPeft.MlNet;

/// <summary>
/// Options of the SVD-form trainers (LoRA² and AdaLoRA): rank pruning on AdaLoRA's cubic budget schedule and
/// the orthogonality regulariser. Steps count optimizer steps: rows / BatchSize × MaxEpochs in all.
/// </summary>
public abstract class SvdOptions : PeftTextTrainerOptions
{
    /// <summary>Initial rank of every adapted matrix.</summary>
    public int InitialRank;

    /// <summary>Average rank per adapted matrix after pruning (the final budget is this × the number of matrices).</summary>
    public int TargetRank;

    /// <summary>Weight γ of the orthonormality regulariser added to the loss.</summary>
    public double OrthogonalityWeight;

    /// <summary>Steps before pruning starts (t_init); -1 = 15% of all steps.</summary>
    public int InitialWarmupSteps = -1;

    /// <summary>Final steps at the target budget with the mask fixed (t_final); -1 = 45% of all steps.</summary>
    public int FinalSteps = -1;

    /// <summary>Prune every this many steps while the budget falls (ΔT).</summary>
    public int MaskInterval = 10;

    /// <summary>EMA factors of the sensitivity and its uncertainty (0.85 in both papers).</summary>
    public double Beta1 = 0.85, Beta2 = 0.85;

    /// <summary>PEFT's bias (AdaLoraConfig has it as LoraConfig does), as <see cref="LoraOptions.Bias"/>: None (the
    /// default; the LoRA² paper trains none) keeps the backbone frozen; All trains every bias of it, LoraOnly the
    /// adapted projections' own.</summary>
    public LoraBias Bias;

    private protected SvdConfig ToSvdConfig(SvdVariant variant) => new()
    {
        Variant = variant, InitialRank = InitialRank, TargetRank = TargetRank, OrthogonalityWeight = OrthogonalityWeight,
        InitialWarmupSteps = InitialWarmupSteps, FinalSteps = FinalSteps, MaskInterval = MaskInterval, Beta1 = Beta1, Beta2 = Beta2,
        Targets = Targets, Alpha = LoraAlpha, Dropout = LoraDropout, Bias = Bias,
    };
}

/// <summary>Options of the LoRA² trainers: U and V of the SVD-form update are each a LoRA of inner rank k.</summary>
public sealed class LoraSquaredOptions : SvdOptions
{
    public LoraSquaredOptions()
    {
        InitialRank = 8;
        TargetRank = 2;
        OrthogonalityWeight = 0.1;
    }

    /// <summary>Inner rank k of the factor LoRAs (the authors: 8).</summary>
    public int InnerRank = 8;

    /// <summary>Weight of the cross term ‖U·V‖_F that keeps the two planes mutually orthogonal.</summary>
    public double CrossOrthogonalityWeight = 0.1;

    internal override AdapterConfig ToAdapterConfig() =>
        ToSvdConfig(SvdVariant.LoraSquared) with { InnerRank = InnerRank, CrossOrthogonalityWeight = CrossOrthogonalityWeight };
}

/// <summary>Options of the AdaLoRA trainers (the baseline of LoRA²; defaults as HF PEFT: rank 12 → 8, γ 0.5).</summary>
public sealed class AdaLoraOptions : SvdOptions
{
    public AdaLoraOptions()
    {
        InitialRank = 12;
        TargetRank = 8;
        OrthogonalityWeight = 0.5;
    }

    /// <summary>A HF PEFT AdaLoRA adapter directory (adapter_config.json, adapter_model.safetensors or .bin) to start
    /// from: its init_r, target_r, lora_alpha, bias and target_modules replace <see cref="SvdOptions.InitialRank"/>,
    /// <see cref="SvdOptions.TargetRank"/>, LoraAlpha, <see cref="SvdOptions.Bias"/> and Targets, its adapters (singular values
    /// pruned as its rank_pattern says), head and saved biases the fresh ones. The schedule, β1, β2 and γ stay this run's options. With
    /// MaxEpochs = 0 the model is the adapter as it was trained (e.g. in Python), packaged for ML.NET. The head's
    /// class i must be the label's key i+1.</summary>
    public string? InitialPeftAdapter;

    internal override string? InitialPeftAdapterDirectory => InitialPeftAdapter;

    internal override AdapterConfig ToAdapterConfig()
    {
        var config = ToSvdConfig(SvdVariant.AdaLora);
        if (InitialPeftAdapter is not { } adapter) return config;
        var saved = PeftAdaLoraImport.ReadConfig(adapter);
        return config with { InitialRank = saved.InitialRank, TargetRank = saved.TargetRank, Alpha = saved.Alpha, Targets = saved.Targets, Bias = saved.Bias };
    }

    internal override string? Initialize(PeftModel model)
    {
        if (InitialPeftAdapter is not { } adapter) return base.Initialize(model);
        model.LoadPeftAdapter(adapter);
        var svd = (SvdConfig)model.Config;
        return $"adapters and head of the PEFT AdaLoRA adapter {adapter} (init_r {svd.InitialRank}, target_r {svd.TargetRank}, lora_alpha {svd.Alpha}{(svd.Bias == LoraBias.None ? "" : $", bias {svd.Bias}")}, targets {string.Join(", ", svd.Targets)})";
    }
}
