// Fits LoRA for one epoch on a few rows, saves the model zip, loads it back and compares the scores (also with the
// backbone embedded in the zip); then says
// whether its TorchSharp.dll carries the package's keep-alive patch. With --score, it is a service that only loads a
// saved zip and scores the same rows, in a process that has not touched MlNetPeft's types.
// Usage: PackageConsumer <RoBERTa checkpoint directory> <model zip path>
//        PackageConsumer --score <model zip path>
using Microsoft.ML;
using MlNetPeft.MlNet;

return args[0] == "--score" ? ScoreSaved(args[1]) : TrainSaveLoad(args[0], args[1]);

// Separate methods: the JIT loads an assembly when it compiles a method that names its types, so ScoreSaved's process
// loads MlNetPeft only when ML.NET's Model.Load asks for it (the zip names it).
static int TrainSaveLoad(string backbone, string zip)
{
    var ml = new MLContext(seed: 1);
    var data = ml.Data.LoadFromEnumerable(Review.Rows);
    var pipeline = ml.Transforms.Conversion.MapValueToKey("Label")
        .Append(ml.MulticlassClassification.Trainers.Lora(new LoraOptions { BackboneDirectory = backbone, MaxEpochs = 1, BatchSize = 4 }));
    var model = pipeline.Fit(data);
    ml.Model.Save(model, data.Schema, zip);
    var loaded = ml.Model.Load(zip, out _);

    var scores = Scored.Of(ml, model, data);
    var same = scores.Zip(Scored.Of(ml, loaded, data)).All(p => p.First.SequenceEqual(p.Second));
    Console.WriteLine($"rows scored: {Review.Rows.Length}, same scores after Model.Load: {same}");
    // A zip with the backbone inside: its entry is written and read past ML.NET's repository streams (its internals),
    // which this application's ML.NET version must still have.
    var embedding = ml.Transforms.Conversion.MapValueToKey("Label").Append(ml.MulticlassClassification.Trainers.Lora(
        new LoraOptions { BackboneDirectory = backbone, MaxEpochs = 1, BatchSize = 4, EmbedBackbone = true })).Fit(data);
    var embeddedZip = Path.ChangeExtension(zip, ".embedded.zip");
    ml.Model.Save(embedding, data.Schema, embeddedZip);
    var sameEmbedded = Scored.Of(ml, embedding, data).Zip(Scored.Of(ml, ml.Model.Load(embeddedZip, out _), data)).All(p => p.First.SequenceEqual(p.Second));
    Console.WriteLine($"same scores after Model.Load of a zip that embeds the backbone: {sameEmbedded}");
    same &= sameEmbedded;
    Console.WriteLine($"scores: {Scored.Format(scores)}");
    // The package's build targets patch this application's copy of TorchSharp.dll (README "Build notes").
    var patched = typeof(TorchSharp.torch).Assembly.GetManifestResourceNames().Contains("MlNetPeft.KeepAliveArguments");
    Console.WriteLine($"TorchSharp keeps Scalar and Tensor arguments alive: {patched}");
    return same ? 0 : 1;
}

static int ScoreSaved(string zip)
{
    bool loadedBefore = AppDomain.CurrentDomain.GetAssemblies().Any(a => a.GetName().Name == "MlNetPeft");
    var ml = new MLContext(seed: 1);
    var model = ml.Model.Load(zip, out _);
    Console.WriteLine($"MlNetPeft loaded before Model.Load: {loadedBefore}");
    Console.WriteLine($"scores: {Scored.Format(Scored.Of(ml, model, ml.Data.LoadFromEnumerable(Review.Rows)))}");
    return 0;
}

sealed class Review
{
    public static readonly Review[] Rows =
    [
        new() { Sentence1 = "a warm, funny film", Label = "pos" }, new() { Sentence1 = "dull and far too long", Label = "neg" },
        new() { Sentence1 = "a joy from start to end", Label = "pos" }, new() { Sentence1 = "the plot makes no sense", Label = "neg" },
    ];

    public string Sentence1 { get; set; } = "";
    public string Label { get; set; } = "";
}

sealed class Scored
{
    public float[] Score { get; set; } = [];

    public static float[][] Of(MLContext ml, ITransformer model, IDataView data) =>
        ml.Data.CreateEnumerable<Scored>(model.Transform(data), reuseRowObject: false).Select(r => r.Score).ToArray();

    /// <summary>Every score to the last bit (round-trip format), so two processes' outputs compare as text.</summary>
    public static string Format(float[][] scores) =>
        string.Join(" | ", scores.Select(row => string.Join(" ", row.Select(s => s.ToString("R", System.Globalization.CultureInfo.InvariantCulture)))));
}
