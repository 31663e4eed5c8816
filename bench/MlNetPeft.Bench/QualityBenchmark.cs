using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Transforms;
using MlNetPeft.Adapters;
using MlNetPeft.Backbone;
using MlNetPeft.Glue;
using MlNetPeft.MlNet;
using MlNetPeft.Training;

namespace MlNetPeft.Bench;

/// <summary>One fine-tuning run scored on a GLUE dev split (best epoch by the task metric, as the paper).</summary>
internal sealed record QualityRun(
    string Engine, string Task, string Method, int Seed, string Metric, double Score, double? Accuracy, double? F1,
    double? Mcc, double? Pearson, double? Spearman, long Trainable, int TrainRows, int Epochs, double LearningRate,
    int BatchSize, double Seconds, double[] PerEpoch);

/// <summary>
/// GLUE quality benchmark: trains each method on each task's train split, scores dev after every epoch, keeps the
/// best epoch, and reports the paper's metrics as a markdown table and JSON (mean ± std over seeds), optionally
/// beside the PyTorch reference (bench/reference.py) run with the same recipe.
/// </summary>
internal static class QualityBenchmark
{
    // The MSPLoRA paper's roberta-base recipe (its glue_finetune.sh): epochs, learning rate, max length per task.
    private static readonly Dictionary<string, (int Epochs, double Lr, int MaxLen)> PaperRecipe = new()
    {
        ["mrpc"] = (30, 4e-4, 256), ["qnli"] = (25, 4e-4, 256), ["rte"] = (80, 4e-4, 512),
        ["sst2"] = (60, 5e-4, 256), ["stsb"] = (40, 4e-4, 256), ["cola"] = (80, 4e-4, 256),
    };

    public static int Run(BenchArgs a)
    {
        var root = BenchArgs.RepositoryRoot();
        var backbone = a.Text("backbone", Path.Combine(root, "models", "roberta-mini"));
        var data = a.Text("data", Path.Combine(root, "data"));
        var tasks = a.Text("task", "all") == "all" ? GlueTask.All : a.List("task", "sst2").Select(GlueTask.Get).ToList();
        var methods = a.List("method", "lora,msplora,full");
        int seeds = a.Int("seeds", 1), firstSeed = a.Int("first-seed", 42), maxRows = a.Int("max-train-rows", 0);
        var config = new CheckpointDirectory(backbone).LoadConfig();
        bool paper = config is { HiddenSize: 768, NumHiddenLayers: 12 };
        var outDir = a.Text("out", Path.Combine(root, "bench", "results"));
        Directory.CreateDirectory(outDir);
        var referenceScript = a.Flag("reference") ? PythonReference.Script(a) : null;
        Console.WriteLine($"Backbone {backbone} ({(paper ? "roberta-base shape: the paper's recipe" : "small backbone: the mini recipe")}), " +
                          $"tasks {string.Join(",", tasks.Select(t => t.Name))}, methods {string.Join(",", methods)}, {seeds} seed(s) from {firstSeed}");

        var runs = new List<QualityRun>();
        foreach (var task in tasks)
            foreach (var method in methods)
                for (int seed = firstSeed; seed < firstSeed + seeds; seed++)
                {
                    var recipe = Recipe(a, task, method, paper);
                    runs.Add(RunOurs(task, method, seed, recipe, backbone, data, maxRows));
                    Console.WriteLine(Describe(runs[^1]));
                    if (referenceScript is not null && recipe.Targets is null && seed < firstSeed + a.Int("reference-seeds", seeds) && method is "lora" or "msplora" or "full")
                    {
                        runs.Add(RunReference(referenceScript, task, method, seed, recipe, backbone, data, maxRows));
                        Console.WriteLine(Describe(runs[^1]));
                    }
                }

        var stamp = DateTime.UtcNow.ToString("yyyyMMdd-HHmmss", CultureInfo.InvariantCulture);
        File.WriteAllText(Path.Combine(outDir, $"quality-{stamp}.json"), JsonSerializer.Serialize(runs, new JsonSerializerOptions { WriteIndented = true }));
        var table = Table(runs);
        File.WriteAllText(Path.Combine(outDir, $"quality-{stamp}.md"), table);
        Console.WriteLine();
        Console.WriteLine(table);
        return 0;
    }

