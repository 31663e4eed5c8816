using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetPeft.MlNet;
using MlNetPeft.Training;

namespace MlNetPeft.Bench;

/// <summary>
/// A saved single-sentence model as a service runs it: one PredictionEngine, one sentence per call, whatever the
/// model's column names; returns the Score (class probabilities, or the one regression value). Also reads the SST-2
/// dev sentences the bench scores.
/// </summary>
internal sealed class SentencePredictor
{
    private sealed class TextRow
    {
        public string Text { get; set; } = "";
        public string Label { get; set; } = ""; // for pipelines that begin with MapValueToKey("Label")
    }

    private sealed class ClassScores { public float[] Score { get; set; } = []; }

    private sealed class RegressionScore { public float Score { get; set; } }

    private readonly Func<string, float[]> _predict;

    public SentencePredictor(string zip)
    {
        var ml = new MLContext(seed: 1);
        var model = ml.Model.Load(zip, out _);
        var peft = model as PeftTextTransformer ?? ((TransformerChain<ITransformer>)model).OfType<PeftTextTransformer>().Single();
        Info = peft.Info;
        if (Info.Sentence2Column is not null) throw new ArgumentException($"{zip}: a sentence-pair model; the bench scores single sentences");
        var input = SchemaDefinition.Create(typeof(TextRow));
        input[nameof(TextRow.Text)].ColumnName = Info.Sentence1Column;
        input[nameof(TextRow.Label)].ColumnName = Info.LabelColumn;
        if (Info.Task == TaskKind.Classification)
        {
            var output = SchemaDefinition.Create(typeof(ClassScores));
            output[nameof(ClassScores.Score)].ColumnName = Info.ScoreColumn;
            var engine = ml.Model.CreatePredictionEngine<TextRow, ClassScores>(model, inputSchemaDefinition: input, outputSchemaDefinition: output);
            _predict = text => engine.Predict(new TextRow { Text = text }).Score;
        }
        else
        {
            var output = SchemaDefinition.Create(typeof(RegressionScore));
            output[nameof(RegressionScore.Score)].ColumnName = Info.ScoreColumn;
            var engine = ml.Model.CreatePredictionEngine<TextRow, RegressionScore>(model, inputSchemaDefinition: input, outputSchemaDefinition: output);
            _predict = text => [engine.Predict(new TextRow { Text = text }).Score];
        }
    }

    internal PeftModelInfo Info { get; }

    public float[] Predict(string sentence) => _predict(sentence);

    /// <summary>SST-2's dev sentences (--data DIR, or the repository's data/).</summary>
    public static List<string> DevSentences(BenchArgs a) =>
        File.ReadLines(Path.Combine(a.Text("data", Path.Combine(BenchArgs.RepositoryRoot(), "data")), "glue", "SST-2", "dev.tsv"))
            .Skip(1).Select(l => l.Split('\t')[0]).ToList();
}
