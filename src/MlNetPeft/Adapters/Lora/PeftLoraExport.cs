using MlNetPeft.Backbone;
using static TorchSharp.torch;

namespace MlNetPeft.Adapters.Lora;

/// <summary>
/// Writes a model's adapters and head as a HF PEFT LoRA adapter directory (adapter_config.json +
/// adapter_model.safetensors, the files <c>PeftModel.from_pretrained</c> reads). Every method's update of a projection
/// is a sum of low-rank pairs, so every method exports exactly: MSPLoRA's global, mid-level and layer pairs become one
/// rank-14 LoRA per projection, and AdaLoRA's and LoRA²'s U·diag(λ⊙mask)·V one rank-r LoRA (pruned values as zero
/// columns). DoRA's magnitudes go in as PEFT saves them (lora_magnitude_vector, use_dora); projections whose rank or
/// scale differs from the others' (a LoRA with patterns) get PEFT's rank_pattern and alpha_pattern entries. Trained
/// biases go in as PEFT's bias "all" or "lora_only".
/// </summary>
internal static class PeftLoraExport
{
    /// <param name="model">A model with adapters (not full fine-tuning).</param>
    /// <param name="directory">Created if missing; the two files are overwritten.</param>
    /// <param name="baseModel">Recorded as base_model_name_or_path (the backbone directory), or null.</param>
    public static void Save(PeftModel model, string directory, string? baseModel)
    {
        if (model.Config.TrainsBackbone)
            throw new NotSupportedException("Full fine-tuning trains the backbone itself, so there is no adapter to export.");
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var tensors = new Dictionary<string, Tensor>();
        var shapes = new List<(string Path, int Rank, double Alpha)>();
        foreach (var (path, _, _, linear) in model.Adapters.Wrapped)
        {
            var (down, up, scaling) = OnePair(linear.Updates);
            shapes.Add((path, (int)down.shape[0], Math.Round(scaling * down.shape[0], 10))); // PEFT scales by lora_alpha / r
            tensors[$"{path}.lora_A.weight"] = down;
            tensors[$"{path}.lora_B.weight"] = up;
            if (linear.Magnitude is { } magnitude) tensors[$"{path}.lora_magnitude_vector"] = magnitude.Weight;
        }
        if (shapes.Count == 0) throw new InvalidOperationException("The model has no adapted projections.");
        // The most common rank and alpha are r and lora_alpha; any other projection's go in PEFT's patterns, keyed by its path.
        var (rank, alpha) = shapes.GroupBy(s => (s.Rank, s.Alpha)).MaxBy(g => g.Count())!.Key;
        var rankPattern = shapes.Where(s => s.Rank != rank).ToDictionary(s => PeftTargetModules.PatternKeyFor(s.Path), s => s.Rank);
        var alphaPattern = shapes.Where(s => s.Alpha != alpha).ToDictionary(s => PeftTargetModules.PatternKeyFor(s.Path), s => s.Alpha);

        var layers = (model.Config as LoraConfig)?.Layers;
        var targetModules = PeftTargetModules.ToPeft(model.Config.Targets, layers);
        PeftAdapterFiles.Write(model, directory, baseModel, "LORA", tensors, targetModules, new Dictionary<string, object?>
        {
            ["r"] = rank,
            ["lora_alpha"] = alpha,
            ["rank_pattern"] = rankPattern,
            ["alpha_pattern"] = alphaPattern,
            ["layers_to_transform"] = targetModules is string ? null : layers, // PEFT applies it to listed names only
            ["layers_pattern"] = null,
            ["use_rslora"] = false,
            ["use_dora"] = model.Adapters.Wrapped.Any(w => w.Linear.Magnitude is not null),
        });
    }

    /// <summary>A projection's updates as one pair: as they are when there is one, else stacked with each pair's
    /// scaling folded into its up-projection (scaling 1), unless they all share one.</summary>
    private static (Tensor Down, Tensor Up, double Scaling) OnePair(IReadOnlyList<IWeightDelta> updates)
    {
        var pairs = updates.Select(u => u.AsLoraPair()).ToList();
        if (pairs.Count == 1) return pairs[0];
        var down = cat(pairs.Select(p => p.Down).ToArray(), 0);
        if (pairs.All(p => p.Scaling == pairs[0].Scaling)) return (down, cat(pairs.Select(p => p.Up).ToArray(), 1), pairs[0].Scaling);
        return (down, cat(pairs.Select(p => p.Up.mul(p.Scaling)).ToArray(), 1), 1.0);
    }
}
