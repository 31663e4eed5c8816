using System.Text.Json;
using MlNetPeft.Backbone;
using static TorchSharp.torch;

namespace MlNetPeft.Adapters.Lora;

/// <summary>Reads a HF PEFT LoRA adapter (adapter_model.safetensors) into a model built with <see cref="LoraConfig"/>.</summary>
internal static class PeftLoraImport
{
    /// <summary>Our state name for a PEFT key ("base_model.model." and "modules_to_save." dropped).</summary>
    public static string FromPeftKey(string peftKey)
    {
        var key = PeftAdapterFiles.Normalize(peftKey);
        if (!PeftAdapterFiles.TryParseAdapterKey(key, out int layer, out var target, out var tensor)) return key;
        return tensor.StartsWith("lora_magnitude_vector", StringComparison.Ordinal)
            ? $"adapters.{LoraConfig.MagnitudeName(layer, target)}.weight" // PEFT saves it without ".weight"
            : $"adapters.{LoraConfig.ComponentName(layer, target)}.{tensor.Replace(".weight", "")}";
    }

    /// <summary>The LoRA settings of a PEFT adapter directory's adapter_config.json (rank, alpha, their per-module
    /// patterns, rsLoRA, DoRA, bias, dropout, targets, layers).</summary>
    public static LoraConfig ReadConfig(string directory) => PeftAdapterFiles.ReadConfig(directory, "LORA", (root, common, file) => new LoraConfig
    {
        Bias = !root.TryGetProperty("bias", out var bias) || bias.ValueKind == JsonValueKind.Null ? LoraBias.None : bias.GetString() switch
        {
            "none" => LoraBias.None,
            "all" => LoraBias.All,
            "lora_only" => LoraBias.LoraOnly,
            var other => throw new InvalidDataException($"{file}: bias \"{other}\" is not one of PEFT's \"none\", \"all\", \"lora_only\""),
        },
        Rank = root.GetProperty("r").GetInt32(),
        UseRsLora = root.TryGetProperty("use_rslora", out var rsLora) && rsLora.ValueKind == JsonValueKind.True,
        UseDora = root.TryGetProperty("use_dora", out var dora) && dora.ValueKind == JsonValueKind.True,
        Layers = common.Layers,
        Alpha = root.GetProperty("lora_alpha").GetDouble(),
        Dropout = root.TryGetProperty("lora_dropout", out var dropout) ? dropout.GetDouble() : 0,
        Targets = common.Targets,
        RankPattern = Pattern(root, "rank_pattern", v => v.GetInt32()),
        AlphaPattern = Pattern(root, "alpha_pattern", v => v.GetDouble()),
    });

    /// <summary>rank_pattern or alpha_pattern in the file's order (the first matching key applies), or null when absent
    /// or empty.</summary>
    private static Dictionary<string, T>? Pattern<T>(JsonElement root, string name, Func<JsonElement, T> value)
    {
        if (!root.TryGetProperty(name, out var pattern) || pattern.ValueKind is JsonValueKind.Null) return null;
        if (pattern.ValueKind != JsonValueKind.Object) throw new FormatException($"{name} is not an object of module patterns");
        var entries = pattern.EnumerateObject().ToDictionary(e => e.Name, e => value(e.Value));
        return entries.Count == 0 ? null : entries;
    }

    /// <summary>Loads the adapter, head and trained biases of <paramref name="directory"/> into <paramref name="model"/>,
    /// built with <see cref="ReadConfig"/>'s settings.</summary>
    public static void Load(PeftModel model, string directory)
    {
        var adapterFile = PeftAdapterFiles.TensorFile(directory);
        var tensors = TensorFile.Load(adapterFile);
        var current = new Dictionary<string, Tensor>();
        try
        {
            var state = new Dictionary<string, Tensor>();
            var trained = model.TrainedBackbone().Select(p => "roberta." + p.Name).ToHashSet();
            foreach (var (key, tensor) in tensors)
            {
                // With bias "all" PEFT also saves its untouched copy of the head's biases, and may save the trained head
                // under both of its names.
                if (key.Contains(".original_module.", StringComparison.Ordinal)) continue;
                var name = BiasName(trained, FromPeftKey(key));
                if (state.TryGetValue(name, out var seen) && !(seen.shape.SequenceEqual(tensor.shape) && seen.equal(tensor).all().item<bool>()))
                    throw new InvalidDataException($"{adapterFile}: '{key}' differs from another tensor saved for '{name}'");
                state[name] = tensor;
            }
            // PEFT's loader keeps the base model's value for a bias the file lacks: its "lora_only" save looks for an
            // adapted layer's bias without the base_layer in its name, so finds none.
            foreach (var (name, parameter) in model.TrainedBackbone())
                if (!state.ContainsKey("roberta." + name))
                    state["roberta." + name] = current["roberta." + name] = parameter.detach().to(ScalarType.Float32).cpu();
            model.LoadTrainableState(state, adapterFile);
        }
        finally
        {
            foreach (var t in tensors.Values) t.Dispose();
            foreach (var t in current.Values) t.Dispose();
        }
    }

    /// <summary>An adapted projection's bias as PEFT saved it before it kept the Linear as base_layer ("…query.bias"),
    /// under this library's name ("…query.base_layer.bias"); other names as they are.</summary>
    private static string BiasName(IReadOnlySet<string> trained, string name)
    {
        if (trained.Contains(name) || !name.EndsWith(".bias", StringComparison.Ordinal)) return name;
        var wrapped = name[..^".bias".Length] + ".base_layer.bias";
        return trained.Contains(wrapped) ? wrapped : name;
    }
}