    /// <summary>A run's recipe. BatchSize rows per optimizer step, taken in Accumulation batches, blocks recomputed in the
    /// backward with Checkpointing (each: less memory, same step); gradients clipped to a global norm of 1 in both
    /// engines (HF Trainer's max_grad_norm, which the paper's runs used).</summary>
    internal sealed record RunRecipe(int Epochs, double LearningRate, int BatchSize, int MaxLength, int Accumulation, bool Checkpointing,
        string[]? Targets = null, ComputePrecision Precision = ComputePrecision.Auto, double GradientClipNorm = 1.0);

    private static RunRecipe Recipe(BenchArgs a, GlueTask task, string method, bool paper)
    {
        var (epochs, lr, maxLen) = paper ? PaperRecipe[task.Name] : (3, method == "full" ? 1e-4 : 2e-3, 128);
        if (paper && method == "full") lr = 1e-5 * 2;
        int batch = a.Int("batch", paper ? 64 : 32), accumulation = a.Int("accumulate", 1);
        if (accumulation < 1 || batch % accumulation != 0)
            throw new ArgumentException($"--accumulate must divide the batch ({batch}) into equal parts, got {accumulation}");
        return new RunRecipe(a.Int("epochs", epochs), a.Double("lr", lr), batch, a.Int("max-len", maxLen), accumulation, a.Flag("checkpoint"), a.Targets(),
            a.Precision() ?? ComputePrecision.Auto);
    }

