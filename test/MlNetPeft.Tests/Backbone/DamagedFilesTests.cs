using System.Text;
using MlNetPeft.Backbone;

namespace MlNetPeft.Tests.Backbone;

/// <summary>
/// Files damaged as disks and downloads damage them (a few bytes changed, the end cut off), hundreds of times with a
/// fixed seed: each either still reads or fails with an <see cref="InvalidDataException"/> that names the file, never
/// another exception from a parser underneath (System.IO.Compression, System.Text.Json, Microsoft.ML.Tokenizers).
/// </summary>
[TestClass]
public sealed class DamagedFilesTests
{
    private static string Fixture(string path) => Path.Combine(AppContext.BaseDirectory, "Fixtures", path);

    [TestMethod]
    [DataRow("torch-save/pytorch_model.bin", DisplayName = "torch.save zip")]
    [DataRow("torch-save/legacy.bin", DisplayName = "torch.save before PyTorch 1.6")]
    [DataRow("hf-parity/tiny-roberta/model.safetensors", DisplayName = "safetensors")]
    public void ADamagedWeightsFileIsAnErrorNamingIt(string fixture)
    {
        var name = "damaged" + Path.GetExtension(fixture);
        EachDamagedCopy(File.ReadAllBytes(Fixture(fixture)), name, 400, bytes =>
        {
            foreach (var t in TensorFile.Load(bytes, name).Values) t.Dispose();
        });
    }

    [TestMethod]
    public void ATorchSaveZipCutShortSaysSo()
    {
        var good = File.ReadAllBytes(Fixture("torch-save/pytorch_model.bin"));
        var e = Assert.ThrowsExactly<InvalidDataException>(() => TensorFile.Load(good[..(good.Length / 2)], "half.bin"));
        StringAssert.StartsWith(e.Message, "half.bin: the zip archive is damaged");
        StringAssert.Contains(e.Message, "cut short");
    }

    [TestMethod]
    public void ADamagedTokenizerFileIsAnErrorNamingIt()
    {
        string File(string name) => Path.Combine(TestData.TinyBackbone, name);
        var vocab = System.IO.File.ReadAllBytes(File("vocab.json"));
        var merges = System.IO.File.ReadAllBytes(File("merges.txt"));
        EachDamagedCopy(vocab, "tokenizer-dir", 300, bytes => new RobertaTokenizer(bytes, merges, "tokenizer-dir"));
        EachDamagedCopy(merges, "tokenizer-dir", 300, bytes => new RobertaTokenizer(vocab, bytes, "tokenizer-dir"));
        EachDamagedCopy(Encoding.UTF8.GetBytes(RobertaTokenizerTests.TokenizerJson(TestData.TinyBackbone, mergesAsPairs: true)),
            "tokenizer.json", 300, bytes => RobertaTokenizer.FromTokenizerJson(bytes, "tokenizer.json"));
        EachDamagedCopy(System.IO.File.ReadAllBytes(Fixture("tokenizer/added_tokens.json")),
            "AddedTokens.json", 300, bytes => RobertaTokenizer.ReadAddedTokens(bytes, "AddedTokens.json"));
        EachDamagedCopy(System.IO.File.ReadAllBytes(File("config.json")), "config.json", 300,
            bytes => RobertaConfig.FromJson(Encoding.UTF8.GetString(bytes), "config.json"));
    }

    [TestMethod]
    public void AVocabularyGivingOneIdTwiceIsNamed()
    {
        var merges = System.IO.File.ReadAllBytes(Path.Combine(TestData.TinyBackbone, "merges.txt"));
        var e = Assert.ThrowsExactly<InvalidDataException>(() => new RobertaTokenizer(
            """{"<s>":0,"<pad>":1,"</s>":2,"<unk>":3,"<mask>":4,"a":5,"b":5}"""u8.ToArray(), merges, "dir"));
        Assert.AreEqual("dir: vocab.json gives id 5 to both 'a' and 'b'", e.Message);
    }

    /// <summary>Reads <paramref name="count"/> damaged copies of <paramref name="good"/>: one to three bytes changed
    /// (half the time within the first 4 KiB, where headers and pickles are), and one copy in five also cut short.</summary>
    private static void EachDamagedCopy(byte[] good, string name, int count, Action<byte[]> read)
    {
        const string Syntax = "{}[]\":,0123456789- \\\n";
        var random = new Random(1);
        int failed = 0;
        for (int i = 0; i < count; i++)
        {
            var bytes = (byte[])good.Clone();
            int region = random.Next(2) == 0 ? Math.Min(bytes.Length, 4096) : bytes.Length;
            for (int n = random.Next(1, 4); n > 0; n--)
                bytes[random.Next(region)] = (byte)(random.Next(2) == 0 ? random.Next(256) : Syntax[random.Next(Syntax.Length)]);
            if (random.Next(5) == 0) bytes = bytes[..random.Next(bytes.Length)];
            try { read(bytes); }
            catch (InvalidDataException e) when (e.Message.Contains(name, StringComparison.Ordinal)) { failed++; }
            catch (Exception e)
            {
                Assert.Fail($"damaged copy {i} of {name}: {e.GetType().Name}, not an InvalidDataException naming it: {e.Message}");
            }
        }
        Assert.IsGreaterThan(count / 10, failed, "most damage is noticed");
    }
}
