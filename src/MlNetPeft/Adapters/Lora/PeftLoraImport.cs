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
    public static LoraConfig ReadConfig(string directory) => PeftAdapterFiles.ReadConfig(directory, "LORA", (root, common, _) => new LoraConfig
    {
        Bias = common.Bias,
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
        using var scope = NewDisposeScope(); // all read or made here is temporary: LoadTrainableState copies it
        var state = new PeftAdapterState(model, adapterFile);
        foreach (var (key, tensor) in TensorFile.Load(adapterFile)) state.Add(key, FromPeftKey(key), tensor);
        state.LoadInto();
    }
}