    private static QualityRun RunOurs(GlueTask task, string method, int seed, RunRecipe recipe, string backbone, string data, int maxRows)
    {
        var ml = new MLContext(seed);
        var glue = Path.Combine(data, "glue");
        var train = task.Load(ml, glue, "train");
        if (maxRows > 0) train = ml.Data.TakeRows(ml.Data.ShuffleRows(train, seed, shufflePoolSize: 1 << 20), maxRows);
        train = ml.Data.Cache(train);
        var dev = task.Load(ml, glue, "dev");
        if (!task.IsRegression)
        {
            var keys = ml.Transforms.Conversion.MapValueToKey("Label", keyOrdinality: ValueToKeyMappingEstimator.KeyOrdinality.ByValue).Fit(train);
            train = keys.Transform(train);
            dev = keys.Transform(dev);
        }
        var options = Options(method);
        options.BackboneDirectory = backbone;
        options.Sentence1ColumnName = "Sentence1";
        options.Sentence2ColumnName = task.IsPair ? "Sentence2" : null;
        options.MaxEpochs = recipe.Epochs;
        options.LearningRate = recipe.LearningRate;
        options.BatchSize = recipe.BatchSize / recipe.Accumulation;
        options.GradientAccumulationSteps = recipe.Accumulation;
        options.GradientCheckpointing = recipe.Checkpointing;
        if (recipe.Targets is not null) options.Targets = recipe.Targets;
        options.Precision = recipe.Precision;
        options.MaxSequenceLength = recipe.MaxLength;
        options.HeadLearningRateRatio = 0.5;
        options.GradientClipNorm = recipe.GradientClipNorm;
        options.Seed = seed;
        options.ValidationSet = dev;
        options.ValidationMetric = task.Metric;
        var perEpoch = new List<double>();
        var label = $"{task.Name} {method} seed {seed}";
        options.ProgressCallback = p =>
        {
            if (p.ValidationMetric is { } m) perEpoch.Add(Math.Round(m, 4));
            else Console.Error.Write($"\r  {label}: epoch {p.Epoch} step {p.Step}/{p.TotalSteps} loss {p.Loss:F4} {p.RowsPerSecond:F0} rows/s   ");
        };

        var clock = Stopwatch.StartNew();
        var model = Trainer(ml, options, task.IsRegression).Fit(train);
        double seconds = clock.Elapsed.TotalSeconds;
        Console.Error.Write("\r" + new string(' ', 100) + "\r");
        var scored = model.Transform(dev);
        var gold = task.IsRegression
            ? scored.GetColumn<float>("Label").Select(v => (double)v).ToArray()
            : scored.GetColumn<uint>("Label").Select(v => v - 1.0).ToArray();
        var predicted = task.IsRegression
            ? scored.GetColumn<float>("Score").Select(v => (double)v).ToArray()
            : scored.GetColumn<uint>("PredictedLabel").Select(v => v - 1.0).ToArray();
        var kind = task.IsRegression ? TaskKind.Regression : TaskKind.Classification;
        double? Metric(ValidationMetric m, bool applies) => applies ? Math.Round(Metrics.Compute(m, predicted, gold, kind), 4) : null;
        // Other targets than the method's default are part of what the table calls the method.
        var methodShown = recipe.Targets is null ? method : $"{method} on {string.Join("+", recipe.Targets)}";
        var run = new QualityRun("MlNetPeft", task.Name, methodShown, seed, task.Metric.ToString(),
            Math.Round(Metrics.Compute(task.Metric, predicted, gold, kind), 4),
            Metric(ValidationMetric.Accuracy, !task.IsRegression), Metric(ValidationMetric.F1, task == GlueTask.Mrpc),
            Metric(ValidationMetric.MatthewsCorrelation, task == GlueTask.Cola), Metric(ValidationMetric.Pearson, task.IsRegression),
            Metric(ValidationMetric.Spearman, task.IsRegression), model.Parameters.TrainableCount,
            (int)(train.GetRowCount() ?? train.GetColumn<ReadOnlyMemory<char>>("Sentence1").Count()), recipe.Epochs,
            recipe.LearningRate, recipe.BatchSize, Math.Round(seconds, 1), [.. perEpoch]);
        model.Dispose();
        return run;
    }

    private static PeftTextTrainerOptions Options(string method) => method switch
    {
        "lora" => new LoraOptions(),
        "dora" => new LoraOptions { UseDora = true },
        "loraplus" => new LoraOptions { LoraPlusLearningRateRatio = 16 }, // the LoRA+ paper's ratio for roberta-base
        "lorabias" => new LoraOptions { Bias = LoraBias.All }, // PEFT's bias "all"
        "msplora" => new MsploraOptions(),
        "lorasquared" => new LoraSquaredOptions(),
        "adalora" => new AdaLoraOptions(),
        "full" => new FullFineTuningOptions(),
        _ => throw new ArgumentException($"unknown method '{method}' (lora, dora, loraplus, lorabias, msplora, lorasquared, adalora, full)"),
    };

    private static IEstimator<PeftTextTransformer> Trainer(MLContext ml, PeftTextTrainerOptions options, bool regression)
    {
        var c = ml.MulticlassClassification.Trainers;
        var r = ml.Regression.Trainers;
        return options switch
        {
            LoraOptions o => regression ? r.Lora(o) : c.Lora(o),
            MsploraOptions o => regression ? r.Msplora(o) : c.Msplora(o),
            LoraSquaredOptions o => regression ? r.LoraSquared(o) : c.LoraSquared(o),
            AdaLoraOptions o => regression ? r.AdaLora(o) : c.AdaLora(o),
            FullFineTuningOptions o => regression ? r.FullFineTuning(o) : c.FullFineTuning(o),
            _ => throw new ArgumentException(options.GetType().Name),
        };
    }

