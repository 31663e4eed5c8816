using MlNetPeft.Backbone;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetPeft.Tests.Backbone;

[TestClass]
public sealed class CheckpointTests
{
    private static RobertaConfig TinyConfig => RobertaConfig.Load(Path.Combine(TestData.TinyRoberta, "config.json"));

    [TestMethod]
    public void SafeTensorsRoundTripsEachDType()
    {
        using var scope = NewDisposeScope();
        var original = new Dictionary<string, Tensor>
        {
            ["a.f32"] = randn(3, 4),
            ["b.f16"] = randn(5).to(ScalarType.Float16),
            ["c.bf16"] = randn(2, 2, 2).to(ScalarType.BFloat16),
        };
        var bytes = SafeTensors.Save(original, new Dictionary<string, string> { ["format"] = "pt" });
        var loaded = SafeTensors.Load(bytes, "memory");
        Assert.HasCount(3, loaded);
        foreach (var (name, t) in original)
        {
            Assert.AreEqual(t.dtype, loaded[name].dtype, name);
            CollectionAssert.AreEqual(t.shape, loaded[name].shape, name);
            Assert.IsTrue(t.to(ScalarType.Float32).equal(loaded[name].to(ScalarType.Float32)).all().item<bool>(), name);
        }
        Assert.AreEqual("pt", SafeTensors.ReadMetadata(bytes)["format"]);
    }

    [TestMethod]
    public void CorruptSafeTensorsIsAnErrorNamingTheSource()
    {
        var e = Assert.ThrowsExactly<InvalidDataException>(() => SafeTensors.Load(new byte[] { 255, 255, 255, 255, 0, 0, 0, 0, 1 }, "broken.safetensors"));
        StringAssert.Contains(e.Message, "broken.safetensors");
    }

    [TestMethod]
    public void MissingTensorIsNamedWithItsFile()
    {
        var weights = SafeTensors.Load(Path.Combine(TestData.TinyRoberta, "model.safetensors"));
        weights.Remove("roberta.encoder.layer.2.attention.self.value.weight");
        using var network = new RobertaForSequenceClassification(TinyConfig, 3);
        var e = Assert.ThrowsExactly<InvalidDataException>(() => CheckpointLoader.Load(network, weights, "some/model.safetensors", false));
        StringAssert.Contains(e.Message, "roberta.encoder.layer.2.attention.self.value.weight");
        StringAssert.Contains(e.Message, "some/model.safetensors");
    }

    [TestMethod]
    public void WrongShapeIsNamedWithBothShapes()
    {
        var weights = SafeTensors.Load(Path.Combine(TestData.TinyRoberta, "model.safetensors"));
        weights["roberta.encoder.layer.0.intermediate.dense.weight"] = zeros(64, 64);
        using var network = new RobertaForSequenceClassification(TinyConfig, 3);
        var e = Assert.ThrowsExactly<InvalidDataException>(() => CheckpointLoader.Load(network, weights, "x.safetensors", false));
        StringAssert.Contains(e.Message, "roberta.encoder.layer.0.intermediate.dense.weight");
        StringAssert.Contains(e.Message, "[64,64]");
        StringAssert.Contains(e.Message, "[128,64]");
    }

    [TestMethod]
    public void CheckpointDirectoryNamesTheMissingFile()
    {
        var dir = TestFolders.Create();
        File.Copy(Path.Combine(TestData.TinyRoberta, "config.json"), Path.Combine(dir, "config.json"));
        var e = Assert.ThrowsExactly<FileNotFoundException>(() => new CheckpointDirectory(dir));
        StringAssert.Contains(e.Message, "model.safetensors");
        Assert.ThrowsExactly<DirectoryNotFoundException>(() => new CheckpointDirectory(Path.Combine(dir, "nope")));
    }

    [TestMethod]
    public void BadConfigIsRejected()
    {
        var e = Assert.ThrowsExactly<InvalidDataException>(() => RobertaConfig.FromJson("""{"hidden_size": 100, "num_attention_heads": 12}""", "cfg.json"));
        StringAssert.Contains(e.Message, "cfg.json");
        Assert.ThrowsExactly<InvalidDataException>(() => RobertaConfig.FromJson("""{"model_type": "bert"}""", "cfg.json"));
        // Settings the encoder does not implement are refused by name, not run as if absent.
        StringAssert.Contains(Assert.ThrowsExactly<InvalidDataException>(
            () => RobertaConfig.FromJson("""{"position_embedding_type": "relative_key"}""", "cfg.json")).Message, "position_embedding_type 'relative_key'");
        StringAssert.Contains(Assert.ThrowsExactly<InvalidDataException>(
            () => RobertaConfig.FromJson("""{"is_decoder": true}""", "cfg.json")).Message, "is_decoder");
        // Values that would make NaN or no normalisation later are refused where they are read.
        StringAssert.Contains(Assert.ThrowsExactly<InvalidDataException>(
            () => RobertaConfig.FromJson("""{"hidden_dropout_prob": 1.0}""", "cfg.json")).Message, "hidden_dropout_prob");
        StringAssert.Contains(Assert.ThrowsExactly<InvalidDataException>(
            () => RobertaConfig.FromJson("""{"classifier_dropout": -0.1}""", "cfg.json")).Message, "classifier_dropout");
        StringAssert.Contains(Assert.ThrowsExactly<InvalidDataException>(
            () => RobertaConfig.FromJson("""{"layer_norm_eps": 0}""", "cfg.json")).Message, "layer_norm_eps");
        Assert.AreEqual("absolute", RobertaConfig.FromJson("""{"position_embedding_type": "absolute", "is_decoder": false}""", "cfg.json").PositionEmbeddingType);
    }

    [TestMethod]
    public void Float16CheckpointLoadsIntoFloat32Model()
    {
        var dir = new CheckpointDirectory(TestData.RobertaMini);
        var config = dir.LoadConfig();
        var weights = SafeTensors.Load(dir.WeightsFile);
        using var network = new RobertaForSequenceClassification(config, 2);
        CheckpointLoader.Load(network, weights, dir.WeightsFile, false);
        var loaded = network.state_dict()["roberta.encoder.layer.5.output.dense.weight"];
        Assert.AreEqual(ScalarType.Float32, loaded.dtype);
        var source = weights["roberta.encoder.layer.5.output.dense.weight"];
        Assert.AreEqual(ScalarType.Float16, source.dtype);
        Assert.IsTrue(loaded.equal(source.to(ScalarType.Float32)).all().item<bool>());

        network.eval();
        using var _ = no_grad();
        var ids = tensor(new long[] { 0, 31414, 232, 2 }).unsqueeze(0);
        Assert.IsTrue(network.call(ids, null).isfinite().all().item<bool>());
    }
}
