using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Transforms;
using MlNetPeft.Glue;
using MlNetPeft.MlNet;
using MlNetPeft.Training;

namespace MlNetPeft.Examples;

public static class ParaphraseExample
{
    public sealed class Pair
    {
        public string Sentence1 { get; set; } = "";
        public string Sentence2 { get; set; } = "";
        public string Label { get; set; } = "";
    }

    public sealed class Prediction
    {
        public string PredictedLabel { get; set; } = "";
        public float[] Score { get; set; } = [];
    }

    public static bool Run(ExampleArgs args)
    {
        var ml = new MLContext(seed: 42);
        var glue = Path.Combine(args.DataDirectory, "glue");
        var train = GlueTask.Mrpc.Load(ml, glue, "train");
        if (args.MaxTrainRows > 0) train = ml.Data.TakeRows(train, args.MaxTrainRows);
        var dev = GlueTask.Mrpc.Load(ml, glue, "dev");
        if (args.MaxDevRows > 0) dev = ml.Data.TakeRows(dev, args.MaxDevRows);
        var labels = ml.Transforms.Conversion.MapValueToKey("Label", keyOrdinality: ValueToKeyMappingEstimator.KeyOrdinality.ByValue);

        var pipeline = labels
            .Append(ml.MulticlassClassification.Trainers.Msplora(new MsploraOptions
            {
                BackboneDirectory = args.Backbone, Sentence1ColumnName = "Sentence1", Sentence2ColumnName = "Sentence2",
                MaxEpochs = args.Epochs, LearningRate = args.LearningRate, Precision = args.Precision,
                TrainingStateDirectory = args.StateDirectory, LogEveryNSteps = 25,
                ValidationSet = labels.Fit(train).Transform(dev),
                ProgressCallback = p => Console.WriteLine("  " + p),
            }))
            .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedLabel"));
        Console.WriteLine($"Training MSPLoRA on MRPC sentence pairs ({args.MaxTrainRows} rows, {args.Epochs} epochs, backbone {args.Backbone})");
        var model = pipeline.Fit(train);

        var scored = model.Transform(dev);
        var metrics = ml.MulticlassClassification.Evaluate(scored);
        var gold = dev.GetColumn<ReadOnlyMemory<char>>("Label").Select(l => l.ToString() == "1" ? 1.0 : 0.0).ToArray();
        var predicted = scored.GetColumn<ReadOnlyMemory<char>>("PredictedLabel").Select(l => l.ToString() == "1" ? 1.0 : 0.0).ToArray();
        double majority = Math.Max(gold.Average(), 1 - gold.Average());
        Console.WriteLine($"Dev accuracy {metrics.MicroAccuracy:P1} (majority class {majority:P1}), F1 {Metrics.F1(predicted, gold):P1} " +
                          $"(always 'paraphrase' {Metrics.F1(gold.Select(_ => 1.0).ToArray(), gold):P1}), log-loss {metrics.LogLoss:F3}");

        var engine = args.SaveAndReload<Pair, Prediction>(ml, model, train.Schema);
        foreach (var (a, b) in new[]
                 {
                     ("The company said profits rose 10 percent in the quarter .", "Quarterly profit climbed 10 percent , the company said ."),
                     ("The storm knocked out power to thousands of homes .", "The senator will announce her decision on Monday ."),
                     ("He was arrested on Friday in Chicago .", "Police arrested him in Chicago on Friday ."),
                 })
        {
            var p = engine.Predict(new Pair { Sentence1 = a, Sentence2 = b });
            Console.WriteLine($"  {(p.PredictedLabel == "1" ? "paraphrase" : "different"),-10} p={p.Score[1]:F2}  {a} | {b}");
        }
        return metrics.MicroAccuracy >= majority - 0.02;
    }
}
