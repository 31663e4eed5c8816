using System.Text.Json;
using System.Text.Json.Serialization;
using MlNetPeft.Adapters.Full;
using MlNetPeft.Adapters.Lora;
using MlNetPeft.Adapters.LoraSquared;
using MlNetPeft.Adapters.Msplora;
using MlNetPeft.Backbone;
using MlNetPeft.Training;

namespace MlNetPeft.Adapters;

/// <summary>
/// What an adapter method needs to rebuild its adapters: saved as JSON in the model zip. A new method is a
/// subclass in its own folder plus one <see cref="JsonDerivedTypeAttribute"/> line here.
/// </summary>
[JsonPolymorphic(TypeDiscriminatorPropertyName = "method")]
[JsonDerivedType(typeof(LoraConfig), "lora")]
[JsonDerivedType(typeof(MsploraConfig), "msplora")]
[JsonDerivedType(typeof(SvdConfig), "svd")]
[JsonDerivedType(typeof(FullFineTuningConfig), "full")]
public abstract record AdapterConfig
{
    /// <summary>Projections of every block that get adapters: any of <see cref="AdapterTargets.All"/>.</summary>
    public string[] Targets { get; init; } = ["query", "value"];

    /// <summary>LoRA alpha: each component is scaled by alpha / its rank.</summary>
    public double Alpha { get; init; } = 16;

    /// <summary>Dropout on the adapter input during training.</summary>
    public double Dropout { get; init; } = 0.05;

    /// <summary>Method name as reported ("lora", "msplora", "lorasquared", "adalora", "full").</summary>
    [JsonIgnore] public abstract string MethodName { get; }

    /// <summary>True when the updates are LoRA pairs B·A, B on the output side (what LoRA+ speeds up).</summary>
    internal virtual bool HasLoraPairs => false;

    /// <summary>True when every backbone weight trains (full fine-tuning): the saved model then holds the backbone.</summary>
    internal virtual bool TrainsBackbone => false;

    /// <summary>PEFT's bias: which of the backbone's biases train with the adapters (fp32 masters where the backbone is
    /// bf16 or fp16); the saved model holds them. Every adapter method takes it from its options (PEFT's LoRA and AdaLoRA
    /// configs have it).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)] // configs saved before it read and write the same
    public LoraBias Bias { get; init; }

    /// <summary>Whether a backbone parameter, named as in the encoder ("encoder.layer.0.attention.self.query.base_layer.bias"
    /// once adapted), trains: all of them in full fine-tuning, else the biases <see cref="Bias"/> names. PEFT marks every
    /// parameter whose name holds "bias" ("all") or the adapted layers' own ("lora_only"), whose Linear it keeps as
    /// base_layer, as this library does.</summary>
    internal bool TrainsBackboneParameter(string name) => TrainsBackbone || Bias switch
    {
        LoraBias.All => name.Contains("bias", StringComparison.Ordinal),
        LoraBias.LoraOnly => name.EndsWith(".base_layer.bias", StringComparison.Ordinal),
        _ => false,
    };

    /// <summary>Creates the adapters and wraps the target projections of <paramref name="encoder"/>.</summary>
    internal abstract AdapterSet Attach(RobertaModel encoder);

    /// <summary>Extras for the training loop (a regulariser, pruning), or null; <paramref name="totalSteps"/> is the
    /// number of optimizer steps the run will take.</summary>
    internal virtual ITrainingHooks? CreateHooks(AdapterSet adapters, int totalSteps) => null;

    /// <summary>Throws <see cref="ArgumentException"/> naming the bad option.</summary>
    public virtual void Validate(int layers)
    {
        if (Targets is null || Targets.Length == 0) throw new ArgumentException("Targets: at least one projection is required");
        foreach (var t in Targets)
            if (!AdapterTargets.All.Contains(t))
                throw new ArgumentException($"Targets: '{t}' is not a projection of a block ({string.Join(", ", AdapterTargets.All)})");
        if (Targets.Distinct().Count() != Targets.Length) throw new ArgumentException("Targets: a projection is listed twice");
        if (Alpha is not (> 0 and < double.PositiveInfinity)) throw new ArgumentException($"Alpha must be positive, got {Alpha}");
        if (Dropout is not (>= 0 and < 1)) throw new ArgumentException($"Dropout must be in [0, 1), got {Dropout}");
        if (!Enum.IsDefined(Bias)) throw new ArgumentException($"Bias must be None, All or LoraOnly, got {(int)Bias}");
    }

    public string ToJson() => JsonSerializer.Serialize(this);

    public static AdapterConfig FromJson(string json) =>
        JsonSerializer.Deserialize<AdapterConfig>(json) ?? throw new InvalidDataException("empty adapter config");
}
