using System.Text.Json;
using MlNetPeft.Backbone;
using static TorchSharp.torch;

namespace MlNetPeft.Adapters.LoraSquared;

/// <summary>
/// Reads a HF PEFT AdaLoRA adapter into a model built with an AdaLoRA <see cref="SvdConfig"/>. After rank allocation
/// PEFT saves only the kept singular values of each matrix (lora_A's and lora_E's rows, lora_B's columns) and lists in
/// adapter_config.json's rank_pattern which of the init_r it kept. Here every matrix keeps its init_r slots: the kept
/// ones filled, the pruned ones zero and masked. That is the same update, at the same scale: PEFT keeps
/// lora_alpha / (init_r + 1e-5) for a resized matrix too.
/// </summary>
internal static class PeftAdaLoraImport
{
    /// <summary>The AdaLoRA settings of a PEFT adapter directory's adapter_config.json: init_r, target_r, lora_alpha,
    /// lora_dropout and the targets. The schedule (tinit, tfinal, deltaT, total_step), β1, β2 and orth_reg_weight belong
    /// to the run that trained it and are not read.</summary>
    public static SvdConfig ReadConfig(string directory) => PeftAdapterFiles.ReadConfig(directory, "ADALORA", (root, common, file) =>
    {
        if (common.Layers is not null)
            throw new InvalidDataException($"{file}: adapters in some layers only (layers_to_transform, or a target_modules pattern) are not supported for AdaLoRA");
        var alpha = root.GetProperty("lora_alpha").GetDouble();
        if (alpha <= 0) throw new InvalidDataException($"{file}: lora_alpha must be positive, got {alpha}");
        return new SvdConfig
        {
            Variant = SvdVariant.AdaLora,
            InitialRank = root.TryGetProperty("init_r", out var initR) ? initR.GetInt32() : 12, // PEFT's defaults
            TargetRank = root.TryGetProperty("target_r", out var targetR) ? targetR.GetInt32() : 8,
            Alpha = alpha,
            Dropout = root.TryGetProperty("lora_dropout", out var dropout) ? dropout.GetDouble() : 0,
            Targets = common.Targets,
            Bias = common.Bias,
        };
    });

    /// <summary>Our state name for a PEFT AdaLoRA key ("base_model.model." and "modules_to_save." dropped).</summary>
    public static string FromPeftKey(string peftKey)
    {
        var key = PeftAdapterFiles.Normalize(peftKey);
        return PeftAdapterFiles.TryParseAdapterKey(key, out int layer, out var target, out var tensor)
            ? $"{Component(layer, target)}.{tensor}" : key;
    }

    /// <summary>Our state name of the component on a layer's projection ("adapters.layer0_query").</summary>
    private static string Component(int layer, string target) => $"adapters.{SvdConfig.ComponentName(layer, target)}";

    /// <summary>Loads the adapter and head of <paramref name="directory"/> into <paramref name="model"/>, built with
    /// <see cref="ReadConfig"/>'s settings.</summary>
    public static void Load(PeftModel model, string directory)
    {
        var config = (SvdConfig)model.Config;
        var file = PeftAdapterFiles.TensorFile(directory);
        var kept = PeftAdapterFiles.ReadConfig(directory, "ADALORA", (root, _, configFile) => RankPattern(root, config.InitialRank, configFile));
        using var scope = NewDisposeScope(); // all read or made here is temporary: LoadTrainableState copies it
        var state = new PeftAdapterState(model, file);
        foreach (var (peftKey, saved) in TensorFile.Load(file))
        {
            var key = PeftAdapterFiles.Normalize(peftKey);
            if (!PeftAdapterFiles.TryParseAdapterKey(key, out int layer, out var target, out var factor))
            {
                state.Add(peftKey, key, saved); // the head, trained biases
                continue;
            }
            var component = Component(layer, target);
            var slots = kept.GetValueOrDefault(key[..^(factor.Length + 1)]);
            state.Add(peftKey, $"{component}.{factor}", AtInitialRank(saved, factor == "lora_B" ? 1 : 0, slots, config.InitialRank, $"{file}: '{peftKey}'"));
            if (factor == "lora_E")
                state.Add(peftKey, $"{component}.rank_mask", slots is null
                    ? ones(config.InitialRank, 1)
                    : tensor(slots.Select(k => k ? 1f : 0f).ToArray()).view(-1, 1));
        }
        state.LoadInto();
    }

    /// <summary>A saved factor at init_r along <paramref name="rankDim"/>: as saved where it has all init_r, else its
    /// kept rows (or columns) placed in the slots rank_pattern marks and zeros in the others.</summary>
    private static Tensor AtInitialRank(Tensor saved, int rankDim, bool[]? slots, int initialRank, string source)
    {
        long rank = saved.dim() == 2 ? saved.shape[rankDim] : -1;
        if (rank == initialRank && (slots is null || slots.All(k => k))) return saved;
        int keptCount = slots?.Count(k => k) ?? initialRank;
        if (slots is null || rank != keptCount)
            throw new InvalidDataException($"{source} has shape [{string.Join(",", saved.shape)}]: expected rank {keptCount} "
                + (slots is null ? "(init_r, as rank_pattern does not list it)" : "(the singular values its rank_pattern keeps)"));
        var shape = saved.shape.ToArray();
        shape[rankDim] = initialRank;
        return zeros(shape).index_copy_(rankDim, KeptSlots(slots, saved.device), saved);
    }

    /// <summary>The indices of the kept slots of a rank_pattern entry (what PEFT saves of the init_r, in order).</summary>
    internal static Tensor KeptSlots(bool[] kept, Device device) =>
        tensor(Enumerable.Range(0, kept.Length).Where(i => kept[i]).Select(i => (long)i).ToArray(), device: device);

    /// <summary>rank_pattern by module path ("roberta.encoder.layer.0.attention.self.query"): which of the init_r
    /// singular values are kept. Empty where PEFT saved none (nothing pruned yet).</summary>
    private static Dictionary<string, bool[]> RankPattern(JsonElement root, int initialRank, string file)
    {
        var pattern = new Dictionary<string, bool[]>();
        if (!root.TryGetProperty("rank_pattern", out var entries) || entries.ValueKind != JsonValueKind.Object) return pattern;
        foreach (var entry in entries.EnumerateObject())
        {
            var key = PeftAdapterFiles.Normalize(entry.Name);
            if (!key.EndsWith(".lora_E", StringComparison.Ordinal) || !PeftAdapterFiles.TryParseAdapterKey(key, out _, out _, out _)
                || entry.Value.ValueKind != JsonValueKind.Array || entry.Value.GetArrayLength() != initialRank
                || entry.Value.EnumerateArray().Any(v => v.ValueKind is not (JsonValueKind.True or JsonValueKind.False)))
                throw new InvalidDataException($"{file}: rank_pattern entry '{entry.Name}' is not a list of {initialRank} (init_r) true/false values for a lora_E of a block's projection");
            pattern[key[..^".lora_E".Length]] = entry.Value.EnumerateArray().Select(v => v.GetBoolean()).ToArray();
        }
        return pattern;
    }
}
