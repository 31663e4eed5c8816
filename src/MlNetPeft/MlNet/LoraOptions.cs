using MlNetPeft.Adapters;
using MlNetPeft.Adapters.Lora;
using MlNetPeft.Backbone;

namespace MlNetPeft.MlNet;

/// <summary>Options of the plain LoRA trainers (classification and regression).</summary>
public sealed class LoraOptions : PeftTextTrainerOptions
{
    /// <summary>Rank of every LoRA pair.</summary>
    public int Rank = 8;

    /// <summary>Scale each pair by LoraAlpha/√Rank instead of LoraAlpha/Rank (rsLoRA, PEFT's use_rslora).</summary>
    public bool UseRsLora;

    /// <summary>DoRA (weight-decomposed LoRA, PEFT's use_dora): each adapted weight also learns the length of each of
    /// its output rows, and the LoRA pair its direction.</summary>
    public bool UseDora;

    /// <summary>The layers (0-based) that get adapters, PEFT's layers_to_transform; null: every layer.</summary>
    public int[]? Layers;

    /// <summary>PEFT's rank_pattern: other ranks than <see cref="Rank"/> for the projections a key matches. A key is a
    /// regular expression that must match the end of a module path after a '.' ("value", or
    /// @"layer\.11\.attention\.self\.query" of "roberta.encoder.layer.11.attention.self.query"); the first matching
    /// key in the dictionary's order applies.</summary>
    public Dictionary<string, int>? RankPattern;

    /// <summary>PEFT's alpha_pattern: other alphas than LoraAlpha, keyed as <see cref="RankPattern"/>.</summary>
    public Dictionary<string, double>? AlphaPattern;

    /// <summary>PEFT's bias: which of the backbone's biases train with the LoRA pairs. None (the default) keeps the
    /// backbone frozen; All trains every bias of it (its Linears' and LayerNorms'), LoraOnly the adapted projections'
    /// own. Trained biases are saved in the model zip and exported with <c>SavePeftAdapter</c>.</summary>
    public LoraBias Bias;

    /// <summary>A HF PEFT LoRA adapter directory (adapter_config.json, adapter_model.safetensors or .bin) to start from: its
    /// r, lora_alpha, rank_pattern, alpha_pattern, use_rslora, use_dora, bias, layers_to_transform and target_modules replace
    /// <see cref="Rank"/>, LoraAlpha, <see cref="RankPattern"/>, <see cref="AlphaPattern"/>, <see cref="UseRsLora"/>,
    /// <see cref="UseDora"/>, <see cref="Bias"/>, <see cref="Layers"/> and Targets, and its adapters, head and saved
    /// biases the fresh ones. Training then continues from it; with MaxEpochs = 0 the model is the adapter as it was trained
    /// (e.g. in Python), packaged for ML.NET. The head's class i must be the label's key i+1.</summary>
    public string? InitialPeftAdapter;

    internal override string? InitialPeftAdapterDirectory => InitialPeftAdapter;

    internal override AdapterConfig ToAdapterConfig() => InitialPeftAdapter is { } adapter
        ? PeftLoraImport.ReadConfig(adapter) with { Dropout = LoraDropout }
        : new LoraConfig
        {
            Rank = Rank, RankPattern = RankPattern, AlphaPattern = AlphaPattern, UseRsLora = UseRsLora, UseDora = UseDora,
            Layers = Layers, Targets = Targets, Alpha = LoraAlpha, Dropout = LoraDropout, Bias = Bias,
        };

    internal override string? Initialize(PeftModel model)
    {
        if (InitialPeftAdapter is not { } adapter) return base.Initialize(model);
        model.LoadPeftAdapter(adapter);
        var lora = (LoraConfig)model.Config;
        return $"adapters and head of the PEFT adapter {adapter} (r {lora.Rank}, lora_alpha {lora.Alpha}{(lora.UseRsLora ? ", rsLoRA" : "")}{(lora.UseDora ? ", DoRA" : "")}{(lora.RankPattern is null && lora.AlphaPattern is null ? "" : ", rank/alpha patterns")}{(lora.Bias == LoraBias.None ? "" : $", bias {lora.Bias}")}, targets {string.Join(", ", lora.Targets)})";
    }
}
