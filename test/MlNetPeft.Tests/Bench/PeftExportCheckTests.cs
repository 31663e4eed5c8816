using System.Text.Json;
using MlNetPeft.Bench;

namespace MlNetPeft.Tests.Bench;

[TestClass]
public sealed class PeftExportCheckTests
{
    [TestMethod]
    public void WritesEachMethodsAdapterAndMergedCheckpointWithItsLogits()
    {
        var dir = TestFolders.Create("peft-export-check");
        Assert.AreEqual(0, PeftExportCheck.Run(BenchArgs.Parse(["peft-export", "--method", "lora,dora,lorabias,msplora,adalora,full", "--out", dir])));
        string[] Files(string sub) => Directory.GetFiles(Path.Combine(dir, sub)).Select(Path.GetFileName).Order().ToArray()!;
        CollectionAssert.AreEqual(new[] { "adapter_config.json", "adapter_model.safetensors" }, Files("msplora/adapter"));
        Assert.IsFalse(Directory.Exists(Path.Combine(dir, "full", "adapter")), "full fine-tuning has no adapter");
        CollectionAssert.AreEqual(new[] { "adapter_config.json", "adapter_model.safetensors" }, Files("adalora/adalora-adapter"));
        Assert.IsFalse(Directory.Exists(Path.Combine(dir, "lora", "adalora-adapter")), "only AdaLoRA saves as a PEFT AdaLoRA adapter");
        // LoRA's exported pairs are its parameters: their gradients go beside them, for PyTorch's autograd to check.
        var gradients = MlNetPeft.Backbone.SafeTensors.Load(Path.Combine(dir, "lora", "gradients.safetensors"));
        Assert.HasCount(4 * 2 * 2, gradients); // 4 layers × query, value × A, B
        Assert.IsTrue(gradients.All(g => g.Key.EndsWith(".lora_A.weight") || g.Key.EndsWith(".lora_B.weight")));
        Assert.IsTrue(gradients.Values.All(g => g.isfinite().all().item<bool>() && g.abs().max().item<float>() > 0));
        Assert.IsFalse(File.Exists(Path.Combine(dir, "msplora", "gradients.safetensors")), "MSPLoRA's export is a sum of its pairs");
        var dora = MlNetPeft.Backbone.SafeTensors.Load(Path.Combine(dir, "dora", "gradients.safetensors"));
        Assert.HasCount(4 * 2 * 3, dora, "DoRA: A, B and the magnitude");
        Assert.AreEqual(4 * 2, dora.Keys.Count(k => k.EndsWith(".lora_magnitude_vector")));
        var biases = MlNetPeft.Backbone.SafeTensors.Load(Path.Combine(dir, "lorabias", "gradients.safetensors"));
        Assert.HasCount(4 * 2 * 2 + 1 + 4 * 8, biases, "LoRA with bias \"all\": A, B and every bias of the backbone");
        var adapter = MlNetPeft.Backbone.SafeTensors.Load(Path.Combine(dir, "lorabias", "adapter", "adapter_model.safetensors"));
        Assert.AreEqual(33, adapter.Keys.Count(k => k.StartsWith("base_model.model.roberta.") && k.EndsWith(".bias")), "the biases are exported");
        foreach (var method in new[] { "lora", "dora", "lorabias", "msplora", "adalora", "full" })
        {
            CollectionAssert.AreEqual(new[] { "model.safetensors" }, Files($"{method}/merged"), method);
            var logits = JsonSerializer.Deserialize<float[][]>(File.ReadAllText(Path.Combine(dir, method, "logits.json")))!;
            Assert.IsTrue(logits.Length > 0 && logits.All(row => row.Length == 3 && row.All(float.IsFinite)), method);
        }
    }
}