    /// <summary>Runs bench/reference.py glue (PyTorch, same recipe) and reads its JSON line.</summary>
    private static QualityRun RunReference(string script, GlueTask task, string method, int seed, RunRecipe recipe, string backbone, string data, int maxRows)
    {
        var args = new List<string>
        {
            "glue", "--task", task.Name, "--method", method, "--epochs", $"{recipe.Epochs}", "--batch", $"{recipe.BatchSize}",
            "--lr", recipe.LearningRate.ToString(CultureInfo.InvariantCulture), "--max-len", $"{recipe.MaxLength}", "--seed", $"{seed}",
            "--clip-norm", recipe.GradientClipNorm.ToString(CultureInfo.InvariantCulture), "--backbone", backbone, "--data", data,
        };
        if (maxRows > 0) args.AddRange(["--max-train-rows", $"{maxRows}"]);
        using var json = PythonReference.Run(script, args);
        var r = json.RootElement;
        return new QualityRun($"PyTorch reference ({r.GetProperty("engine").GetString()})", task.Name, method, seed, task.Metric.ToString(),
            r.GetProperty("best").GetDouble(), null, null, null, null, null, r.GetProperty("trainable").GetInt64(),
            r.GetProperty("train_rows").GetInt32(), recipe.Epochs, recipe.LearningRate, recipe.BatchSize,
            r.GetProperty("seconds").GetDouble(), r.GetProperty("per_epoch").EnumerateArray().Select(e => e.GetDouble()).ToArray());
    }

    private static string Describe(QualityRun r) =>
        $"{r.Engine,-30} {r.Task,-5} {r.Method,-11} seed {r.Seed}: {r.Metric} {r.Score:F4} (epochs {string.Join(" ", r.PerEpoch)}), " +
        $"{r.Trainable:N0} trainable, {r.Seconds:F0} s";

    private static string MeanStd(IReadOnlyList<double> values)
    {
        double mean = values.Average();
        double std = values.Count > 1 ? Math.Sqrt(values.Sum(v => (v - mean) * (v - mean)) / (values.Count - 1)) : 0;
        return values.Count > 1 ? $"{100 * mean:F1} ± {100 * std:F1}" : $"{100 * mean:F1}";
    }

    /// <summary>Markdown: one row per task and method, MlNetPeft beside the reference, scores ×100.</summary>
    internal static string Table(IReadOnlyList<QualityRun> runs)
    {
        var sb = new StringBuilder();
        sb.AppendLine("| task | metric | method | MlNetPeft | PyTorch reference | trainable | s/run (ours / ref) | train rows × epochs |");
        sb.AppendLine("|---|---|---|---|---|---|---|---|");
        foreach (var group in runs.GroupBy(r => (r.Task, r.Method)))
        {
            var ours = group.Where(r => r.Engine == "MlNetPeft").ToList();
            var reference = group.Where(r => r.Engine != "MlNetPeft").ToList();
            if (ours.Count == 0) continue;
            string extra = group.Key.Task switch
            {
                "mrpc" => $" (F1 {MeanStd(ours.Select(r => r.F1 ?? 0).ToList())})",
                "stsb" => $" (Spearman {MeanStd(ours.Select(r => r.Spearman ?? 0).ToList())})",
                _ => "",
            };
            sb.AppendLine($"| {group.Key.Task} | {ours[0].Metric} | {group.Key.Method} | {MeanStd(ours.Select(r => r.Score).ToList())}{extra} | " +
                          $"{(reference.Count > 0 ? MeanStd(reference.Select(r => r.Score).ToList()) : "–")} | {ours[0].Trainable:N0} | " +
                          $"{ours.Average(r => r.Seconds):F0} / {(reference.Count > 0 ? reference.Average(r => r.Seconds).ToString("F0", CultureInfo.InvariantCulture) : "–")} | " +
                          $"{ours[0].TrainRows} × {ours[0].Epochs} |");
        }
        sb.AppendLine($"Seeds: {string.Join(", ", runs.Select(r => r.Seed).Distinct())}; scores ×100, mean ± sample std over seeds; best dev epoch.");
        return sb.ToString();
    }
}
