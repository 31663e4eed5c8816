namespace MlNetPeft.Adapters;

/// <summary>
/// The Linears of a RoBERTa block that adapters can wrap (the <c>Targets</c> option): the attention projections by
/// PEFT's short names, the other three by their path inside <c>roberta.encoder.layer.N</c>, so that each name means
/// one matrix. The MSPLoRA paper adapts query and value (the default); the LoRA² and AdaLoRA papers adapt <see cref="All"/>.
/// </summary>
public static class AdapterTargets
{
    public const string Query = "query";
    public const string Key = "key";
    public const string Value = "value";
    /// <summary>W_o, the attention output projection.</summary>
    public const string AttentionOutput = "attention.output.dense";
    /// <summary>W_f1, the feed-forward up-projection (hidden → intermediate).</summary>
    public const string Intermediate = "intermediate.dense";
    /// <summary>W_f2, the feed-forward down-projection (intermediate → hidden).</summary>
    public const string Output = "output.dense";

    /// <summary>Every weight matrix of a block (PEFT's "all-linear" for RoBERTa without the head).</summary>
    public static IReadOnlyList<string> All { get; } = [Query, Key, Value, AttentionOutput, Intermediate, Output];

    internal static bool IsAttentionProjection(string target) => target is Query or Key or Value;

    /// <summary>The module path inside <c>roberta.encoder.layer.N</c>, as HF names it.</summary>
    internal static string ModulePath(string target) => IsAttentionProjection(target) ? "attention.self." + target : target;

    /// <summary>The module's full path in a sequence classifier, as PEFT's keys and patterns see it
    /// ("roberta.encoder.layer.3.attention.self.query").</summary>
    internal static string ModulePath(int layer, string target) => $"roberta.encoder.layer.{layer}.{ModulePath(target)}";

    /// <summary>The target inside component names, which allow letters, digits and '_' only.</summary>
    internal static string NamePart(string target) => target.Replace('.', '_');
}
