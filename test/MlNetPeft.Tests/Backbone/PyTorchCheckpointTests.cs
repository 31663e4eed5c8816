using System.IO.Compression;
using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetPeft.Backbone;
using MlNetPeft.MlNet;
using MlNetPeft.Tests.Adapters;
using MlNetPeft.Tests.MlNet;
using static TorchSharp.torch;

namespace MlNetPeft.Tests.Backbone;

/// <summary>
/// pytorch_model.bin and adapter_model.bin, written by torch.save (PyTorch 1.13, Fixtures/torch-save/make.py): the
/// format of HF checkpoints made before safetensors.
/// </summary>
[TestClass]
public sealed class PyTorchCheckpointTests
{
    private static string Fixture(string name) => Path.Combine(AppContext.BaseDirectory, "Fixtures", "torch-save", name);

    [TestMethod]
    [DataRow("pytorch_model.bin", "tiny-roberta/model.safetensors", DisplayName = "zip (PyTorch 1.6 and later)")]
    [DataRow("legacy.bin", "tiny-lora/adapter_model.safetensors", DisplayName = "legacy (before PyTorch 1.6)")]
    public void ReadsEveryTensorAsTorchSavedIt(string file, string savedFrom)
    {
        var expected = SafeTensors.Load(Path.Combine(TestData.Fixtures, savedFrom))
            .Concat(SafeTensors.Load(Fixture("expected.safetensors"))).ToDictionary();
        var read = TensorFile.Load(Fixture(file));
        CollectionAssert.AreEquivalent(expected.Keys.ToArray(), read.Keys.ToArray());
        foreach (var (name, want) in expected)
        {
            var got = read[name];
            Assert.AreEqual(name == "extra.bool" ? ScalarType.Bool : want.dtype, got.dtype, name);
            CollectionAssert.AreEqual(want.shape, got.shape, name);
            Assert.IsTrue(got.to(want.dtype).eq(want).all().item<bool>(), $"{name} values");
        }
        // The views at offsets into one storage and the transposed one keep their strides.
        Assert.AreEqual(6f, read["extra.window"][0, 0].item<float>());
        Assert.IsFalse(read["extra.transposed"].is_contiguous());
        foreach (var t in expected.Values.Concat(read.Values)) t.Dispose();
    }

    [TestMethod]
    [DataRow("pytorch_model.bin", "tiny-roberta/model.safetensors", "roberta.encoder.layer.1.attention.self.query.weight", DisplayName = "zip")]
    [DataRow("legacy.bin", "tiny-lora/adapter_model.safetensors", "base_model.model.roberta.encoder.layer.1.attention.self.query.lora_A.weight", DisplayName = "legacy")]
    public void ATensorIsReadFromTheFileAndAWholeStorageStraightIntoItsTarget(string file, string savedFrom, string weight)
    {
        var expected = SafeTensors.Load(Path.Combine(TestData.Fixtures, savedFrom))
            .Concat(SafeTensors.Load(Fixture("expected.safetensors"))).ToDictionary();
        using var source = TensorFile.Open(Fixture(file));
        Assert.IsInstanceOfType<PyTorchCheckpointReader>(source);
        CollectionAssert.AreEquivalent(expected.Keys.ToArray(), source.Names.ToArray());

        using var target = full(expected[weight].shape, float.NaN);
        Assert.IsTrue(source.TryReadInto(weight, target));
        Assert.IsTrue(Same(target, expected[weight]));
        using var asHalf = zeros(expected[weight].shape, ScalarType.Float16);
        Assert.IsFalse(source.TryReadInto(weight, asHalf), "another dtype is read and converted by the caller");
        foreach (var view in new[] { "extra.window", "extra.first_row", "extra.transposed" })
        {
            using var into = zeros(expected[view].shape, expected[view].dtype);
            Assert.IsFalse(source.TryReadInto(view, into), $"{view} is part of its storage, or strided");
            using var read = source.Read(view)!;
            Assert.IsTrue(Same(read, expected[view]), view);
        }
        Assert.IsNull(source.Read("roberta.no.such.weight"));
        foreach (var t in expected.Values) t.Dispose();
    }

    private static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    [TestMethod]
    public void ABackboneAndAdapterInPickledFilesScoreAsTheirSafetensorsAndEmbedInTheZip()
    {
        var backbone = TestFolders.Create("pickled-backbone");
        foreach (var f in new[] { "config.json", "vocab.json", "merges.txt" })
            File.Copy(Path.Combine(TestData.TinyBackbone, f), Path.Combine(backbone, f));
        File.Copy(Fixture("pytorch_model.bin"), Path.Combine(backbone, "pytorch_model.bin"));
        var adapter = TestFolders.Create("pickled-adapter");
        File.Copy(Path.Combine(TestData.TinyLora, "adapter_config.json"), Path.Combine(adapter, "adapter_config.json"));
        File.Copy(Fixture("adapter_model.bin"), Path.Combine(adapter, "adapter_model.bin"));

        var rows = AdapterTests.Rows();
        var fromSafetensors = Start(TestData.TinyBackbone, TestData.TinyLora, embed: false).Predict(rows);
        var pickled = Start(backbone, adapter, embed: true);
        var fromPickled = pickled.Predict(rows);
        for (int r = 0; r < rows.Count; r++) CollectionAssert.AreEqual(fromSafetensors[r], fromPickled[r], $"row {r}");

        var zip = Path.Combine(TestFolders.Create("pickled-zip"), "model.zip");
        new MLContext().Model.Save(pickled, null, zip);
        Directory.Delete(backbone, recursive: true); // the zip carries the .bin itself
        var reloaded = (PeftTextTransformer)new MLContext().Model.Load(zip, out _);
        var reloadedScores = reloaded.Predict(rows);
        for (int r = 0; r < rows.Count; r++) CollectionAssert.AreEqual(fromPickled[r], reloadedScores[r], $"row {r} after reload");
        using var archive = ZipFile.OpenRead(zip);
        Assert.IsTrue(archive.Entries.Any(e => e.FullName.EndsWith("Backbone.bin", StringComparison.Ordinal)));
    }

