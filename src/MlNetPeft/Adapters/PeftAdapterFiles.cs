using System.Text.Json;
using System.Text.RegularExpressions;
using MlNetPeft.Adapters.Lora;
using MlNetPeft.Adapters.LoraSquared;
using MlNetPeft.Backbone;
using static TorchSharp.torch;

namespace MlNetPeft.Adapters;

/// <summary>
/// What LoRA and AdaLoRA adapters saved by HF PEFT share: adapter_config.json's common settings (checked, with the
/// file named in every refusal) and the state keys, "base_model.model.roberta.encoder.layer.N.&lt;module&gt;.lora_X[.weight]"
/// and "base_model.model.classifier.*"; and how both are written.
/// </summary>
internal static partial class PeftAdapterFiles
{
    public const string ConfigFile = "adapter_config.json";

    /// <summary>The PEFT methods we read, by peft_type: their name and the option that starts from one.</summary>
    private static readonly Dictionary<string, (string Name, string Option)> Methods = new()
    {
        ["LORA"] = ("LoRA", "LoraOptions.InitialPeftAdapter"),
        ["ADALORA"] = ("AdaLoRA", "AdaLoraOptions.InitialPeftAdapter"),
    };

    /// <summary>The settings every supported PEFT adapter shares: its targets, the layers they are in (null: all), and
    /// which biases trained.</summary>
    public sealed record Common(string[] Targets, int[]? Layers, LoraBias Bias);

    /// <summary>PEFT's names of its bias settings, read and written.</summary>
    private static readonly Dictionary<LoraBias, string> BiasNames = new()
    {
        [LoraBias.None] = "none", [LoraBias.All] = "all", [LoraBias.LoraOnly] = "lora_only",
    };

    /// <summary>
    /// Reads <paramref name="directory"/>'s adapter_config.json, refuses settings we cannot reproduce, and builds the
    /// method's config from it. An adapter of another PEFT method is refused naming the option that takes it.
    /// </summary>
    public static T ReadConfig<T>(string directory, string peftType, Func<JsonElement, Common, string, T> build)
    {
        var file = Path.Combine(directory, ConfigFile);
        if (!File.Exists(file)) throw new FileNotFoundException($"No PEFT adapter config at {file}", file);
        try
        {
            using var json = JsonDocument.Parse(File.ReadAllText(file));
            var root = json.RootElement;
            var type = root.GetProperty("peft_type").GetString();
            if (type != peftType)
                throw new InvalidDataException($"{file}: a {type} adapter, not {peftType}"
                    + (type is not null && Methods.TryGetValue(type, out var other) ? $" (a PEFT {other.Name} adapter goes to {other.Option})" : ""));
            foreach (var setting in Unsupported)
                if (root.TryGetProperty(setting, out var value) && IsSet(value))
                    throw new InvalidDataException($"{file}: {setting} {value} is not supported");
            if (root.TryGetProperty("init_lora_weights", out var init) && init.ValueKind == JsonValueKind.String
                && ResidualInits.FirstOrDefault(init.GetString()!.ToLowerInvariant().StartsWith) is { } residual)
                throw new InvalidDataException($"{file}: init_lora_weights \"{init.GetString()}\" trains against {residual}'s changed base weights, so this adapter does not "
                    + "apply to the checkpoint itself; save it from PEFT with path_initial_model_for_weight_conversion (a plain LoRA of the original weights)");
            var bias = ReadBias(root, file);
            if (root.TryGetProperty("layers_pattern", out var pattern) && pattern.ValueKind is not (JsonValueKind.Null or JsonValueKind.Undefined)
                && !(pattern.ValueKind == JsonValueKind.String && pattern.GetString() == "layer")
                && !(pattern.ValueKind == JsonValueKind.Array && pattern.EnumerateArray().Select(p => p.GetString()).SequenceEqual(["layer"])))
                throw new InvalidDataException($"{file}: layers_pattern {pattern} is not RoBERTa's \"layer\"");
            var modules = root.GetProperty("target_modules");
            // PEFT applies layers_to_transform to listed names only; a pattern carries its own layers.
            var (targets, layers) = modules.ValueKind == JsonValueKind.String
                ? PeftTargetModules.FromPattern(modules.GetString()!)
                : (PeftTargetModules.FromNames(modules.EnumerateArray().Select(t => t.GetString()!).ToArray()), LayersToTransform(root));
            return build(root, new Common(targets, layers, bias), file);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new InvalidDataException($"{file}: not a PEFT {Methods[peftType].Name} adapter config ({e.Message})", e);
        }
    }

