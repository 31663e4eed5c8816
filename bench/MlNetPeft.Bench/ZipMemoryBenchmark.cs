using System.Diagnostics;
using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetPeft.Adapters;
using MlNetPeft.Backbone;
using MlNetPeft.MlNet;
using static TorchSharp.torch;

namespace MlNetPeft.Bench;

/// <summary>
/// What a model's life around its zip costs in time and CPU memory, on a backbone of a given shape with random weights
/// (written as a checkpoint directory in a temporary folder): a short Fit (LoRA, --rows SST-2 dev sentences with
/// made-up labels, one epoch, sequence 32), Model.Save, a merged-checkpoint export, then --loads rounds of Model.Load
/// and disposal in this process, as a service reloading new versions does (the first loaded model also saved again).
/// Each prints its wall time, its peak resident memory above what the process held before it, and the resident
/// memory after it. --embed puts the backbone into the zip; --full fine-tunes every weight (the zip then holds them
/// all); --backbone DIR uses that checkpoint directory instead of a random one (a real roberta-base, or one with a
/// pytorch_model.bin); --work names the scratch folder (default: a new one in the temporary folder), deleted after.
/// --share N then loads the zip N times keeping every model, each with its own backbone, then N times more with
/// LoadSettings.ShareBackbone, and times scoring the rows with the first model of each, alternately (merged adapters,
/// then unmerged).
/// </summary>
internal static class ZipMemoryBenchmark
{
    private sealed class Row
    {
        public string Sentence { get; set; } = "";
        public string Label { get; set; } = "";
    }

