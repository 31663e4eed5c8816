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

    public static MsploraTextClassificationTrainer.Options Msplora(int epochs = 8) => Tiny(new MsploraTextClassificationTrainer.Options
    {
        MaxEpochs = epochs, LearningRate = 1e-2, BatchSize = 16, LoraDropout = 0, LogEveryNSteps = 5,
    });

    public static LoraTextClassificationTrainer.Options Lora(int epochs = 8) => Tiny(new LoraTextClassificationTrainer.Options
    {
        MaxEpochs = epochs, LearningRate = 1e-2, BatchSize = 16, LoraDropout = 0, LogEveryNSteps = 5,
    });

    /// <summary>MapValueToKey → trainer → MapKeyToValue, fitted; also returns the progress reports seen.</summary>
    public static (ITransformer Model, List<TrainingProgress> Progress) Fit(MLContext ml, IDataView data, PeftTextTrainerOptions options)
    {
        var progress = new List<TrainingProgress>();
        options.ProgressCallback = progress.Add;
        IEstimator<PeftTextTransformer> trainer = options switch
        {
            MsploraTextClassificationTrainer.Options o => ml.MulticlassClassification.Trainers.Msplora(o),
            LoraTextClassificationTrainer.Options o => ml.MulticlassClassification.Trainers.Lora(o),
            _ => throw new ArgumentException(options.GetType().Name),
        };
        var model = ToyText.KeyLabel(ml).Append(trainer).Append(ToyText.KeyToValue(ml)).Fit(data);
        return (model, progress);
    }

    public static float[][] Scores(ITransformer model, IDataView data, MLContext ml) =>
        ml.Data.CreateEnumerable<ScoreRow>(model.Transform(data), reuseRowObject: false).Select(r => r.Score).ToArray();

    public sealed class ScoreRow
    {
        public float[] Score { get; set; } = [];
    }

    /// <summary>A copy of the tiny backbone directory that a test may change or delete.</summary>
    public static string CopyOfTinyBackbone()
    {
        var dir = Directory.CreateTempSubdirectory("mlnetpeft-backbone-").FullName;
        foreach (var file in Directory.GetFiles(TestData.TinyBackbone)) File.Copy(file, Path.Combine(dir, Path.GetFileName(file)));
        return dir;
    }
}
