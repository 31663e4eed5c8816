// Fits LoRA for one epoch on a few rows, saves the model zip, loads it back and compares the scores; then says
// whether its TorchSharp.dll carries the package's keep-alive patch.
// Usage: PackageConsumer <RoBERTa checkpoint directory> <model zip path>
using Microsoft.ML;
using MlNetPeft.MlNet;

var ml = new MLContext(seed: 1);
var rows = new[]
{
    new Review { Sentence1 = "a warm, funny film", Label = "pos" }, new Review { Sentence1 = "dull and far too long", Label = "neg" },
    new Review { Sentence1 = "a joy from start to end", Label = "pos" }, new Review { Sentence1 = "the plot makes no sense", Label = "neg" },
};
var data = ml.Data.LoadFromEnumerable(rows);
var pipeline = ml.Transforms.Conversion.MapValueToKey("Label")
    .Append(ml.MulticlassClassification.Trainers.Lora(new LoraOptions { BackboneDirectory = args[0], MaxEpochs = 1, BatchSize = 4 }));
var model = pipeline.Fit(data);
ml.Model.Save(model, data.Schema, args[1]);
var loaded = ml.Model.Load(args[1], out _);

float[][] Scores(ITransformer m) =>
    ml.Data.CreateEnumerable<Scored>(m.Transform(data), reuseRowObject: false).Select(r => r.Score).ToArray();
var same = Scores(model).Zip(Scores(loaded)).All(p => p.First.SequenceEqual(p.Second));
Console.WriteLine($"rows scored: {rows.Length}, same scores after Model.Load: {same}");
// The package's build targets patch this application's copy of TorchSharp.dll (README "Build notes").
var patched = typeof(TorchSharp.torch).Assembly.GetManifestResourceNames().Contains("MlNetPeft.KeepAliveArguments");
Console.WriteLine($"TorchSharp keeps Scalar and Tensor arguments alive: {patched}");
return same ? 0 : 1;

sealed class Review
{
    public string Sentence1 { get; set; } = "";
    public string Label { get; set; } = "";
}

sealed class Scored
{
    public float[] Score { get; set; } = [];
}
