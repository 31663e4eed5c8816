using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetPeft.Training;

namespace MlNetPeft.Glue;

/// <summary>
/// One GLUE task in the original tsv release (glue_data/&lt;TASK&gt;/train.tsv, dev.tsv): which columns hold the
/// text and the label, and the metric the papers report. <see cref="Load"/> reads a split with ML.NET's text
/// loader as columns Sentence1, Sentence2 (pairs only) and Label (text, or Single for STS-B).
/// </summary>
public sealed record GlueTask(
    string Name, string Folder, bool HasHeader, int Sentence1Column, int? Sentence2Column, int LabelColumn,
    bool IsRegression, ValidationMetric Metric)
{
    public static readonly GlueTask Sst2 = new("sst2", "SST-2", true, 0, null, 1, false, ValidationMetric.Accuracy);
    public static readonly GlueTask Mrpc = new("mrpc", "MRPC", true, 3, 4, 0, false, ValidationMetric.Accuracy);
    public static readonly GlueTask Cola = new("cola", "CoLA", false, 3, null, 1, false, ValidationMetric.MatthewsCorrelation);
    public static readonly GlueTask Stsb = new("stsb", "STS-B", true, 7, 8, 9, true, ValidationMetric.Pearson);
    public static readonly GlueTask Rte = new("rte", "RTE", true, 1, 2, 3, false, ValidationMetric.Accuracy);
    public static readonly GlueTask Qnli = new("qnli", "QNLI", true, 1, 2, 3, false, ValidationMetric.Accuracy);

    /// <summary>The six tasks of the MSPLoRA paper's Table 1.</summary>
    public static IReadOnlyList<GlueTask> All { get; } = [Sst2, Mrpc, Cola, Qnli, Rte, Stsb];

    public static GlueTask Get(string name) => All.FirstOrDefault(t => t.Name.Equals(name, StringComparison.OrdinalIgnoreCase))
        ?? throw new ArgumentException($"unknown GLUE task '{name}' (one of {string.Join(", ", All.Select(t => t.Name))})");

    public bool IsPair => Sentence2Column is not null;

    /// <summary>QNLI's train split is not available: train on the first 80% of its dev.tsv, score on the rest.</summary>
    public const double QnliTrainFraction = 0.8;

    /// <summary>Reads "train" or "dev" from <paramref name="glueDirectory"/> (the folder holding SST-2/, MRPC/, ...).</summary>
    public IDataView Load(MLContext ml, string glueDirectory, string split)
    {
        if (split is not ("train" or "dev")) throw new ArgumentException($"split must be 'train' or 'dev', got '{split}'");
        var path = Path.Combine(glueDirectory, Folder, (this == Qnli ? "dev" : split) + ".tsv");
        if (!File.Exists(path)) throw new FileNotFoundException($"GLUE {Name} file not found: {path}", path);
        var columns = new List<TextLoader.Column> { new("Sentence1", DataKind.String, Sentence1Column) };
        if (Sentence2Column is { } s2) columns.Add(new("Sentence2", DataKind.String, s2));
        columns.Add(new("Label", IsRegression ? DataKind.Single : DataKind.String, LabelColumn));
        var data = ml.Data.CreateTextLoader(new TextLoader.Options
        {
            Columns = [.. columns], HasHeader = HasHeader, Separators = ['\t'],
            AllowQuoting = false, // GLUE text has bare quotes that are not field delimiters
        }).Load(path);
        if (this != Qnli) return data;
        long rows = data.GetColumn<ReadOnlyMemory<char>>("Sentence1").LongCount();
        var cut = (long)(rows * QnliTrainFraction);
        return split == "train" ? ml.Data.TakeRows(data, cut) : ml.Data.SkipRows(data, cut);
    }
}
