namespace MlNetPeft.Training;

/// <summary>One tokenized training or validation row: model input ids, target (class index or value) and the row's
/// weight in the loss (ML.NET's example weight; 1 without a weight column).</summary>
internal readonly record struct Example(int[] Ids, float Label, long Row, float Weight = 1);

internal static class Examples
{
    /// <summary>Each example's weight times rows / (classes × rows of its class), as scikit-learn's "balanced" class
    /// weights (rows counted, not weighed; with example weights it multiplies them, as scikit-learn does).</summary>
    public static List<Example> BalanceClasses(IReadOnlyList<Example> examples)
    {
        var counts = examples.GroupBy(e => e.Label).ToDictionary(g => g.Key, g => g.Count());
        double share = (double)examples.Count / counts.Count;
        return examples.Select(e => e with { Weight = (float)(e.Weight * share / counts[e.Label]) }).ToList();
    }
}
