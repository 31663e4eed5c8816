using System.Text.Json;
using System.Text.RegularExpressions;
using MlNetPeft.Backbone;
using static TorchSharp.torch;

namespace MlNetPeft.Adapters.Lora;

/// <summary>Reads a HF PEFT LoRA adapter (adapter_model.safetensors) into a model built with <see cref="LoraConfig"/>.</summary>
internal static partial class PeftLoraImport
{
    [GeneratedRegex(@"^roberta\.encoder\.layer\.(\d+)\.(.+)\.(lora_A\.weight|lora_B\.weight|lora_magnitude_vector(\.weight)?)$")]
    private static partial Regex LoraKey();

    /// <summary>Our state name for a PEFT key ("base_model.model." and "modules_to_save." dropped).</summary>
    public static string FromPeftKey(string peftKey)
    {
        var key = peftKey.Replace("base_model.model.", "").Replace("modules_to_save.", "").Replace(".default", "");
        var m = LoraKey().Match(key);
        var target = m.Success ? AdapterTargets.All.FirstOrDefault(t => AdapterTargets.ModulePath(t) == m.Groups[2].Value) : null;
        if (target is null) return key;
        int layer = int.Parse(m.Groups[1].Value);
        var part = AdapterTargets.NamePart(target);
        return m.Groups[3].Value.StartsWith("lora_magnitude_vector", StringComparison.Ordinal)
            ? $"adapters.{LoraConfig.MagnitudeName(layer, part)}.weight" // PEFT saves it without ".weight"
            : $"adapters.{LoraConfig.ComponentName(layer, part)}.{m.Groups[3].Value[..^".weight".Length]}";
    }

    /// <summary>The LoRA settings of a PEFT adapter directory's adapter_config.json (rank, alpha, rsLoRA, DoRA, dropout,
    /// targets).</summary>
    public static LoraConfig ReadConfig(string directory)
    {
        var file = Path.Combine(directory, "adapter_config.json");
        if (!File.Exists(file)) throw new FileNotFoundException($"No PEFT adapter config at {file}", file);
        try
        {
            using var json = JsonDocument.Parse(File.ReadAllText(file));
            var root = json.RootElement;
            if (root.GetProperty("peft_type").GetString() != "LORA") throw new InvalidDataException($"{file}: not a LoRA adapter (peft_type {root.GetProperty("peft_type")})");
            if (root.TryGetProperty("fan_in_fan_out", out var flag) && flag.ValueKind == JsonValueKind.True)
                throw new InvalidDataException($"{file}: fan_in_fan_out is not supported");
            if (root.TryGetProperty("bias", out var bias) && bias.ValueKind == JsonValueKind.String && bias.GetString() != "none")
                throw new InvalidDataException($"{file}: bias \"{bias.GetString()}\" is not supported (the backbone's biases stay frozen: \"none\")");
            if (root.TryGetProperty("layers_pattern", out var pattern) && pattern.ValueKind is not (JsonValueKind.Null or JsonValueKind.Undefined)
                && !(pattern.ValueKind == JsonValueKind.String && pattern.GetString() == "layer")
                && !(pattern.ValueKind == JsonValueKind.Array && pattern.EnumerateArray().Select(p => p.GetString()).SequenceEqual(["layer"])))
                throw new InvalidDataException($"{file}: layers_pattern {pattern} is not RoBERTa's \"layer\"");
            foreach (var unsupported in new[] { "rank_pattern", "alpha_pattern" })
                if (root.TryGetProperty(unsupported, out var value) && value.ValueKind is not (JsonValueKind.Null or JsonValueKind.Undefined)
                    && !(value.ValueKind == JsonValueKind.Object && !value.EnumerateObject().Any()))
                    throw new InvalidDataException($"{file}: {unsupported} is not supported (every adapted layer must have one rank and alpha)");
            var modules = root.GetProperty("target_modules");
            // PEFT applies layers_to_transform to listed names only; a pattern carries its own layers.
            var (targets, layers) = modules.ValueKind == JsonValueKind.String
                ? PeftTargetModules.FromPattern(modules.GetString()!)
                : (PeftTargetModules.FromNames(modules.EnumerateArray().Select(t => t.GetString()!).ToArray()), LayersToTransform(root));
            return new LoraConfig
            {
                Rank = root.GetProperty("r").GetInt32(),
                UseRsLora = root.TryGetProperty("use_rslora", out var rsLora) && rsLora.ValueKind == JsonValueKind.True,
                UseDora = root.TryGetProperty("use_dora", out var dora) && dora.ValueKind == JsonValueKind.True,
                Layers = layers,
                Alpha = root.GetProperty("lora_alpha").GetDouble(),
                Dropout = root.TryGetProperty("lora_dropout", out var dropout) ? dropout.GetDouble() : 0,
                Targets = targets,
            };
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new InvalidDataException($"{file}: not a PEFT LoRA adapter config ({e.Message})", e);
        }
    }

    /// <summary>PEFT's layers_to_transform: one layer index, a list, or null (every layer).</summary>
    private static int[]? LayersToTransform(JsonElement root) =>
        !root.TryGetProperty("layers_to_transform", out var layers) ? null : layers.ValueKind switch
        {
            JsonValueKind.Number => [layers.GetInt32()],
            JsonValueKind.Array when layers.GetArrayLength() > 0 => layers.EnumerateArray().Select(l => l.GetInt32()).ToArray(),
            _ => null, // PEFT reads an empty list as every layer too
        };

    public static void LoadPeftAdapter(this PeftModel model, string adapterFile)
    {
        if (model.Config is not LoraConfig) throw new InvalidOperationException("A PEFT LoRA adapter needs a model built with LoraConfig.");
        var tensors = TensorFile.Load(adapterFile);
        try
        {
            var state = tensors.ToDictionary(kv => FromPeftKey(kv.Key), kv => kv.Value);
            model.LoadTrainableState(state, adapterFile);
        }
        finally { foreach (var t in tensors.Values) t.Dispose(); }
    }
}
