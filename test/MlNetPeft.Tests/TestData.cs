using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace MlNetPeft.Tests;

/// <summary>Paths of the fixtures and data the tests use, and a tiny backbone directory built from them.</summary>
internal static class TestData
{
    public static string Fixtures => Path.Combine(AppContext.BaseDirectory, "Fixtures", "hf-parity");
    public static string TinyRoberta => Path.Combine(Fixtures, "tiny-roberta");
    public static string TinyLora => Path.Combine(Fixtures, "tiny-lora");

    /// <summary>PEFT adapters for the tiny RoBERTa written by following peft's code (Fixtures/peft-emulated/make.py).</summary>
    public static string PeftEmulated => Path.Combine(AppContext.BaseDirectory, "Fixtures", "peft-emulated");

    /// <summary>A PEFT AdaLoRA adapter, pruned by its rank_pattern.</summary>
    public static string TinyAdaLora => Path.Combine(PeftEmulated, "tiny-adalora");

    /// <summary>A PEFT LoRA adapter whose rank_pattern and alpha_pattern give its modules other ranks and alphas.</summary>
    public static string TinyLoraPatterns => Path.Combine(PeftEmulated, "tiny-lora-patterns");

    /// <summary>The repository root (holds models/ and data/).</summary>
    public static string RepoRoot
    {
        get
        {
            var dir = new DirectoryInfo(AppContext.BaseDirectory);
            while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "MlNetPeft.sln"))) dir = dir.Parent;
            return dir?.FullName ?? throw new InvalidOperationException("repository root not found above " + AppContext.BaseDirectory);
        }
    }

    public static string RobertaMini => Path.Combine(RepoRoot, "models", "roberta-mini");

    private static readonly Lazy<string> TinyBackboneDir = new(BuildTinyBackbone);

    /// <summary>
    /// The tiny fixture RoBERTa (vocabulary 1,000) as a full checkpoint directory: its config and weights plus
    /// a byte-level vocabulary (4 specials + 256 byte symbols, no merges) so any text tokenizes into ids &lt; 260.
    /// </summary>
    public static string TinyBackbone => TinyBackboneDir.Value;

    private static string BuildTinyBackbone()
    {
        var dir = TestFolders.Create("tiny-backbone-");
        File.Copy(Path.Combine(TinyRoberta, "config.json"), Path.Combine(dir, "config.json"), true);
        File.Copy(Path.Combine(TinyRoberta, "model.safetensors"), Path.Combine(dir, "model.safetensors"), true);
        var vocab = new Dictionary<string, int> { ["<s>"] = 0, ["<pad>"] = 1, ["</s>"] = 2, ["<unk>"] = 3 };
        foreach (var symbol in ByteLevelSymbols()) vocab[symbol] = vocab.Count;
        File.WriteAllText(Path.Combine(dir, "vocab.json"),
            JsonSerializer.Serialize(vocab, new JsonSerializerOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }), Encoding.UTF8);
        File.WriteAllText(Path.Combine(dir, "merges.txt"), "#version: 0.2\n");
        return dir;
    }

    /// <summary>GPT-2's byte-to-unicode map: the 256 symbols byte-level BPE works on.</summary>
    private static IEnumerable<string> ByteLevelSymbols()
    {
        var printable = Enumerable.Range(33, 94).Concat(Enumerable.Range(161, 12)).Concat(Enumerable.Range(174, 82)).ToHashSet();
        int extra = 0;
        for (int b = 0; b < 256; b++)
            yield return ((char)(printable.Contains(b) ? b : 256 + extra++)).ToString();
    }

    public static JsonElement Parity => ParityDoc.Value.RootElement;
    private static readonly Lazy<JsonDocument> ParityDoc = new(() => JsonDocument.Parse(File.ReadAllText(Path.Combine(Fixtures, "parity.json"))));

    /// <summary>PEFT's logits with each of <see cref="PeftEmulated"/>'s adapters on the parity inputs, and their ranks.</summary>
    public static JsonElement PeftEmulatedExpected => PeftEmulatedDoc.Value.RootElement;
    private static readonly Lazy<JsonDocument> PeftEmulatedDoc = new(() =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(PeftEmulated, "expected.json"))));
}
