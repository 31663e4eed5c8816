using System.Text.Json;
using MlNetPeft.Bench;

namespace MlNetPeft.Tests.Bench;

[TestClass]
public sealed class PeftExportCheckTests
{
    [TestMethod]
    public void WritesEachMethodsAdapterAndMergedCheckpointWithItsLogits()
    {
        var dir = Directory.CreateTempSubdirectory("peft-export-check").FullName;
        Assert.AreEqual(0, PeftExportCheck.Run(BenchArgs.Parse(["peft-export", "--method", "msplora,full", "--out", dir])));
        string[] Files(string sub) => Directory.GetFiles(Path.Combine(dir, sub)).Select(Path.GetFileName).Order().ToArray()!;
        CollectionAssert.AreEqual(new[] { "adapter_config.json", "adapter_model.safetensors" }, Files("msplora/adapter"));
        Assert.IsFalse(Directory.Exists(Path.Combine(dir, "full", "adapter")), "full fine-tuning has no adapter");
        foreach (var method in new[] { "msplora", "full" })
        {
            CollectionAssert.AreEqual(new[] { "model.safetensors" }, Files($"{method}/merged"), method);
            var logits = JsonSerializer.Deserialize<float[][]>(File.ReadAllText(Path.Combine(dir, method, "logits.json")))!;
            Assert.IsTrue(logits.Length > 0 && logits.All(row => row.Length == 3 && row.All(float.IsFinite)), method);
        }
    }
}
