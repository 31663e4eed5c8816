using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetPeft.Glue;
using MlNetPeft.MlNet;
using MlNetPeft.Training;

namespace MlNetPeft.Examples;

public static class SimilarityExample
{
    public sealed class Pair
    {
        public string Sentence1 { get; set; } = "";
        public string Sentence2 { get; set; } = "";
        public float Label { get; set; }
    }

    public sealed class Prediction
    {
        public float Score { get; set; }
    }

    public static bool Run(ExampleArgs args)
    {
        var ml = new MLContext(seed: 42);
        TrainerLog.Print(ml, "Msplora", progress: false);
        var glue = Path.Combine(args.DataDirectory, "glue");
        var train = GlueTask.Stsb.Load(ml, glue, "train");
        if (args.MaxTrainRows > 0) train = ml.Data.TakeRows(train, args.MaxTrainRows);
        var dev = GlueTask.Stsb.Load(ml, glue, "dev");
        if (args.MaxDevRows > 0) dev = ml.Data.TakeRows(dev, args.MaxDevRows);

        var trainer = ml.Regression.Trainers.Msplora(new MsploraOptions
        {
            BackboneDirectory = args.Backbone, Sentence1ColumnName = "Sentence1", Sentence2ColumnName = "Sentence2",
            MaxEpochs = args.Epochs, LearningRate = args.LearningRate, Precision = args.Precision,
            TrainingStateDirectory = args.StateDirectory, LogEveryNSteps = 25, ValidationSet = dev,
            ProgressCallback = p => Console.WriteLine("  " + p),
        });
        Console.WriteLine($"Training MSPLoRA regression on STS-B pairs ({args.MaxTrainRows} rows, {args.Epochs} epochs, backbone {args.Backbone})");
        var model = trainer.Fit(train);

        var scored = model.Transform(dev);
        var metrics = ml.Regression.Evaluate(scored);
        var gold = scored.GetColumn<float>("Label").Select(v => (double)v).ToArray();
        var predicted = scored.GetColumn<float>("Score").Select(v => (double)v).ToArray();
        double mean = train.GetColumn<float>("Label").Average();
        double baselineRmse = Math.Sqrt(gold.Average(g => (g - mean) * (g - mean)));
        Console.WriteLine($"Dev Pearson {Metrics.Pearson(predicted, gold):F3}, Spearman {Metrics.Spearman(predicted, gold):F3} " +
                          $"(a constant prediction scores 0); RMSE {metrics.RootMeanSquaredError:F3} (predicting the train mean: {baselineRmse:F3}), " +
                          $"MAE {metrics.MeanAbsoluteError:F3}, R² {metrics.RSquared:F3}");

        var engine = args.SaveAndReload<Pair, Prediction>(ml, model, train.Schema);
        foreach (var (a, b) in new[]
                 {
                     ("A man is playing a guitar.", "A man plays the guitar."),
                     ("A woman is slicing an onion.", "A dog runs across the field."),
                     ("Two children are playing in the snow.", "Kids are playing outside in the snow."),
                 })
            Console.WriteLine($"  {engine.Predict(new Pair { Sentence1 = a, Sentence2 = b }).Score,4:F2} / 5  {a} | {b}");
        return Metrics.Pearson(predicted, gold) > 0;
    }
}