    /// <summary>The bias setting (absent or null: "none"); a name PEFT does not have is refused.</summary>
    private static LoraBias ReadBias(JsonElement root, string file)
    {
        if (!root.TryGetProperty("bias", out var value) || value.ValueKind == JsonValueKind.Null) return LoraBias.None;
        foreach (var (bias, name) in BiasNames)
            if (name == value.GetString()) return bias;
        throw new InvalidDataException($"{file}: bias \"{value.GetString()}\" is not one of PEFT's {string.Join(", ", BiasNames.Values.Select(n => $"\"{n}\""))}");
    }

    /// <summary>Settings of PEFT's LoraConfig (AdaLoRA's extends it) that change what an adapter computes and that we do
    /// not reproduce: an adapter with any of them set is refused rather than read wrong. (Settings of initialisation or
    /// of the backward only, such as eva_config or velora_config, leave the saved adapter's meaning alone.)</summary>
    private static readonly string[] Unsupported =
    [
        "fan_in_fan_out", "lora_bias", "exclude_modules", "layer_replication", "target_parameters", "trainable_token_indices",
        "use_qalora", "alora_invocation_tokens", "monteclora_config", "use_bdlora", "arrow_config", "kasa_config",
    ];

    /// <summary>init_lora_weights whose initialisation also changes the base weights (PiSSA, CorDA, OLoRA, LoRA-GA subtract
    /// the initial update from them, LoftQ quantizes them): their adapters belong to that changed base.</summary>
    private static readonly string[] ResidualInits = ["pissa", "corda", "olora", "lora_ga", "loftq"];

    /// <summary>Whether a setting is on: not null, false, 0 or empty.</summary>
    private static bool IsSet(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.Null or JsonValueKind.Undefined or JsonValueKind.False => false,
        JsonValueKind.Array => value.GetArrayLength() > 0,
        JsonValueKind.Object => value.EnumerateObject().Any(),
        JsonValueKind.String => value.GetString()!.Length > 0,
        JsonValueKind.Number => value.GetDouble() != 0,
        _ => true,
    };

    /// <summary>PEFT's layers_to_transform: one layer index, a list, or null (every layer).</summary>
    private static int[]? LayersToTransform(JsonElement root) =>
        !root.TryGetProperty("layers_to_transform", out var layers) ? null : layers.ValueKind switch
        {
            JsonValueKind.Number => [layers.GetInt32()],
            JsonValueKind.Array when layers.GetArrayLength() > 0 => layers.EnumerateArray().Select(l => l.GetInt32()).ToArray(),
            _ => null, // PEFT reads an empty list as every layer too
        };

    [GeneratedRegex(@"^roberta\.encoder\.layer\.(\d+)\.(.+)\.(lora_[A-Za-z_]+(?:\.weight)?)$")]
    private static partial Regex AdapterKey();

    /// <summary>A PEFT state key without "base_model.model.", "modules_to_save." and the adapter name ".default" (a head
    /// saved under both forms then gives one name twice).</summary>
    public static string Normalize(string peftKey) =>
        peftKey.Replace("base_model.model.", "").Replace("modules_to_save.", "").Replace(".default", "");

    /// <summary>For a normalized key of an adapter tensor on one of a block's projections: its layer, target and tensor
    /// name ("lora_A.weight", "lora_E", ...).</summary>
    public static bool TryParseAdapterKey(string key, out int layer, out string target, out string tensor)
    {
        var m = AdapterKey().Match(key);
        var found = m.Success ? AdapterTargets.All.FirstOrDefault(t => AdapterTargets.ModulePath(t) == m.Groups[2].Value) : null;
        (layer, target, tensor) = found is null ? (-1, "", "") : (int.Parse(m.Groups[1].Value), found, m.Groups[3].Value);
        return found is not null;
    }

    /// <summary>Loads the adapters and head of a PEFT adapter directory into <paramref name="model"/>, built with the
    /// settings its adapter_config.json gives (PeftLoraImport.ReadConfig, PeftAdaLoraImport.ReadConfig).</summary>
    public static void LoadPeftAdapter(this PeftModel model, string directory)
    {
        switch (model.Config)
        {
            case LoraConfig: PeftLoraImport.Load(model, directory); break;
            case SvdConfig { Variant: SvdVariant.AdaLora }: PeftAdaLoraImport.Load(model, directory); break;
            default: throw new InvalidOperationException($"a PEFT adapter loads into a LoRA or AdaLoRA model, not {model.Config.MethodName}");
        }
    }

    /// <summary>The adapter's tensor file in <paramref name="directory"/>: adapter_model.safetensors, else .bin.</summary>
    public static string TensorFile(string directory) =>
        Backbone.TensorFile.Find(directory, "adapter_model.safetensors", "adapter_model.bin")
        ?? throw new FileNotFoundException($"PEFT adapter directory {directory} lacks adapter_model.safetensors (or adapter_model.bin)");

    /// <summary>The prefix of every key PEFT saves for a sequence classifier.</summary>
    public const string KeyPrefix = "base_model.model.";

    /// <summary>
    /// Writes a PEFT adapter directory: <paramref name="adapters"/> (keyed by module path and tensor name), the
    /// model's head as PEFT saves its modules_to_save and its trained biases under the names of PEFT's model
    /// ("…query.base_layer.bias", which PEFT's loader puts into its model), in fp32 on the CPU, and adapter_config.json
    /// with the settings every exported method shares (bias among them) and the method's own <paramref name="settings"/>.
    /// </summary>
    public static void Write(PeftModel model, string directory, string? baseModel, string peftType,
        IReadOnlyDictionary<string, Tensor> adapters, object? targetModules, IReadOnlyDictionary<string, object?> settings)
    {
        using var scope = NewDisposeScope();
        var tensors = adapters.ToDictionary(a => KeyPrefix + a.Key, a => Float32(a.Value));
        foreach (var (name, parameter) in model.Network.Head.named_parameters())
            tensors[$"{KeyPrefix}classifier.{name}"] = Float32(parameter);
        if (model.Config.Bias != LoraBias.None) // a bias's fp32 master where the backbone is bf16 or fp16
            foreach (var (name, bias) in model.TrainedBackboneState()) tensors[KeyPrefix + name] = Float32(bias);
        var config = new Dictionary<string, object?>
        {
            ["peft_type"] = peftType,
            ["task_type"] = "SEQ_CLS",
            ["base_model_name_or_path"] = baseModel,
            ["lora_dropout"] = model.Config.Dropout,
            ["target_modules"] = targetModules,
            ["modules_to_save"] = new[] { "classifier", "score" },
            ["bias"] = BiasNames[model.Config.Bias],
            ["fan_in_fan_out"] = false,
            ["init_lora_weights"] = true,
            ["inference_mode"] = true,
        };
        foreach (var (key, value) in settings) config[key] = value;
        using var files = new StagedFiles(directory);
        files.Write("adapter_model.safetensors", file => SafeTensors.Write(file, tensors, new Dictionary<string, string> { ["format"] = "pt" }));
        files.Write(ConfigFile, JsonSerializer.SerializeToUtf8Bytes(config.OrderBy(c => c.Key, StringComparer.Ordinal).ToDictionary(),
            new JsonSerializerOptions { WriteIndented = true }));
        files.Commit();
    }

    private static Tensor Float32(Tensor t) => t.detach().to(ScalarType.Float32).cpu();
}
