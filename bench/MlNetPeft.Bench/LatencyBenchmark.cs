using System.Diagnostics;
using System.Text.Json;
using MlNetPeft.MlNet;
using MlNetPeft.Training;

namespace MlNetPeft.Bench;

/// <summary>
/// What a service sees: one PredictionEngine scoring one sentence per call from a saved model zip (tokenizing,
/// ML.NET's row plumbing and the merged forward), over SST-2 dev sentences; prints latency percentiles. The `score`
/// command writes those sentences' scores instead, for bench/check_python_scores.py.
/// </summary>
internal static class LatencyBenchmark
{
    public static int Run(BenchArgs a)
    {
        var zip = a.Text("model") ?? throw new ArgumentException("latency needs --model ZIP (e.g. the Sentiment example's model)");
        if (a.Precision() is { } precision) LoadSettings.Precision = precision;
        int rows = a.Int("rows", 400), warmUp = a.Int("warm-up", 50);
        var sentences = SentencePredictor.DevSentences(a);
        var predictor = new SentencePredictor(zip);

        foreach (var sentence in sentences.Take(warmUp)) predictor.Predict(sentence);
        var times = new List<double>();
        foreach (var sentence in sentences.Skip(warmUp).Take(rows))
        {
            var clock = Stopwatch.StartNew();
            predictor.Predict(sentence);
            times.Add(clock.Elapsed.TotalMilliseconds);
        }
        times.Sort();
        double Percentile(double p) => times[Math.Min(times.Count - 1, (int)(p * times.Count))];
        Console.WriteLine($"{Path.GetFileName(zip)} ({predictor.Info.Adapter.MethodName}, {LoadSettings.Precision}): {times.Count} single-sentence predictions, " +
            $"p50 {Percentile(0.5):F2} ms, p90 {Percentile(0.9):F2} ms, p99 {Percentile(0.99):F2} ms, mean {times.Average():F2} ms");
        return 0;
    }

    /// <summary>`score --model ZIP --out FILE [--rows N]`: the first N SST-2 dev sentences with the model's scores, as JSON.</summary>
    public static int Score(BenchArgs a)
    {
        var zip = a.Text("model") ?? throw new ArgumentException("score needs --model ZIP");
        var file = a.Text("out") ?? throw new ArgumentException("score needs --out FILE");
        var predictor = new SentencePredictor(zip);
        var rows = SentencePredictor.DevSentences(a).Take(a.Int("rows", 300)).Select(s => new { sentence = s, score = predictor.Predict(s) }).ToList();
        File.WriteAllText(file, JsonSerializer.Serialize(rows));
        Console.WriteLine($"wrote {rows.Count} scored sentences to {file}");
        return 0;
    }
}