    public static int Run(BenchArgs a)
    {
        var shape = a.Text("shape", "base");
        bool embed = a.Flag("embed"), full = a.Flag("full");
        int loads = a.Int("loads", 3), rows = a.Int("rows", 64), share = a.Int("share", 0);
        var work = a.Text("work") is { } given ? Directory.CreateDirectory(given).FullName : Directory.CreateTempSubdirectory("mlnetpeft-zip-memory-").FullName;
        try
        {
            var existing = a.Text("backbone");
            var backbone = existing ?? RandomBackbone(shape, Path.Combine(work, "backbone"));
            var weights = new CheckpointDirectory(backbone).WeightsFile;
            Console.WriteLine($"{(existing is null ? $"{shape}-shaped backbone, random weights" : backbone)}: " +
                $"{Path.GetFileName(weights)} {new FileInfo(weights).Length / 1e6:F0} MB" + (embed ? ", embedded in the zip" : "") +
                (full ? ", fully fine-tuned" : ""));
            var ml = new MLContext(seed: 1);
            var data = ml.Data.LoadFromEnumerable(SentencePredictor.DevSentences(a).Take(rows)
                .Select((s, i) => new Row { Sentence = s, Label = i % 2 == 0 ? "even" : "odd" }));
            T Options<T>(T options) where T : PeftTextTrainerOptions
            {
                options.BackboneDirectory = backbone;
                options.Sentence1ColumnName = nameof(Row.Sentence);
                (options.MaxEpochs, options.BatchSize, options.MaxSequenceLength, options.EmbedBackbone) = (1, 8, 32, embed);
                return options;
            }
            IEstimator<ITransformer> trainer = full
                ? ml.MulticlassClassification.Trainers.FullFineTuning(Options(new FullFineTuningOptions()))
                : ml.MulticlassClassification.Trainers.Lora(Options(new LoraOptions()));
            var model = Measure("Fit", () => ml.Transforms.Conversion.MapValueToKey("Label").Append(trainer).Fit(data));
            var zip = Path.Combine(work, "model.zip");
            Measure("Model.Save", () => ml.Model.Save(model, data.Schema, zip));
            Console.WriteLine($"  zip {new FileInfo(zip).Length / 1e6:F1} MB");
            Measure("SaveMergedCheckpoint", () => Peft(model).SaveMergedCheckpoint(Path.Combine(work, "merged")));
            Peft(model).Dispose();
            for (int i = 1; i <= loads; i++)
            {
                var loaded = Measure($"Model.Load {i}", () => new MLContext().Model.Load(zip, out _));
                if (i == 1) Measure("Model.Save of a loaded model", () => ml.Model.Save(loaded, data.Schema, Path.Combine(work, "again.zip")));
                Peft(loaded).Dispose();
            }
            if (share > 0) HoldModels(zip, share, data);
            return 0;
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
    }

    /// <summary>Loads the zip <paramref name="count"/> times keeping every model (a service holding several models
    /// fine-tuned from one backbone), each with its own backbone, then as many sharing one; then scores the rows with the
    /// first of each, alternately (merged adapters, then unmerged); disposes them all.</summary>
    private static void HoldModels(string zip, int count, IDataView data)
    {
        var own = new List<ITransformer>();
        var shared = new List<ITransformer>();
        try
        {
            foreach (var (models, share) in new[] { (own, false), (shared, true) })
            {
                LoadSettings.ShareBackbone = share;
                for (int i = 1; i <= count; i++)
                    models.Add(Measure($"Model.Load, held, {(share ? "backbone shared" : "own backbone")} {i}", () => new MLContext().Model.Load(zip, out _)));
            }
            for (int pass = 1; pass <= 3; pass++) // the first pass also warms up
            {
                Measure($"scoring the rows, pass {pass}, merged adapters (own backbone)", () => ScoreAll(own[0], data));
                Measure($"scoring the rows, pass {pass}, unmerged adapters (backbone shared)", () => ScoreAll(shared[0], data));
            }
        }
        finally
        {
            LoadSettings.ShareBackbone = false;
            foreach (var model in own.Concat(shared)) Peft(model).Dispose();
        }
    }

    private static void ScoreAll(ITransformer model, IDataView data)
    {
        var scored = model.Transform(data);
        using var cursor = scored.GetRowCursor([scored.Schema["Score"]]);
        var score = cursor.GetGetter<VBuffer<float>>(scored.Schema["Score"]);
        var buffer = default(VBuffer<float>);
        while (cursor.MoveNext()) score(ref buffer);
    }

    private static PeftTextTransformer Peft(ITransformer model) =>
        ((IEnumerable<ITransformer>)model).OfType<PeftTextTransformer>().Single(); // a chain, of either element type

    private static void Measure(string what, Action action) => Measure(what, () => { action(); return 0; });

    private static T Measure<T>(string what, Func<T> action)
    {
        using var peak = new PeakMemory(CPU); // resets the peak to what is resident now
        double before = Resident();
        var clock = Stopwatch.StartNew();
        var result = action();
        double seconds = clock.Elapsed.TotalSeconds;
        Console.WriteLine($"{what}: {seconds:F1} s, peak {peak.PeakGiB - before:+0.00;-0.00} GiB, resident after {Resident():F2} GiB");
        return result;
    }

    private static double Resident()
    {
        using var process = Process.GetCurrentProcess();
        return process.WorkingSet64 / (double)(1L << 30);
    }

    /// <summary>A checkpoint directory of the shape: random weights (seeded), the bench's config, roberta-mini's
    /// roberta-base vocabulary.</summary>
    internal static string RandomBackbone(string shape, string directory)
    {
        Directory.CreateDirectory(directory);
        using (var model = SpeedBenchmark.RandomModel(shape, "lora"))
        using (var file = File.Create(Path.Combine(directory, "model.safetensors")))
            MergedCheckpoint.Write(model, file);
        File.WriteAllText(Path.Combine(directory, "config.json"), SpeedBenchmark.ConfigFor(shape).ToJson());
        var vocabulary = Path.Combine(BenchArgs.RepositoryRoot(), "models", "roberta-mini");
        foreach (var name in new[] { "vocab.json", "merges.txt" }) File.Copy(Path.Combine(vocabulary, name), Path.Combine(directory, name));
        return directory;
    }
}
