using Microsoft.ML;
using Microsoft.ML.Data;
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
    }

    public sealed class Prediction
    {
        public bool PredictedLabel { get; set; }
        public float Probability { get; set; }
    }

    public static bool Run(ExampleArgs args)
    {
        var ml = new MLContext(seed: 42);
        TrainerLog.Print(ml, "Msplora", progress: false);
        var glue = Path.Combine(args.DataDirectory, "glue");
        // MRPC's label is "1" (paraphrase) or "0": a Boolean label, so the binary trainer needs no MapValueToKey.
        var toBoolean = ml.Transforms.Conversion.ConvertType("Label", outputKind: DataKind.Boolean);
        IDataView Load(string split, int maxRows)
        {
            var data = GlueTask.Mrpc.Load(ml, glue, split);
            if (maxRows > 0) data = ml.Data.TakeRows(data, maxRows);
            return toBoolean.Fit(data).Transform(data);
        }
        var train = Load("train", args.MaxTrainRows);
        var dev = Load("dev", args.MaxDevRows);

        var trainer = ml.BinaryClassification.Trainers.Msplora(new MsploraOptions
        {
            BackboneDirectory = args.Backbone, Sentence1ColumnName = "Sentence1", Sentence2ColumnName = "Sentence2",
            MaxEpochs = args.Epochs, LearningRate = args.LearningRate, Precision = args.Precision,
            TrainingStateDirectory = args.StateDirectory, LogEveryNSteps = 25, ValidationSet = dev,
            ProgressCallback = p => Console.WriteLine("  " + p),
        });
        Console.WriteLine($"Training MSPLoRA on MRPC sentence pairs ({args.MaxTrainRows} rows, {args.Epochs} epochs, backbone {args.Backbone})");
        var model = trainer.Fit(train);

        var metrics = ml.BinaryClassification.Evaluate(model.Transform(dev));
        var gold = dev.GetColumn<bool>("Label").Select(l => l ? 1.0 : 0.0).ToArray();
        double majority = Math.Max(gold.Average(), 1 - gold.Average());
        Console.WriteLine($"Dev accuracy {metrics.Accuracy:P1} (majority class {majority:P1}), F1 {metrics.F1Score:P1} " +
                          $"(always 'paraphrase' {Metrics.F1(gold.Select(_ => 1.0).ToArray(), gold):P1}), AUC {metrics.AreaUnderRocCurve:F3}, log-loss {metrics.LogLoss:F3} bits");

        var engine = args.SaveAndReload<Pair, Prediction>(ml, model, train.Schema);
        foreach (var (a, b) in new[]
                 {
                     ("The company said profits rose 10 percent in the quarter .", "Quarterly profit climbed 10 percent , the company said ."),
                     ("The storm knocked out power to thousands of homes .", "The senator will announce her decision on Monday ."),
                     ("He was arrested on Friday in Chicago .", "Police arrested him in Chicago on Friday ."),
                 })
        {
            var p = engine.Predict(new Pair { Sentence1 = a, Sentence2 = b });
            Console.WriteLine($"  {(p.PredictedLabel ? "paraphrase" : "different"),-10} p={p.Probability:F2}  {a} | {b}");
        }
        return metrics.Accuracy >= majority - 0.02;
    }
}
