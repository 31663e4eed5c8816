using System.Text.Json;
using MlNetPeft.Bench;

namespace MlNetPeft.Tests.Bench;

[TestClass]
public sealed class PeftExportCheckTests
{
    [TestMethod]
    public void WritesEachMethodsAdapterWithItsLogits()
    {
        var dir = Directory.CreateTempSubdirectory("peft-export-check").FullName;
        Assert.AreEqual(0, PeftExportCheck.Run(BenchArgs.Parse(["peft-export", "--method", "msplora,adalora", "--out", dir])));
        foreach (var method in new[] { "msplora", "adalora" })
        {
            var files = Directory.GetFiles(Path.Combine(dir, method)).Select(Path.GetFileName).Order().ToArray();
            CollectionAssert.AreEqual(new[] { "adapter_config.json", "adapter_model.safetensors", "logits.json" }, files, method);
            var logits = JsonSerializer.Deserialize<float[][]>(File.ReadAllText(Path.Combine(dir, method, "logits.json")))!;
            Assert.IsTrue(logits.Length > 0 && logits.All(row => row.Length == 3 && row.All(float.IsFinite)), method);
        }
    }
}
