using System.Diagnostics;
using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetPeft.MlNet;
using MlNetPeft.Training;

namespace MlNetPeft.Bench;

/// <summary>
/// What a service sees: one PredictionEngine scoring one sentence per call from a saved model zip (tokenizing,
/// ML.NET's row plumbing and the merged forward), over SST-2 dev sentences; prints latency percentiles.
/// </summary>
internal static class LatencyBenchmark
{
    private sealed class TextRow
    {
        public string Text { get; set; } = "";
        public string Label { get; set; } = ""; // for pipelines that begin with MapValueToKey("Label")
    }

    private sealed class ClassScores { public float[] Score { get; set; } = []; }

    private sealed class RegressionScore { public float Score { get; set; } }

    public static int Run(BenchArgs a)
    {
        var zip = a.Text("model") ?? throw new ArgumentException("latency needs --model ZIP (e.g. the Sentiment example's model)");
        if (a.Text("precision", "fp32") == "bf16") LoadSettings.Precision = ComputePrecision.BFloat16;
        int rows = a.Int("rows", 400), warmUp = a.Int("warm-up", 50);
        var devFile = Path.Combine(a.Text("data", Path.Combine(BenchArgs.RepositoryRoot(), "data")), "glue", "SST-2", "dev.tsv");
        var sentences = File.ReadLines(devFile).Skip(1).Select(l => l.Split('\t')[0]).ToList();

        var ml = new MLContext(seed: 1);
        var model = ml.Model.Load(zip, out _);
        var peft = model as PeftTextTransformer ?? ((TransformerChain<ITransformer>)model).OfType<PeftTextTransformer>().Single();
        var info = peft.Info;
        if (info.Sentence2Column is not null) throw new ArgumentException($"{zip}: a sentence-pair model; latency scores single sentences");
        var input = SchemaDefinition.Create(typeof(TextRow));
        input[nameof(TextRow.Text)].ColumnName = info.Sentence1Column;
        input[nameof(TextRow.Label)].ColumnName = info.LabelColumn;
        Func<TextRow, object> predict;
        if (info.Task == TaskKind.Classification)
        {
            var output = SchemaDefinition.Create(typeof(ClassScores));
            output[nameof(ClassScores.Score)].ColumnName = info.ScoreColumn;
            var engine = ml.Model.CreatePredictionEngine<TextRow, ClassScores>(model, inputSchemaDefinition: input, outputSchemaDefinition: output);
            predict = engine.Predict;
        }
        else
        {
            var output = SchemaDefinition.Create(typeof(RegressionScore));
            output[nameof(RegressionScore.Score)].ColumnName = info.ScoreColumn;
            var engine = ml.Model.CreatePredictionEngine<TextRow, RegressionScore>(model, inputSchemaDefinition: input, outputSchemaDefinition: output);
            predict = engine.Predict;
        }

        foreach (var sentence in sentences.Take(warmUp)) predict(new TextRow { Text = sentence });
        var times = new List<double>();
        foreach (var sentence in sentences.Skip(warmUp).Take(rows))
        {
            var clock = Stopwatch.StartNew();
            predict(new TextRow { Text = sentence });
            times.Add(clock.Elapsed.TotalMilliseconds);
        }
        times.Sort();
        double Percentile(double p) => times[Math.Min(times.Count - 1, (int)(p * times.Count))];
        Console.WriteLine($"{Path.GetFileName(zip)} ({info.Adapter.MethodName}, {LoadSettings.Precision}): {times.Count} single-sentence predictions, " +
            $"p50 {Percentile(0.5):F2} ms, p90 {Percentile(0.9):F2} ms, p99 {Percentile(0.99):F2} ms, mean {times.Average():F2} ms");
        return 0;
    }
}