    private static PeftTextTransformer Start(string backbone, string adapter, bool embed)
    {
        var ml = new MLContext(seed: 1);
        var options = PeftTrainerFixture.Tiny(new LoraOptions
        {
            BackboneDirectory = backbone, InitialPeftAdapter = adapter, MaxEpochs = 0, EmbedBackbone = embed,
        });
        return ((TransformerChain<ITransformer>)PeftTrainerFixture.Fit(ml, ml.Data.LoadFromEnumerable(ToyText.Rows(40, seed: 1)), options).Model)
            .OfType<PeftTextTransformer>().Single();
    }

    [TestMethod]
    public void APickleThatCallsAnythingElseIsRefusedNotRun()
    {
        // The classic exploit: os.system('echo pwned') on unpickling.
        var bytes = Rezip(File.ReadAllBytes(Fixture("pytorch_model.bin")), "data.pkl", Bytes("\u0080\u0002cos\nsystem\nq\u0000X\u000a\u0000\u0000\u0000echo pwnedq\u0001\u0085q\u0002Rq\u0003."));
        var e = Assert.ThrowsExactly<InvalidDataException>(() => TensorFile.Load(bytes, "evil.bin"));
        StringAssert.Contains(e.Message, "evil.bin");
        StringAssert.Contains(e.Message, "os.system");
    }

    [TestMethod]
    public void BrokenFilesAreNamed()
    {
        var good = File.ReadAllBytes(Fixture("pytorch_model.bin"));
        var missingStorage = Rezip(good, "data/0", null);
        StringAssert.Contains(Assert.ThrowsExactly<InvalidDataException>(() => TensorFile.Load(missingStorage, "a.bin")).Message, "a.bin: storage data/0 is missing");
        var shortStorage = Rezip(good, "data/0", new byte[3]);
        StringAssert.Contains(Assert.ThrowsExactly<InvalidDataException>(() => TensorFile.Load(shortStorage, "b.bin")).Message, "b.bin: storage data/0 holds 3 bytes");
        var cut = Rezip(good, "data.pkl", Bytes("\u0080\u0002}q\u0000(X\u0001\u0000\u0000\u0000a"));
        StringAssert.Contains(Assert.ThrowsExactly<InvalidDataException>(() => TensorFile.Load(cut, "c.bin")).Message, "c.bin: data.pkl ends without STOP");
        var legacy = File.ReadAllBytes(Fixture("legacy.bin"));
        StringAssert.Contains(Assert.ThrowsExactly<InvalidDataException>(() => TensorFile.Load(legacy[..^100], "d.bin")).Message, "is cut short");

        var neither = Path.Combine(TestFolders.Create("neither"), "pytorch_model.bin");
        File.WriteAllText(neither, "<html>a download that went wrong</html>");
        var e = Assert.ThrowsExactly<InvalidDataException>(() => TensorFile.Load(neither));
        StringAssert.Contains(e.Message, neither);
        StringAssert.Contains(e.Message, "neither a zip archive nor a legacy file of torch.save");
    }

    [TestMethod]
    public void ADirectoryWithNeitherWeightsFileNamesBoth()
    {
        var dir = TestFolders.Create("no-weights");
        foreach (var f in new[] { "config.json", "vocab.json", "merges.txt" })
            File.Copy(Path.Combine(TestData.TinyBackbone, f), Path.Combine(dir, f));
        var e = Assert.ThrowsExactly<FileNotFoundException>(() => new CheckpointDirectory(dir));
        StringAssert.Contains(e.Message, "model.safetensors");
        StringAssert.Contains(e.Message, "pytorch_model.bin");
        File.WriteAllText(Path.Combine(dir, "model.safetensors.index.json"), "{}");
        StringAssert.Contains(Assert.ThrowsExactly<FileNotFoundException>(() => new CheckpointDirectory(dir)).Message, "sharded");
    }

    /// <summary>Pickle bytes written as a string of code points 0–255.</summary>
    private static byte[] Bytes(string codes) => System.Text.Encoding.Latin1.GetBytes(codes);

    /// <summary>A copy of a torch.save zip with one entry (named after the archive's folder) replaced, or removed where <paramref name="content"/> is null.</summary>
    private static byte[] Rezip(byte[] original, string entry, byte[]? content) => ZipCopies.WithEntry(original, entry, _ => content);
}
