using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetPeft.MlNet;

namespace MlNetPeft.Examples;

public static class SentimentExample
{
    /// <summary>One SST-2 row: a sentence and its label ("0" negative, "1" positive).</summary>
    public sealed class Review
    {
        [LoadColumn(0)] public string Sentence { get; set; } = "";
        [LoadColumn(1)] public string Label { get; set; } = "";
    }

    public sealed class Prediction
    {
        public string PredictedLabel { get; set; } = "";
        public float[] Score { get; set; } = [];
    }

    /// <summary>Runs the whole example; returns false when the dev accuracy does not beat the majority class.</summary>
    public static bool Run(ExampleArgs args)
    {
        var ml = new MLContext(seed: 42);
        TrainerLog.Print(ml, "Msplora", progress: true);

        var train = Load(ml, Path.Combine(args.DataDirectory, "glue", "SST-2", "train.tsv"), args.MaxTrainRows);
        var dev = Load(ml, Path.Combine(args.DataDirectory, "glue", "SST-2", "dev.tsv"), args.MaxDevRows);
        var labels = ml.Transforms.Conversion.MapValueToKey("Label").Fit(train);

        var options = new MsploraOptions
        {
            LogEveryNSteps = 25,
            BackboneDirectory = args.Backbone,
            Sentence1ColumnName = nameof(Review.Sentence),
            MaxEpochs = args.Epochs,
            LearningRate = args.LearningRate,
            Precision = args.Precision,
            TrainingStateDirectory = args.StateDirectory,
            BatchSize = 32,
            ValidationSet = labels.Transform(dev),
        };
        var pipeline = ml.Transforms.Conversion.MapValueToKey("Label")
            .Append(ml.MulticlassClassification.Trainers.Msplora(options))
            .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedLabel"));

        Console.WriteLine($"Training MSPLoRA on {Count(train)} SST-2 rows for {args.Epochs} epochs (backbone {args.Backbone})");
        var started = DateTime.UtcNow;
        var model = pipeline.Fit(train);
        Console.WriteLine($"Trained in {(DateTime.UtcNow - started).TotalSeconds:F0} s");

        var metrics = ml.MulticlassClassification.Evaluate(model.Transform(dev));
        var devLabels = ml.Data.CreateEnumerable<Review>(dev, reuseRowObject: false).Select(r => r.Label).ToList();
        double majority = devLabels.GroupBy(l => l).Max(g => g.Count()) / (double)devLabels.Count;
        Console.WriteLine($"Dev accuracy {metrics.MicroAccuracy:P1} (majority class {majority:P1}), macro accuracy {metrics.MacroAccuracy:P1}, log-loss {metrics.LogLoss:F3}");

        var engine = args.SaveAndReload<Review, Prediction>(ml, model, train.Schema);
        foreach (var sentence in new[]
                 {
                     "a gripping , beautifully acted film that stays with you .",
                     "a dull , lifeless mess with nothing to say .",
                     "the plot is thin but the performances are wonderful .",
                 })
        {
            var p = engine.Predict(new Review { Sentence = sentence });
            Console.WriteLine($"  {(p.PredictedLabel == "1" ? "positive" : "negative"),-8} {sentence}");
        }
        return metrics.MicroAccuracy > majority;
    }

    private static IDataView Load(MLContext ml, string path, int maxRows)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"SST-2 file not found: {path}", path);
        var data = ml.Data.LoadFromTextFile<Review>(path, separatorChar: '\t', hasHeader: true, allowQuoting: false);
        return maxRows > 0 ? ml.Data.TakeRows(data, maxRows) : data;
    }

    private static long Count(IDataView data) => data.GetRowCount() ?? data.GetColumn<string>("Label").LongCount();
}
