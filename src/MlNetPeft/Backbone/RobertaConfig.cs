using System.Text.Json;
using System.Text.Json.Serialization;

namespace MlNetPeft.Backbone;

/// <summary>The fields of a HuggingFace RoBERTa <c>config.json</c> that the encoder needs.</summary>
public sealed record RobertaConfig
{
    [JsonPropertyName("vocab_size")] public int VocabSize { get; init; } = 50265;
    [JsonPropertyName("hidden_size")] public int HiddenSize { get; init; } = 768;
    [JsonPropertyName("num_hidden_layers")] public int NumHiddenLayers { get; init; } = 12;
    [JsonPropertyName("num_attention_heads")] public int NumAttentionHeads { get; init; } = 12;
    [JsonPropertyName("intermediate_size")] public int IntermediateSize { get; init; } = 3072;
    [JsonPropertyName("hidden_act")] public string HiddenAct { get; init; } = "gelu";
    [JsonPropertyName("hidden_dropout_prob")] public double HiddenDropoutProb { get; init; } = 0.1;
    [JsonPropertyName("attention_probs_dropout_prob")] public double AttentionProbsDropoutProb { get; init; } = 0.1;
    [JsonPropertyName("classifier_dropout")] public double? ClassifierDropout { get; init; }
    [JsonPropertyName("max_position_embeddings")] public int MaxPositionEmbeddings { get; init; } = 514;
    [JsonPropertyName("type_vocab_size")] public int TypeVocabSize { get; init; } = 1;
    [JsonPropertyName("layer_norm_eps")] public double LayerNormEps { get; init; } = 1e-5;
    [JsonPropertyName("pad_token_id")] public int PadTokenId { get; init; } = 1;
    [JsonPropertyName("bos_token_id")] public int BosTokenId { get; init; } = 0;
    [JsonPropertyName("eos_token_id")] public int EosTokenId { get; init; } = 2;
    [JsonPropertyName("model_type")] public string ModelType { get; init; } = "roberta";
    // Read only to refuse what this encoder does not implement, rather than give other numbers than transformers.
    [JsonPropertyName("position_embedding_type")] public string PositionEmbeddingType { get; init; } = "absolute";
    [JsonPropertyName("is_decoder")] public bool IsDecoder { get; init; }

    /// <summary>Longest input the position table allows: RoBERTa positions start after the padding index.</summary>
    [JsonIgnore] public int MaxSequenceLength => MaxPositionEmbeddings - PadTokenId - 1;

    public static RobertaConfig FromJson(string json, string source)
    {
        RobertaConfig? config;
        try { config = JsonSerializer.Deserialize<RobertaConfig>(json); }
        catch (JsonException e) { throw new InvalidDataException($"{source}: not a valid RoBERTa config.json ({e.Message})", e); }
        if (config is null) throw new InvalidDataException($"{source}: empty config.json");
        config.Validate(source);
        return config;
    }

    public static RobertaConfig Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"RoBERTa config not found: {path}", path);
        return FromJson(File.ReadAllText(path), path);
    }

    public string ToJson() => JsonSerializer.Serialize(this);

    private void Validate(string source)
    {
        if (ModelType is not ("roberta" or "xlm-roberta"))
            throw new InvalidDataException($"{source}: model_type '{ModelType}' is not a RoBERTa model");
        if (HiddenSize <= 0 || NumAttentionHeads <= 0 || HiddenSize % NumAttentionHeads != 0)
            throw new InvalidDataException($"{source}: hidden_size {HiddenSize} is not a multiple of num_attention_heads {NumAttentionHeads}");
        if (NumHiddenLayers <= 0 || IntermediateSize <= 0 || VocabSize <= 0 || MaxPositionEmbeddings <= PadTokenId + 1)
            throw new InvalidDataException($"{source}: layer, vocabulary or position sizes are not positive");
        if (HiddenDropoutProb is not (>= 0 and < 1) || AttentionProbsDropoutProb is not (>= 0 and < 1) || ClassifierDropout is not (null or (>= 0 and < 1)))
            throw new InvalidDataException($"{source}: hidden_dropout_prob, attention_probs_dropout_prob and classifier_dropout must be in [0, 1), " +
                $"got {HiddenDropoutProb}, {AttentionProbsDropoutProb} and {ClassifierDropout?.ToString() ?? "null"}");
        if (LayerNormEps is not (> 0 and < 1))
            throw new InvalidDataException($"{source}: layer_norm_eps must be a small positive number, got {LayerNormEps}");
        if (HiddenActivation.Refusal(HiddenAct) is { } refusal)
            throw new InvalidDataException($"{source}: {refusal}");
        if (PositionEmbeddingType != "absolute")
            throw new InvalidDataException($"{source}: position_embedding_type '{PositionEmbeddingType}' is not supported (only 'absolute')");
        if (IsDecoder)
            throw new InvalidDataException($"{source}: is_decoder is true: a causal decoder, not the bidirectional encoder a classifier needs");
    }
}
