using System.Text.Json;
using System.Text.Json.Serialization;
using MlNetPeft.Adapters;
using MlNetPeft.Backbone;
using MlNetPeft.Training;

namespace MlNetPeft.MlNet;

/// <summary>Everything a saved model needs besides tensors, stored as one JSON string in the zip.</summary>
internal sealed record PeftModelInfo
{
    public required TaskKind Task { get; init; }
    public required int Outputs { get; init; }
    public required string Sentence1Column { get; init; }
    public string? Sentence2Column { get; init; }
    public required string LabelColumn { get; init; }
    public required string ScoreColumn { get; init; }
    public required string PredictedLabelColumn { get; init; }
    /// <summary>Binary classification on a Boolean label: two logits inside, as HF's binary heads have; ML.NET's binary
    /// columns outside (Score, the log-odds of true; Probability; a Boolean PredictedLabel).</summary>
    public bool Binary { get; init; }
    public string ProbabilityColumn { get; init; } = "Probability";
    public required int MaxSequenceLength { get; init; }
    public required AdapterConfig Adapter { get; init; }
    public required RobertaConfig Backbone { get; init; }
    /// <summary>Directory the backbone was loaded from when training (first place looked at on load).</summary>
    public required string BackbonePath { get; init; }
    /// <summary>SHA-256 of the backbone's weights file (model.safetensors or pytorch_model.bin): the model only loads on these exact weights.</summary>
    public required string BackboneSha256 { get; init; }
    public bool MergeAdapters { get; init; } = true;
    /// <summary>The optimizer steps the training run that made the model was scheduled for (null: it did not train
    /// here); an AdaLoRA model's PEFT export gives them as its schedule.</summary>
    public int? TrainingSteps { get; init; }

    /// <summary>The columns the transformer adds, in schema order: Score, then Probability for binary classification,
    /// then PredictedLabel for classification.</summary>
    [JsonIgnore]
    public IReadOnlyList<string> OutputColumnNames =>
        Task == TaskKind.Regression ? [ScoreColumn] : Binary ? [ScoreColumn, ProbabilityColumn, PredictedLabelColumn] : [ScoreColumn, PredictedLabelColumn];

    private static readonly JsonSerializerOptions Json = new() { Converters = { new JsonStringEnumConverter() } };

    public string ToJson() => JsonSerializer.Serialize(this, Json);

    public static PeftModelInfo FromJson(string json) =>
        JsonSerializer.Deserialize<PeftModelInfo>(json, Json) ?? throw new InvalidDataException("empty model description");
}
