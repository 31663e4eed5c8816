using System.Text.Json.Nodes;
using Microsoft.ML;
using MlNetPeft.Backbone;
using MlNetPeft.MlNet;
using MlNetPeft.Tests.Adapters;

namespace MlNetPeft.Tests.MlNet;

/// <summary><see cref="PeftTextTrainerOptions.UseCheckpointHead"/>: starting from the head of a RobertaForSequenceClassification
/// checkpoint (the parity fixture's, made by transformers).</summary>
[TestClass]
public sealed class CheckpointHeadTests
{
    private static PeftTextTransformer Fit(MLContext ml, PeftTextTrainerOptions options, IEstimator<ITransformer>? keyLabel = null)
    {
        var data = ml.Data.LoadFromEnumerable(ToyText.Rows(40, seed: 1));
        return (keyLabel ?? ToyText.KeyLabel(ml)).Append(PeftTrainerFixture.Classifier(ml, options)).Fit(data).LastTransformer;
    }

    public static IEnumerable<object[]> Methods() =>
    [
        [new LoraOptions()], [new MsploraOptions()], [new AdaLoraOptions()], [new FullFineTuningOptions()],
    ];

    [TestMethod]
    [DynamicData(nameof(Methods))]
    public void WithoutTrainingItScoresAsTransformersAndSurvivesSaveAndLoad(PeftTextTrainerOptions options)
    {
        options = PeftTrainerFixture.Tiny(options);
        options.UseCheckpointHead = true;
        options.MaxEpochs = 0;
        var ml = new MLContext(seed: 1);
        PeftTrainerFixture.ScoresAsFixtureLogits(ml, Fit(ml, options), TestData.Parity.GetProperty("base_logits")); // transformers' own
    }

    [TestMethod]
    public void TrainingStartsFromTheHead()
    {
        PeftTextTransformer Run(bool useHead, int epochs)
        {
            var options = PeftTrainerFixture.Lora(epochs);
            options.UseCheckpointHead = useHead;
            return Fit(new MLContext(seed: 1), options);
        }
        var rows = AdapterTests.Rows();
        var headOnly = Run(useHead: true, epochs: 0).Predict(rows);
        var fresh = Run(useHead: false, epochs: 1).Predict(rows);
        var fromHead = Run(useHead: true, epochs: 1).Predict(rows);
        double Distance(float[][] a, float[][] b) => a.Zip(b).Max(p => p.First.Zip(p.Second).Max(v => Math.Abs(v.First - v.Second)));
        // One epoch from the checkpoint's head is another model than one epoch from a fresh head, and it moved.
        Assert.IsGreaterThan(1e-3, Distance(fromHead, fresh));
        Assert.IsGreaterThan(1e-3, Distance(fromHead, headOnly));
    }

