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

    private readonly MLContext _ml = new(seed: 1);
    private readonly ITransformer _model;
    private readonly Func<string, float[]> _predict;

    public SentencePredictor(string zip)
    {
        _model = _ml.Model.Load(zip, out _);
        var peft = _model as PeftTextTransformer ?? ((TransformerChain<ITransformer>)_model).OfType<PeftTextTransformer>().Single();
        Info = peft.Info;
        if (Info.Sentence2Column is not null) throw new ArgumentException($"{zip}: a sentence-pair model; the bench scores single sentences");
        _predict = NewEngine();
    }

    /// <summary>Another PredictionEngine over the same model (an engine is not thread-safe, the model is: one engine per
    /// thread, as a service keeps them); it leaves the model to this predictor.</summary>
    public Func<string, float[]> NewEngine() => Info.Task == TaskKind.Classification
        ? NewEngine<ClassScores>(s => s.Score)
        : NewEngine<RegressionScore>(s => [s.Score]);

    private Func<string, float[]> NewEngine<TScore>(Func<TScore, float[]> read) where TScore : class, new()
    {
        var output = SchemaDefinition.Create(typeof(TScore));
        output["Score"].ColumnName = Info.ScoreColumn;
        var engine = _ml.Model.CreatePredictionEngine<TextRow, TScore>(_model,
            new PredictionEngineOptions { InputSchemaDefinition = InputSchema(), OutputSchemaDefinition = output, OwnsTransformer = false });
        return text => read(engine.Predict(new TextRow { Text = text }));
    }

    internal PeftModelInfo Info { get; }

    /// <summary>A sentence row under the model's own column names.</summary>
    private SchemaDefinition InputSchema()
    {
        var input = SchemaDefinition.Create(typeof(TextRow));
        input[nameof(TextRow.Text)].ColumnName = Info.Sentence1Column;
        input[nameof(TextRow.Label)].ColumnName = Info.LabelColumn;
        return input;
    }

    /// <summary>The sentences scored as ML.NET scores a data view: <c>model.Transform(data)</c> read by a cursor (in
    /// batches, see MlNet/BatchScoredDataView); returns how many rows were read.</summary>
    public int ScoreWithTransform(IReadOnlyList<string> sentences)
    {
        var data = _ml.Data.LoadFromEnumerable(sentences.Select(s => new TextRow { Text = s }), InputSchema());
        var scored = _model.Transform(data);
        var score = scored.Schema[Info.ScoreColumn];
        using var cursor = scored.GetRowCursor([score]);
        return Info.Task == TaskKind.Classification ? ReadAll<VBuffer<float>>(cursor, score) : ReadAll<float>(cursor, score);
    }

    /// <summary>Reads <paramref name="column"/> of every row (what makes the rows be scored); returns the row count.</summary>
    private static int ReadAll<T>(DataViewRowCursor cursor, DataViewSchema.Column column)
    {
        var getter = cursor.GetGetter<T>(column);
        T value = default!;
        int rows = 0;
        while (cursor.MoveNext()) { getter(ref value); rows++; }
        return rows;
    }

    public float[] Predict(string sentence) => _predict(sentence);

    /// <summary>SST-2's dev sentences (--data DIR, or the repository's data/).</summary>
    public static List<string> DevSentences(BenchArgs a) =>
        File.ReadLines(Path.Combine(a.Text("data", Path.Combine(BenchArgs.RepositoryRoot(), "data")), "glue", "SST-2", "dev.tsv"))
            .Skip(1).Select(l => l.Split('\t')[0]).ToList();
}
