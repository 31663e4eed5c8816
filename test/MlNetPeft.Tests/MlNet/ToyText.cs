using Microsoft.ML;

namespace MlNetPeft.Tests.MlNet;

/// <summary>A small labelled text set whose label is decided by the words in the text.</summary>
internal static class ToyText
{
    public sealed class Row
    {
        public string Sentence1 { get; set; } = "";
        public string Label { get; set; } = "";
    }

    public sealed class WeightedRow
    {
        public string Sentence1 { get; set; } = "";
        public string Label { get; set; } = "";
        public float Weight { get; set; } = 1;
    }

    /// <summary>The rows with an example weight each (by row index).</summary>
    public static List<WeightedRow> Weighted(IEnumerable<Row> rows, Func<int, float> weight) =>
        rows.Select((r, i) => new WeightedRow { Sentence1 = r.Sentence1, Label = r.Label, Weight = weight(i) }).ToList();

    public sealed class PairRow
    {
        public string Sentence1 { get; set; } = "";
        public string Sentence2 { get; set; } = "";
        public string Label { get; set; } = "";
    }

    public sealed class Prediction
    {
        public float[] Score { get; set; } = [];
        public string PredictedLabel { get; set; } = "";
    }

    private static readonly string[][] Words =
    [
        ["apple", "banana", "cherry", "grape", "melon", "peach"],
        ["zebra", "wolf", "yak", "fox", "owl", "kiwi"],
        ["1234", "5678", "9090", "4711", "3141", "2718"],
    ];

    private static readonly string[] Names = ["fruit", "animal", "number"];

    /// <summary><paramref name="count"/> rows of 3–6 words from one class's word list; the label names the class.</summary>
    public static List<Row> Rows(int count, int seed, int classes = 3)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, count).Select(_ =>
        {
            int c = random.Next(classes);
            var words = Enumerable.Range(0, random.Next(3, 7)).Select(_ => Words[c][random.Next(Words[c].Length)]);
            return new Row { Sentence1 = string.Join(" ", words), Label = Names[c] };
        }).ToList();
    }

    public static IEstimator<ITransformer> KeyLabel(MLContext ml) =>
        ml.Transforms.Conversion.MapValueToKey("Label");

    public static IEstimator<ITransformer> KeyToValue(MLContext ml) =>
        ml.Transforms.Conversion.MapKeyToValue("PredictedLabel");
}