    [TestMethod]
    public void ClassNamesMustFollowTheCheckpointsId2Label()
    {
        // The data's classes are fruit, animal, number; a checkpoint that names them in another order.
        var backbone = TestFolders.Create("named-head");
        foreach (var f in Directory.GetFiles(TestData.TinyBackbone)) File.Copy(f, Path.Combine(backbone, Path.GetFileName(f)));
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(backbone, "config.json")))!.AsObject();
        config["id2label"] = new JsonObject { ["0"] = "number", ["1"] = "fruit", ["2"] = "animal" };
        File.WriteAllText(Path.Combine(backbone, "config.json"), config.ToJsonString());
        var options = PeftTrainerFixture.Tiny(new LoraOptions { BackboneDirectory = backbone, UseCheckpointHead = true, MaxEpochs = 0 });
        var ml = new MLContext(seed: 1);

        var e = Assert.ThrowsExactly<ArgumentException>(() => Fit(ml, options));
        StringAssert.Contains(e.Message, "[number, fruit, animal]");
        StringAssert.Contains(e.Message, "'Label'");

        // Keys in the head's order: accepted, and the predicted names follow id2label.
        var order = ml.Data.LoadFromEnumerable(new[] { "number", "fruit", "animal" }.Select(n => new { Label = n }));
        var model = Fit(ml, options, ml.Transforms.Conversion.MapValueToKey("Label", keyData: order));
        CollectionAssert.AreEqual(new[] { "number", "fruit", "animal" }, model.LabelValues!.Names().ToArray());
    }

    [TestMethod]
    public void ABackboneWithATokenizerJsonInsteadOfVocabAndMergesScoresTheSame()
    {
        var backbone = TestFolders.Create("tokenizer-json-backbone");
        foreach (var f in new[] { "config.json", "model.safetensors" })
            File.Copy(Path.Combine(TestData.TinyBackbone, f), Path.Combine(backbone, f));
        File.WriteAllText(Path.Combine(backbone, "tokenizer.json"), Backbone.RobertaTokenizerTests.TokenizerJson(TestData.TinyBackbone, mergesAsPairs: true));
        PeftTextTransformer Start(string directory) =>
            Fit(new MLContext(seed: 1), PeftTrainerFixture.Tiny(new LoraOptions { BackboneDirectory = directory, UseCheckpointHead = true, MaxEpochs = 0 }));

        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(ToyText.Rows(12, seed: 3));
        var keyed = ToyText.KeyLabel(ml).Fit(data).Transform(data);
        float[] Scores(ITransformer model) => PeftTrainerFixture.Scores(model, keyed, ml).SelectMany(s => s).ToArray();
        var fromJson = Start(backbone);
        var zip = Path.Combine(backbone, "model.zip");
        ml.Model.Save(fromJson, null, zip);
        var expected = Scores(Start(TestData.TinyBackbone));
        CollectionAssert.AreEqual(expected, Scores(fromJson));
        CollectionAssert.AreEqual(expected, Scores(ml.Model.Load(zip, out _)));
    }

    /// <summary>A tiny backbone whose tokenizer.json adds tokens (ids 260 on, after its byte vocabulary) as a user's
    /// fine-tuned checkpoint does: "[URL]", and "@@" taking the whitespace around it.</summary>
    private static string BackboneWithAddedTokens(params string[] more)
    {
        var backbone = TestFolders.Create("added-tokens-backbone");
        foreach (var f in new[] { "config.json", "model.safetensors" })
            File.Copy(Path.Combine(TestData.TinyBackbone, f), Path.Combine(backbone, f));
        var json = JsonNode.Parse(Backbone.RobertaTokenizerTests.TokenizerJson(TestData.TinyBackbone, mergesAsPairs: true))!;
        json["added_tokens"] = new JsonArray(new[] { ("[URL]", false), ("@@", true) }.Concat(more.Select(m => (m, false)))
            .Select((t, i) => (JsonNode)new JsonObject
            {
                ["id"] = 260 + i, ["content"] = t.Item1, ["single_word"] = false, ["lstrip"] = t.Item2, ["rstrip"] = t.Item2,
                ["normalized"] = true, ["special"] = false,
            }).ToArray());
        File.WriteAllText(Path.Combine(backbone, "tokenizer.json"), json.ToJsonString());
        return backbone;
    }

    [TestMethod]
    public void AddedTokensKeepTheirIdsInTheZipAndTheMergedCheckpoint()
    {
        var backbone = BackboneWithAddedTokens();
        var ml = new MLContext(seed: 1);
        var rows = ToyText.Rows(12, seed: 3).Select((r, i) => new ToyText.Row { Sentence1 = r.Sentence1 + (i % 2 == 0 ? " [URL]" : "  @@ x"), Label = r.Label });
        var data = ml.Data.LoadFromEnumerable(rows);
        var keyed = ToyText.KeyLabel(ml).Fit(data).Transform(data);
        PeftTextTransformer Start(string directory) =>
            Fit(new MLContext(seed: 1), PeftTrainerFixture.Tiny(new LoraOptions { BackboneDirectory = directory, UseCheckpointHead = true, MaxEpochs = 0 }));
        float[] Scores(ITransformer model) => PeftTrainerFixture.Scores(model, keyed, ml).SelectMany(s => s).ToArray();

        var model = Start(backbone);
        int[] expected = [0, 101, 36, 260, 101, 261, 124, 2]; // <s> a Ġ [URL] a @@ x </s>: @@ takes the spaces around it, [URL] none
        CollectionAssert.AreEqual(expected, model.Tokenizer.Encode("a [URL]a  @@ x", null, 32));
        var zip = Path.Combine(backbone, "model.zip");
        ml.Model.Save(model, null, zip);
        var reloaded = (PeftTextTransformer)ml.Model.Load(zip, out _);
        CollectionAssert.AreEqual(expected, reloaded.Tokenizer.Encode("a [URL]a  @@ x", null, 32));
        CollectionAssert.AreEqual(Scores(model), Scores(reloaded));
        CollectionAssert.AreNotEqual(Scores(Start(TestData.TinyBackbone)), Scores(model), "the added tokens are read");

        // A zip written before zips kept added tokens (and before their checksums, model version 0x00010001) has
        // RoBERTa's special tokens only.
        var older = Path.Combine(backbone, "older.zip");
        File.WriteAllBytes(older, ZipCopies.WithTransformerVersion(ZipCopies.WithEntry(ZipCopies.WithEntry(File.ReadAllBytes(zip),
            "AddedTokens.json", _ => null), "Checksums.json", _ => null), 0x00010001));
        var olderModel = (PeftTextTransformer)ml.Model.Load(older, out _);
        CollectionAssert.AreEqual(RobertaTokenizer.FromDirectory(TestData.TinyBackbone).Encode("a [URL]a  @@ x", null, 32),
            olderModel.Tokenizer.Encode("a [URL]a  @@ x", null, 32));

        var merged = Path.Combine(backbone, "merged");
        model.SaveMergedCheckpoint(merged);
        CollectionAssert.AreEqual(expected, RobertaTokenizer.FromDirectory(merged).Encode("a [URL]a  @@ x", null, 32));
    }

    [TestMethod]
    public void AnAddedTokenBeyondTheEmbeddingsIsNamed()
    {
        // 741 added tokens number up to id 1000; the tiny config has vocab_size 1000.
        var backbone = BackboneWithAddedTokens(Enumerable.Range(0, 739).Select(i => $"[T{i}]").ToArray());
        var e = Assert.ThrowsExactly<InvalidDataException>(() =>
            Fit(new MLContext(seed: 1), PeftTrainerFixture.Tiny(new LoraOptions { BackboneDirectory = backbone, UseCheckpointHead = true, MaxEpochs = 0 })));
        StringAssert.Contains(e.Message, "1001 tokens");
        StringAssert.Contains(e.Message, "vocab_size 1000");
    }

    [TestMethod]
    public void AMissingOrMisfitHeadIsNamed()
    {
        var ml = new MLContext(seed: 1);
        // roberta-mini is a masked-LM checkpoint: no classifier.
        var noHead = PeftTrainerFixture.Tiny(new LoraOptions { BackboneDirectory = TestData.RobertaMini, UseCheckpointHead = true, MaxEpochs = 0 });
        var e = Assert.ThrowsExactly<InvalidDataException>(() => Fit(ml, noHead));
        StringAssert.Contains(e.Message, "model.safetensors");
        StringAssert.Contains(e.Message, "no classification head");

        // The fixture's head has 3 classes, this data 2.
        var twoClasses = ml.Data.LoadFromEnumerable(ToyText.Rows(20, seed: 1, classes: 2));
        var misfit = PeftTrainerFixture.Tiny(new LoraOptions { UseCheckpointHead = true, MaxEpochs = 0 });
        e = Assert.ThrowsExactly<InvalidDataException>(() => PeftTrainerFixture.Fit(ml, twoClasses, misfit));
        StringAssert.Contains(e.Message, "classifier.out_proj");
        StringAssert.Contains(e.Message, "this data's head needs [2");

        var both = PeftTrainerFixture.Tiny(new LoraOptions { UseCheckpointHead = true, InitialPeftAdapter = TestData.TinyLora, MaxEpochs = 0 });
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentException>(() => Fit(ml, both)).Message, "set one of them");
        var noText = ml.Data.LoadFromEnumerable(new[] { new { Other = 1f } }); // refused before the data is read
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentException>(() => PeftTrainerFixture.Classifier(ml, both).Fit(noText)).Message, "set one of them");
    }
}
