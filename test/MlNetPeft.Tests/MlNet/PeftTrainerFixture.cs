using Microsoft.ML;
using MlNetPeft.MlNet;
using MlNetPeft.Training;

namespace MlNetPeft.Tests.MlNet;

/// <summary>Fits trainers on the toy text set with the tiny fixture backbone.</summary>
internal static class PeftTrainerFixture
{
    public static T Tiny<T>(T options) where T : PeftTextTrainerOptions
    {
        options.BackboneDirectory ??= TestData.TinyBackbone;
        return options;
    }

    public static MsploraOptions Msplora(int epochs = 8) => Tiny(new MsploraOptions
    {
        MaxEpochs = epochs, LearningRate = 1e-2, BatchSize = 16, LoraDropout = 0, LogEveryNSteps = 5,
    });

    public static LoraOptions Lora(int epochs = 8) => Tiny(new LoraOptions
    {
        MaxEpochs = epochs, LearningRate = 1e-2, BatchSize = 16, LoraDropout = 0, LogEveryNSteps = 5,
    });

    public static LoraOptions Dora(int epochs = 8)
    {
        var options = Lora(epochs);
        options.UseDora = true;
        return options;
    }

    // λ starts at zero and the factors at N(0, 0.02), so the SVD forms start slower: a higher rate and more epochs.
    public static LoraSquaredOptions LoraSquared(int epochs = 12) => Tiny(new LoraSquaredOptions
    {
        MaxEpochs = epochs, LearningRate = 2e-2, BatchSize = 16, LoraDropout = 0, LogEveryNSteps = 5, MaskInterval = 2,
    });

    public static AdaLoraOptions AdaLora(int epochs = 12) => Tiny(new AdaLoraOptions
    {
        MaxEpochs = epochs, LearningRate = 2e-2, BatchSize = 16, LoraDropout = 0, LogEveryNSteps = 5, MaskInterval = 2,
        InitialRank = 8, TargetRank = 4,
    });

    /// <summary>Adapters on all six Linears of each block (the LoRA² and AdaLoRA papers' setting).</summary>
    public static T OnEveryLinear<T>(T options) where T : PeftTextTrainerOptions
    {
        options.Targets = [.. MlNetPeft.Adapters.AdapterTargets.All];
        return options;
    }

    public static T WithPrecision<T>(T options, ComputePrecision precision) where T : PeftTextTrainerOptions
    {
        options.Precision = precision;
        return options;
    }

    public static IEstimator<PeftTextTransformer> Classifier(MLContext ml, PeftTextTrainerOptions options) => options switch
    {
        MsploraOptions o => ml.MulticlassClassification.Trainers.Msplora(o),
        LoraOptions o => ml.MulticlassClassification.Trainers.Lora(o),
        LoraSquaredOptions o => ml.MulticlassClassification.Trainers.LoraSquared(o),
        AdaLoraOptions o => ml.MulticlassClassification.Trainers.AdaLora(o),
        FullFineTuningOptions o => ml.MulticlassClassification.Trainers.FullFineTuning(o),
        _ => throw new ArgumentException(options.GetType().Name),
    };

    /// <summary>MapValueToKey → trainer → MapKeyToValue, fitted; also returns the progress reports seen.</summary>
    public static (ITransformer Model, List<TrainingProgress> Progress) Fit(MLContext ml, IDataView data, PeftTextTrainerOptions options)
    {
        var progress = new List<TrainingProgress>();
        options.ProgressCallback = progress.Add;
        var model = ToyText.KeyLabel(ml).Append(Classifier(ml, options)).Append(ToyText.KeyToValue(ml)).Fit(data);
        return (model, progress);
    }

    /// <summary>The trainer of <paramref name="options"/> fitted on 40 toy rows (after MapValueToKey).</summary>
    public static PeftTextTransformer FitOnToyRows(MLContext ml, PeftTextTrainerOptions options) =>
        ToyText.KeyLabel(ml).Append(Classifier(ml, options)).Fit(ml.Data.LoadFromEnumerable(ToyText.Rows(40, seed: 1))).LastTransformer;

    /// <summary>The largest difference between two models' scores of the parity fixture's inputs.</summary>
    public static double LargestScoreDifference(PeftTextTransformer a, PeftTextTransformer b)
    {
        var rows = Adapters.AdapterTests.Rows();
        return a.Predict(rows).Zip(b.Predict(rows)).Max(p => p.First.Zip(p.Second).Max(v => Math.Abs(v.First - v.Second)));
    }

    /// <summary>The messages of one kind that <paramref name="ml"/> logs from now on (collected from any thread).</summary>
    public static List<string> LogMessages(MLContext ml, Microsoft.ML.Runtime.ChannelMessageKind kind)
    {
        var messages = new List<string>();
        ml.Log += (_, e) => { if (e.Kind == kind) lock (messages) messages.Add(e.Message); };
        return messages;
    }

    public static float[][] Scores(ITransformer model, IDataView data, MLContext ml) =>
        ml.Data.CreateEnumerable<ScoreRow>(model.Transform(data), reuseRowObject: false).Select(r => r.Score).ToArray();

    /// <summary>The same scores, row for row, bit for bit (<paramref name="what"/> names them in a failure).</summary>
    public static void AssertSameScores(float[][] expected, float[][] actual, string what = "")
    {
        Assert.HasCount(expected.Length, actual);
        for (int i = 0; i < expected.Length; i++) CollectionAssert.AreEqual(expected[i], actual[i], $"{what}row {i}");
    }

    public sealed class ScoreRow
    {
        public float[] Score { get; set; } = [];
    }

    /// <summary>A copy of the tiny backbone directory that a test may change or delete.</summary>
    public static string CopyOfTinyBackbone()
    {
        var dir = TestFolders.Create("mlnetpeft-backbone-");
        foreach (var file in Directory.GetFiles(TestData.TinyBackbone)) File.Copy(file, Path.Combine(dir, Path.GetFileName(file)));
        return dir;
    }

    /// <summary>Asserts that <paramref name="model"/> scores the parity fixture's inputs as <paramref name="logits"/>
    /// (a fixture's, made in Python), as probabilities, to 1e-5, and identically after a save and a load in a fresh
    /// MLContext.</summary>
    public static void ScoresAsFixtureLogits(MLContext ml, PeftTextTransformer model, System.Text.Json.JsonElement logits)
    {
        var expected = TorchSharp.torch.tensor(logits.EnumerateArray()
            .SelectMany(r => r.EnumerateArray().Select(v => v.GetSingle())).ToArray()).view(-1, 3).softmax(-1);
        var rows = Adapters.AdapterTests.Rows();
        var scores = model.Predict(rows);
        var zip = Path.Combine(TestFolders.Create("fixture-logits"), "model.zip");
        ml.Model.Save(model, null, zip);
        var reloaded = ((PeftTextTransformer)new MLContext(seed: 2).Model.Load(zip, out _)).Predict(rows);
        for (int r = 0; r < rows.Count; r++)
        {
            CollectionAssert.AreEqual(scores[r], reloaded[r], $"row {r} after reload");
            for (int c = 0; c < 3; c++) Assert.AreEqual(expected[r, c].item<float>(), scores[r][c], 1e-5, $"row {r}, class {c}");
        }
    }
}
