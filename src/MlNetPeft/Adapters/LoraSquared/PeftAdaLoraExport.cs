using MlNetPeft.Adapters.Lora;
using static TorchSharp.torch;

namespace MlNetPeft.Adapters.LoraSquared;

/// <summary>
/// Writes an AdaLoRA model as HF PEFT saves an AdaLoRA adapter, the inverse of <see cref="PeftAdaLoraImport"/>: per
/// projection lora_A (r×in), lora_E (r×1) and lora_B (out×r), keys without ".weight". Once a singular value has been
/// pruned anywhere, every matrix keeps only its kept values (lora_A's and lora_E's rows, lora_B's columns) and
/// rank_pattern lists which of the init_r it kept, as PEFT saves after its final budget; PEFT rebuilds each matrix at
/// its kept rank and keeps the scale lora_alpha / (init_r + 1e-5), so the update is the model's.
/// </summary>
internal static class PeftAdaLoraExport
{
    /// <param name="model">An AdaLoRA model.</param>
    /// <param name="directory">Created if missing; the two files are overwritten.</param>
    /// <param name="baseModel">Recorded as base_model_name_or_path (the backbone directory), or null.</param>
    /// <param name="trainingSteps">The steps the training run was scheduled for (PEFT's total_step, with the t_init and
    /// t_final they give), or null for a model that did not train here: then the shortest schedule PEFT accepts.</param>
    public static void Save(PeftModel model, string directory, string? baseModel, int? trainingSteps)
    {
        if (model.Config is not SvdConfig { Variant: SvdVariant.AdaLora } config)
            throw new NotSupportedException($"Only an AdaLoRA model saves as a PEFT AdaLoRA adapter, not {model.Config.MethodName}: save it as a LoRA (PeftAdapterFormat.Lora)");
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var projections = model.Adapters.Wrapped.Select(w => (w.Path, Update: (SvdUpdate)w.Linear.Updates[0]))
            .Select(p => (p.Path, p.Update, Kept: p.Update.Mask.view(-1).cpu().data<float>().Select(m => m != 0).ToArray())).ToList();
        bool pruned = projections.Any(p => p.Kept.Contains(false));
        var tensors = new Dictionary<string, Tensor>();
        foreach (var (path, update, kept) in projections)
        {
            var (u, v) = update.Factors();
            var values = update.Values.mul(update.Mask);
            if (pruned)
            {
                var rows = PeftAdaLoraImport.KeptSlots(kept, values.device);
                (u, v, values) = (u.index_select(1, rows), v.index_select(0, rows), values.index_select(0, rows));
            }
            tensors[$"{path}.lora_A"] = v;
            tensors[$"{path}.lora_E"] = values;
            tensors[$"{path}.lora_B"] = u;
        }
        int steps = trainingSteps ?? Math.Max(config.InitialWarmupSteps, 0) + Math.Max(config.FinalSteps, 0) + 1;
        var (init, final) = config.Warmups(steps);
        PeftAdapterFiles.Write(model, directory, baseModel, "ADALORA", tensors, PeftTargetModules.ToPeft(config.Targets, null),
            new Dictionary<string, object?>
            {
                ["init_r"] = config.InitialRank,
                ["target_r"] = config.TargetRank,
                ["lora_alpha"] = config.Alpha,
                ["tinit"] = init,
                ["tfinal"] = final,
                ["deltaT"] = config.MaskInterval,
                ["beta1"] = config.Beta1,
                ["beta2"] = config.Beta2,
                ["orth_reg_weight"] = config.OrthogonalityWeight,
                ["total_step"] = steps,
                ["rank_pattern"] = pruned ? projections.ToDictionary(p => $"{p.Path}.lora_E", p => p.Kept) : null,
            });
    }
}
