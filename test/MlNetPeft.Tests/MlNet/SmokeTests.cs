using Microsoft.ML;
using MlNetPeft.MlNet;

namespace MlNetPeft.Tests.MlNet;

[TestClass]
public sealed class SmokeTests
{
    [TestMethod]
    public void TrainsSavesLoads()
    {
        var ml = new MLContext(seed: 1);
        ml.Log += (_, e) => { if (e.Source.Contains("Msplora")) Console.WriteLine(e.Message); };
        var data = ml.Data.LoadFromEnumerable(ToyText.Rows(120, 1));
        var pipeline = ToyText.KeyLabel(ml).Append(ml.MulticlassClassification.Trainers.Msplora(new MsploraTextClassificationTrainer.Options
        {
            BackboneDirectory = TestData.TinyBackbone, MaxEpochs = 4, LearningRate = 5e-3, BatchSize = 16,
        })).Append(ToyText.KeyToValue(ml));
        var model = pipeline.Fit(data);
        var scored = model.Transform(data);
        var metrics = ml.MulticlassClassification.Evaluate(scored);
        Console.WriteLine($"acc {metrics.MacroAccuracy}");
        var path = Path.GetTempFileName();
        ml.Model.Save(model, data.Schema, path);
        var ml2 = new MLContext();
        var loaded = ml2.Model.Load(path, out _);
        var engine = ml2.Model.CreatePredictionEngine<ToyText.Row, ToyText.Prediction>(loaded);
        var p = engine.Predict(new ToyText.Row { Sentence1 = "apple banana" });
        Console.WriteLine($"{p.PredictedLabel} {string.Join(",", p.Score)}");
    }
}
