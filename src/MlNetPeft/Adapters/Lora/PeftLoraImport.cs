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
        var part = AdapterTargets.NamePart(target);
        return tensor.StartsWith("lora_magnitude_vector", StringComparison.Ordinal)
            ? $"adapters.{LoraConfig.MagnitudeName(layer, part)}.weight" // PEFT saves it without ".weight"
            : $"adapters.{LoraConfig.ComponentName(layer, part)}.{tensor.Replace(".weight", "")}";
    }

    /// <summary>The LoRA settings of a PEFT adapter directory's adapter_config.json (rank, alpha, rsLoRA, DoRA, dropout,
    /// targets).</summary>
    public static LoraConfig ReadConfig(string directory) => PeftAdapterFiles.ReadConfig(directory, "LORA", (root, common, file) =>
    {
        foreach (var unsupported in new[] { "rank_pattern", "alpha_pattern" })
            if (root.TryGetProperty(unsupported, out var value) && value.ValueKind is not (JsonValueKind.Null or JsonValueKind.Undefined)
                && !(value.ValueKind == JsonValueKind.Object && !value.EnumerateObject().Any()))
                throw new InvalidDataException($"{file}: {unsupported} is not supported (every adapted layer must have one rank and alpha)");
        return new LoraConfig
        {
            Rank = root.GetProperty("r").GetInt32(),
            UseRsLora = root.TryGetProperty("use_rslora", out var rsLora) && rsLora.ValueKind == JsonValueKind.True,
            UseDora = root.TryGetProperty("use_dora", out var dora) && dora.ValueKind == JsonValueKind.True,
            Layers = common.Layers,
            Alpha = root.GetProperty("lora_alpha").GetDouble(),
            Dropout = root.TryGetProperty("lora_dropout", out var dropout) ? dropout.GetDouble() : 0,
            Targets = common.Targets,
        };
    });

    /// <summary>Loads the adapter and head of <paramref name="directory"/> into <paramref name="model"/>, built with
    /// <see cref="ReadConfig"/>'s settings.</summary>
    public static void Load(PeftModel model, string directory)
    {
        var adapterFile = PeftAdapterFiles.TensorFile(directory);
        var tensors = TensorFile.Load(adapterFile);
        try
        {
            var state = tensors.ToDictionary(kv => FromPeftKey(kv.Key), kv => kv.Value);
            model.LoadTrainableState(state, adapterFile);
        }
        finally { foreach (var t in tensors.Values) t.Dispose(); }
    }
}
