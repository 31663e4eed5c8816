using System.Text.RegularExpressions;
using MlNetPeft.Backbone;

namespace MlNetPeft.Adapters.Lora;

/// <summary>Plain LoRA (Hu et al.): one rank-r pair per target projection per layer.</summary>
public sealed record LoraConfig : AdapterConfig
{
    /// <summary>Rank r of each pair.</summary>
    public int Rank { get; init; } = 8;

    /// <summary>Scale by alpha/√r instead of alpha/r (rsLoRA, PEFT's use_rslora), so that the update's size does not
    /// shrink as the rank grows.</summary>
    public bool UseRsLora { get; init; }

    /// <summary>DoRA (PEFT's use_dora): each adapted weight also learns the length of each output row (see
    /// <see cref="DoraMagnitude"/>).</summary>
    public bool UseDora { get; init; }

    /// <summary>The layers (0-based) whose projections get adapters, PEFT's layers_to_transform; null: every layer.</summary>
    public int[]? Layers { get; init; }

    /// <summary>PEFT's rank_pattern: ranks other than <see cref="Rank"/> for the projections a key matches. Keys are
    /// regular expressions over module paths ("roberta.encoder.layer.0.attention.self.query"); as in PEFT, the first
    /// key (in the dictionary's order) that matches the end of a path after a '.' applies ("query",
    /// "layer\.0\.attention\.self\.query").</summary>
    public Dictionary<string, int>? RankPattern { get; init; }

    /// <summary>PEFT's alpha_pattern: alphas other than <see cref="AdapterConfig.Alpha"/>, keyed as <see cref="RankPattern"/>.</summary>
    public Dictionary<string, double>? AlphaPattern { get; init; }

    public override string MethodName => UseDora ? "dora" : "lora";

    /// <summary>The rank and alpha of the pair on a layer's projection: the patterns' where a key matches its path.</summary>
    internal (int Rank, double Alpha) RankAndAlphaOf(int layer, string target)
    {
        var path = AdapterTargets.ModulePath(layer, target);
        return (RankPattern is { } ranks && PeftTargetModules.PatternKey(ranks.Keys, path) is { } r ? ranks[r] : Rank,
                AlphaPattern is { } alphas && PeftTargetModules.PatternKey(alphas.Keys, path) is { } a ? alphas[a] : Alpha);
    }

    internal override bool HasLoraPairs => true;

    /// <summary>Component name of the pair on a layer's projection (also how PEFT adapter files are mapped).</summary>
    internal static string ComponentName(int layer, string target) => $"layer{layer}_{AdapterTargets.NamePart(target)}";

    /// <summary>Component name of DoRA's magnitude on a layer's projection.</summary>
    internal static string MagnitudeName(int layer, string target) => $"layer{layer}_{AdapterTargets.NamePart(target)}_magnitude";

    internal override AdapterSet Attach(RobertaModel encoder)
    {
        var set = new AdapterSet();
        set.Attach(encoder, Targets, (layer, target, inF, outF) =>
        {
            var (rank, alpha) = RankAndAlphaOf(layer, target);
            return [set.Add(ComponentName(layer, target), new LowRankUpdate(inF, outF, rank, alpha, Dropout, UseRsLora))];
        }, layers: Layers);
        if (UseDora)
            foreach (var (_, layer, target, linear) in set.Wrapped)
                linear.UseMagnitude(set.Add(MagnitudeName(layer, target), new DoraMagnitude(linear.BaseLayer.weight!)));
        return set;
    }

    public override void Validate(int layers)
    {
        base.Validate(layers);
        if (Rank <= 0) throw new ArgumentException($"Rank must be positive, got {Rank}");
        foreach (var (key, rank) in RankPattern ?? [])
            if (rank <= 0) throw new ArgumentException($"RankPattern: '{key}' must map to a positive rank, got {rank}");
        foreach (var (key, alpha) in AlphaPattern ?? [])
            if (alpha is not (> 0 and < double.PositiveInfinity)) throw new ArgumentException($"AlphaPattern: '{key}' must map to a positive alpha, got {alpha}");
        foreach (var key in (RankPattern?.Keys ?? Enumerable.Empty<string>()).Concat(AlphaPattern?.Keys ?? Enumerable.Empty<string>()))
        {
            try { _ = new Regex(key); }
            catch (ArgumentException e) { throw new ArgumentException($"RankPattern/AlphaPattern: '{key}' is not a regular expression ({e.Message})", e); }
        }
        if (Layers is not null && (Layers.Length == 0 || Layers.Any(l => l < 0 || l >= layers) || Layers.Distinct().Count() != Layers.Length))
            throw new ArgumentException($"Layers must list distinct layers of 0..{layers - 1}, got [{string.Join(", ", Layers)}]");
    }
}
