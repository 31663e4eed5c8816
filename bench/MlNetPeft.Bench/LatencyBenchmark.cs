using System.Diagnostics;
using System.Text.Json;
using MlNetPeft.MlNet;
using MlNetPeft.Training;

namespace MlNetPeft.Bench;

/// <summary>
/// What a service sees: PredictionEngines scoring one sentence per call from a saved model zip (tokenizing, ML.NET's
/// row plumbing and the merged forward), over SST-2 dev sentences; prints latency percentiles and sentences per
/// second. With <c>--parallel N</c>, N threads each score with an engine of their own over the one model, as a
/// service's request threads do; <c>--threads T</c> sets libtorch's threads per operation (its default: one per core).
/// With <c>--share</c> the model is loaded with LoadSettings.ShareBackbone (adapters unmerged). With <c>--transform</c> it times ML.NET's batched scoring of a data view instead. The `score` command writes those
/// sentences' scores, for bench/check_python_scores.py.
/// </summary>
internal static class LatencyBenchmark
{
    public static int Run(BenchArgs a)
    {
        var zip = a.Text("model") ?? throw new ArgumentException("latency needs --model ZIP (e.g. the Sentiment example's model)");
        if (a.Precision() is { } precision) LoadSettings.Precision = precision;
        LoadSettings.ShareBackbone = a.Flag("share"); // its adapters then stay unmerged
        int rows = a.Int("rows", 400), warmUp = a.Int("warm-up", 50), parallel = a.Int("parallel", 1), threads = a.Int("threads", 0);
        if (parallel < 1) throw new ArgumentException($"--parallel must be at least 1, got {parallel}");
        if (threads > 0) TorchSharp.torch.set_num_threads(threads);
        var sentences = SentencePredictor.DevSentences(a);
        var predictor = new SentencePredictor(zip);
        if (a.Flag("transform")) return Transform(predictor, sentences.Take(a.Int("rows", sentences.Count)).ToList(), a.Int("passes", 3));
        var engines = Enumerable.Range(0, parallel).Select(i => i == 0 ? predictor.Predict : predictor.NewEngine()).ToList();

        foreach (var engine in engines)
            foreach (var sentence in sentences.Take(warmUp)) engine(sentence);
        var timed = sentences.Skip(warmUp).Take(rows).ToList();
        var times = new double[timed.Count];
        int next = -1;
        var wall = Stopwatch.StartNew();
        var workers = engines.Select(engine => new Thread(() =>
        {
            for (int i = Interlocked.Increment(ref next); i < timed.Count; i = Interlocked.Increment(ref next))
            {
                var clock = Stopwatch.StartNew();
                engine(timed[i]);
                times[i] = clock.Elapsed.TotalMilliseconds;
            }
        })).ToList();
        workers.ForEach(w => w.Start());
        workers.ForEach(w => w.Join());
        double seconds = wall.Elapsed.TotalSeconds;
        Array.Sort(times);
        double Percentile(double p) => times[Math.Min(times.Length - 1, (int)(p * times.Length))];
        Console.WriteLine($"{Path.GetFileName(zip)} ({predictor.Info.Adapter.MethodName}, {LoadSettings.Precision}{(LoadSettings.ShareBackbone ? ", backbone shared: adapters unmerged" : "")}): {times.Length} single-sentence predictions " +
            $"on {parallel} thread(s), {TorchSharp.torch.get_num_threads()} libtorch thread(s) per operation: " +
            $"p50 {Percentile(0.5):F2} ms, p90 {Percentile(0.9):F2} ms, p99 {Percentile(0.99):F2} ms, mean {times.Average():F2} ms, {times.Length / seconds:F1} sentences/s");
        return 0;
    }

    /// <summary>`latency --transform`: the sentences scored through <c>model.Transform</c> (batched, as Evaluate and
    /// CreateEnumerable read it) in several passes; the first pass of a process also pays for .NET's JIT and
    /// first-touch memory.</summary>
    private static int Transform(SentencePredictor predictor, List<string> sentences, int passes)
    {
        if (passes < 1) throw new ArgumentException($"--passes must be at least 1, got {passes}");
        var rates = new List<double>();
        for (int pass = 0; pass < passes; pass++)
        {
            var clock = Stopwatch.StartNew();
            int rows = predictor.ScoreWithTransform(sentences);
            if (rows != sentences.Count) throw new InvalidOperationException($"Transform gave {rows} rows for {sentences.Count} sentences");
            rates.Add(rows / clock.Elapsed.TotalSeconds);
        }
        Console.WriteLine($"{predictor.Info.Adapter.MethodName} ({LoadSettings.Precision}): {sentences.Count} sentences through Transform, " +
            $"{TorchSharp.torch.get_num_threads()} libtorch thread(s) per operation: " +
            string.Join(", ", rates.Select((r, i) => $"pass {i + 1} {r:F0}")) + " rows/s");
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
