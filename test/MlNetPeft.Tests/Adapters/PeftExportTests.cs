using System.Text.Json;
using MlNetPeft.Adapters;
using MlNetPeft.Adapters.Full;
using MlNetPeft.Adapters.Lora;
using MlNetPeft.Adapters.LoraSquared;
using MlNetPeft.Backbone;
using MlNetPeft.Bench;
using static TorchSharp.torch;

namespace MlNetPeft.Tests.Adapters;

/// <summary>Adapters written as a HF PEFT LoRA adapter directory (PEFT's own files, every method's logits), and whole
/// models as plain HF checkpoints with the adapters merged.</summary>
[TestClass]
public sealed class PeftExportTests
{
    private static string NewDirectory() => TestFolders.Create("peft-export");

    /// <summary>A tiny model whose trainable weights moved as training would move them (the bench's peft-export does the
    /// same).</summary>
    private static PeftModel AsIfTrained(AdapterConfig adapters)
    {
        var model = AdapterTests.Tiny(adapters);
        PeftExportCheck.MoveAsIfTrained(model);
        return model;
    }

    [TestMethod]
    public void AnImportedPeftAdapterExportsAsPeftWroteIt()
    {
        var fixture = PeftLoraImport.ReadConfig(TestData.TinyLora);
        using var model = AdapterTests.Tiny(fixture with { Dropout = 0 });
        var peftFile = Path.Combine(TestData.TinyLora, "adapter_model.safetensors");
        model.LoadPeftAdapter(TestData.TinyLora);
        var dir = NewDirectory();
        PeftLoraExport.Save(model, dir, "tiny-roberta");

        var theirs = SafeTensors.Load(peftFile);
        var ours = SafeTensors.Load(Path.Combine(dir, "adapter_model.safetensors"));
        CollectionAssert.AreEquivalent(theirs.Keys.ToList(), ours.Keys.ToList());
        foreach (var (key, tensor) in theirs) Assert.IsTrue(tensor.equal(ours[key]).all().item<bool>(), key);

        using var theirConfig = JsonDocument.Parse(File.ReadAllText(Path.Combine(TestData.TinyLora, "adapter_config.json")));
        using var ourConfig = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "adapter_config.json")));
        foreach (var field in new[] { "peft_type", "task_type", "r", "lora_alpha", "bias", "use_rslora", "use_dora", "fan_in_fan_out" })
            Assert.AreEqual(theirConfig.RootElement.GetProperty(field).ToString(), ourConfig.RootElement.GetProperty(field).ToString(), field);
        static string[] Sorted(JsonDocument d, string field) => d.RootElement.GetProperty(field).EnumerateArray().Select(e => e.GetString()!).Order().ToArray();
        CollectionAssert.AreEqual(Sorted(theirConfig, "target_modules"), Sorted(ourConfig, "target_modules"));
        CollectionAssert.AreEqual(Sorted(theirConfig, "modules_to_save"), Sorted(ourConfig, "modules_to_save"));
    }

    [TestMethod]
    [DynamicData(nameof(AdapterTests.Methods), typeof(AdapterTests))]
    [DynamicData(nameof(AdapterTests.MethodsOnEveryLinear), typeof(AdapterTests))]
    public void EveryMethodExportsAsALoraWithItsLogits(AdapterConfig adapters)
    {
        using var model = AsIfTrained(adapters);
        var dir = NewDirectory();
        PeftLoraExport.Save(model, dir, null);

        var lora = PeftLoraImport.ReadConfig(dir);
        using var imported = AdapterTests.Tiny(lora);
        imported.LoadPeftAdapter(dir);
        using var _ = no_grad();
        var expected = model.Forward(AdapterTests.Ids, AdapterTests.Mask);
        // DoRA keeps each row's length near the backbone's, which moves the tiny model's logits less.
        double effect = adapters is LoraConfig { UseDora: true } ? 1e-3 : 1e-2;
        using (var backbone = AdapterTests.Tiny(new LoraConfig()))
            Assert.IsGreaterThan(effect, (expected - backbone.Forward(AdapterTests.Ids, AdapterTests.Mask)).abs().max().item<float>(), "the adapters change the logits");
        double error = (imported.Forward(AdapterTests.Ids, AdapterTests.Mask) - expected).abs().max().item<float>();
        Assert.IsLessThan(1e-5, error, $"{adapters.MethodName} exported as LoRA r={lora.Rank}, alpha={lora.Alpha}: {error}");
    }

    public static IEnumerable<object[]> MergeCases =>
        AdapterTests.Methods.Concat(AdapterTests.MethodsOnEveryLinear).SelectMany(m => new[] { new[] { m[0], false }, new[] { m[0], true } })
            .Append([new FullFineTuningConfig(), false]);

    [TestMethod]
    [DynamicData(nameof(MergeCases))]
    public void EveryMethodMergesIntoAPlainCheckpointWithItsLogits(AdapterConfig adapters, bool mergedForPrediction)
    {
        using var model = AsIfTrained(adapters);
        if (mergedForPrediction) model.Merge();
        var bytes = MergedCheckpoint.Save(model);

        var weights = SafeTensors.Load(bytes, "merged");
        Assert.IsFalse(weights.Keys.Any(k => k.Contains("lora") || k.Contains("base_layer")), "plain HF keys");
        var config = RobertaConfig.Load(Path.Combine(TestData.TinyRoberta, "config.json"));
        using var plain = PeftModel.Create(config, 3, new FullFineTuningConfig(), weights, "merged", loadHead: true);
        plain.Train(false);
        using var _ = no_grad();
        var expected = model.Forward(AdapterTests.Ids, AdapterTests.Mask);
        double error = (plain.Forward(AdapterTests.Ids, AdapterTests.Mask) - expected).abs().max().item<float>();
        Assert.IsLessThan(1e-5, error, $"{adapters.MethodName}: {error}");
    }

    /// <summary>A copy of the fixture's PEFT adapter directory with its config changed by <paramref name="edit"/>.</summary>
    private static string FixtureAdapterWith(Action<System.Text.Json.Nodes.JsonObject> edit)
    {
        var dir = NewDirectory();
        File.Copy(Path.Combine(TestData.TinyLora, "adapter_model.safetensors"), Path.Combine(dir, "adapter_model.safetensors"));
        var config = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(TestData.TinyLora, "adapter_config.json")))!.AsObject();
        edit(config);
        File.WriteAllText(Path.Combine(dir, "adapter_config.json"), config.ToJsonString());
        return dir;
    }

    /// <summary>rsLoRA (PEFT's use_rslora) scales by alpha/√r: the same adapters then act as plain LoRA with alpha·√r.
    /// A PEFT adapter with use_rslora reads as such, and an rsLoRA model exports as the plain LoRA it equals.</summary>
    [TestMethod]
    public void RsLoraScalesByTheSquareRootOfTheRank()
    {
        using var rs = AdapterTests.Tiny(new LoraConfig { Rank = 4, Alpha = 8, UseRsLora = true, Dropout = 0 });
        using var equal = AdapterTests.Tiny(new LoraConfig { Rank = 4, Alpha = 16, Dropout = 0 });
        using var plain = AdapterTests.Tiny(new LoraConfig { Rank = 4, Alpha = 8, Dropout = 0 });
        AdapterTests.SetSameRandomAdapters(rs, equal, seed: 4, scale: 0.2);
        AdapterTests.SetSameRandomAdapters(rs, plain, seed: 4, scale: 0.2);
        using (no_grad())
        {
            var logits = rs.Forward(AdapterTests.Ids, AdapterTests.Mask);
            Assert.IsLessThan(1e-6, (logits - equal.Forward(AdapterTests.Ids, AdapterTests.Mask)).abs().max().item<float>(), "alpha/√r");
            Assert.IsGreaterThan(1e-4, (logits - plain.Forward(AdapterTests.Ids, AdapterTests.Mask)).abs().max().item<float>(), "not alpha/r");
        }

        Assert.IsTrue(((LoraConfig)new MlNetPeft.MlNet.LoraOptions { UseRsLora = true }.ToAdapterConfig()).UseRsLora, "the trainer's option");
        var dir = FixtureAdapterWith(config => config["use_rslora"] = true);
        var read = PeftLoraImport.ReadConfig(dir);
        Assert.IsTrue(read.UseRsLora);
        using var imported = AdapterTests.Tiny(read with { Dropout = 0 });
        imported.LoadPeftAdapter(dir);
        using var asPlain = AdapterTests.Tiny(read with { Dropout = 0, UseRsLora = false, Alpha = read.Alpha * Math.Sqrt(read.Rank) });
        asPlain.LoadPeftAdapter(dir);
        var exported = NewDirectory();
        PeftLoraExport.Save(imported, exported, null);
        var reread = PeftLoraImport.ReadConfig(exported);
        using var reimported = AdapterTests.Tiny(reread with { Dropout = 0 });
        reimported.LoadPeftAdapter(exported);
        using (no_grad())
        {
            var expected = imported.Forward(AdapterTests.Ids, AdapterTests.Mask);
            Assert.IsLessThan(1e-6, (asPlain.Forward(AdapterTests.Ids, AdapterTests.Mask) - expected).abs().max().item<float>(), "imported");
            Assert.IsLessThan(1e-6, (reimported.Forward(AdapterTests.Ids, AdapterTests.Mask) - expected).abs().max().item<float>(), "exported");
        }
    }

    /// <summary>PEFT's layers_to_transform (a list, one index, or an empty list: every layer) becomes Layers, and the
    /// LoRA trainer's option reaches the config.</summary>
    [TestMethod]
    public void LayersToTransformAreRead()
    {
        foreach (var (value, expected) in new (System.Text.Json.Nodes.JsonNode?, int[]?)[]
                 { (new System.Text.Json.Nodes.JsonArray(0, 2), [0, 2]), (3, [3]), (new System.Text.Json.Nodes.JsonArray(), null), (null, null) })
        {
            var read = PeftLoraImport.ReadConfig(FixtureAdapterWith(config => config["layers_to_transform"] = value));
            CollectionAssert.AreEqual(expected, read.Layers, value?.ToJsonString() ?? "null");
        }
        CollectionAssert.AreEqual(new[] { 1 }, ((LoraConfig)new MlNetPeft.MlNet.LoraOptions { Layers = [1] }.ToAdapterConfig()).Layers);
    }

    [TestMethod]
    public void UnsupportedPeftSettingsAreRefusedWithTheFileName()
    {
        foreach (var (field, value) in new (string, System.Text.Json.Nodes.JsonNode)[]
                 {
                     ("fan_in_fan_out", true), ("bias", "some"), ("layers_pattern", "blocks"), ("rank_pattern", new System.Text.Json.Nodes.JsonArray("query", 4)),
                     ("target_modules", "classifier"), ("lora_bias", true), ("exclude_modules", new System.Text.Json.Nodes.JsonArray("query")),
                     ("alora_invocation_tokens", new System.Text.Json.Nodes.JsonArray(5, 6)), ("kasa_config", new System.Text.Json.Nodes.JsonObject { ["rank"] = 2 }), ("init_lora_weights", "pissa_niter_4"),
                 })
        {
            var dir = FixtureAdapterWith(config => config[field] = value);
            var e = Assert.ThrowsExactly<InvalidDataException>(() => PeftLoraImport.ReadConfig(dir), field);
            StringAssert.Contains(e.Message, Path.Combine(dir, "adapter_config.json"));
            StringAssert.Contains(e.Message, field);
        }
    }

    /// <summary>PEFT adapts a module whose path equals or ends with a listed name, or matches a string pattern whole.</summary>
    [TestMethod]
    public void TargetModulesFollowPeftsMatchingRules()
    {
        CollectionAssert.AreEqual(new[] { "query", "value" }, PeftTargetModules.FromNames(["value", "query"]));
        CollectionAssert.AreEqual(new[] { AdapterTargets.AttentionOutput, AdapterTargets.Intermediate, AdapterTargets.Output },
            PeftTargetModules.FromNames(["dense"]));
        CollectionAssert.AreEqual(new[] { AdapterTargets.AttentionOutput, AdapterTargets.Output }, PeftTargetModules.FromNames(["output.dense"]));
        CollectionAssert.AreEqual(new[] { "key" }, PeftTargetModules.FromNames(["attention.self.key"]));
        StringAssert.Contains(Assert.ThrowsExactly<FormatException>(() => PeftTargetModules.FromNames(["query", "q_proj"])).Message, "'q_proj'");
        CollectionAssert.AreEqual(new[] { "query", "value" }, PeftTargetModules.FromPattern(@".*\.(query|value)").Targets);
        Assert.IsNull(PeftTargetModules.FromPattern(@".*\.(query|value)").Layers, "every layer");
        var (inTwo, layers) = PeftTargetModules.FromPattern(@".*\.layer\.(1|3)\.(attention\.self\.query|output\.dense)");
        CollectionAssert.AreEqual(new[] { "query", AdapterTargets.Output }, inTwo);
        CollectionAssert.AreEqual(new[] { 1, 3 }, layers);
        Assert.ThrowsExactly<FormatException>(() => PeftTargetModules.FromPattern(@".*\.layer\.1\.attention\.self\.query|.*\.layer\.2\.output\.dense"));
        Assert.ThrowsExactly<FormatException>(() => PeftTargetModules.FromPattern("classifier"));
        Assert.ThrowsExactly<FormatException>(() => PeftTargetModules.FromPattern("(query"));

        // Written so that PEFT adapts exactly our targets: names where its suffix rule selects no more, else a pattern.
        string[] attention = ["query", "key", "value"];
        CollectionAssert.AreEqual(attention, (string[])PeftTargetModules.ToPeft(attention));
        foreach (var targets in new[] { [AdapterTargets.Output], [AdapterTargets.Query, AdapterTargets.Output], AdapterTargets.All.ToArray() })
        {
            var written = PeftTargetModules.ToPeft(targets);
            var read = written is string pattern ? PeftTargetModules.FromPattern(pattern).Targets : PeftTargetModules.FromNames((string[])written);
            CollectionAssert.AreEqual(targets, read, string.Join(", ", targets));
        }
        Assert.IsInstanceOfType<string>(PeftTargetModules.ToPeft([AdapterTargets.Output]), "output.dense alone would also select attention.output.dense");
    }

    /// <summary>PEFT AdaLoRA adapters written by following peft's code (peft-emulated), loaded and saved again in PEFT's
    /// AdaLoRA form: after rank allocation (rank_pattern keeping 0 to 6 of 6 values per matrix) and before any.</summary>
    [TestMethod]
    [DataRow("tiny-adalora")]
    [DataRow("tiny-adalora-training")]
    public void AnImportedPeftAdaLoraAdapterExportsAsPeftWroteIt(string adapter)
    {
        var source = Path.Combine(TestData.PeftEmulated, adapter);
        using var model = AdapterTests.Tiny(PeftAdaLoraImport.ReadConfig(source));
        model.LoadPeftAdapter(source);
        var dir = NewDirectory();
        PeftAdaLoraExport.Save(model, dir, "tiny-roberta", trainingSteps: 100);

        var theirs = SafeTensors.Load(Path.Combine(source, "adapter_model.safetensors"));
        var ours = SafeTensors.Load(Path.Combine(dir, "adapter_model.safetensors"));
        CollectionAssert.AreEquivalent(theirs.Keys.ToList(), ours.Keys.ToList());
        foreach (var (key, tensor) in theirs)
        {
            CollectionAssert.AreEqual(tensor.shape, ours[key].shape, key);
            Assert.IsTrue(tensor.equal(ours[key]).all().item<bool>(), key);
        }

        using var theirConfig = JsonDocument.Parse(File.ReadAllText(Path.Combine(source, "adapter_config.json")));
        using var ourConfig = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "adapter_config.json")));
        foreach (var field in new[] { "peft_type", "task_type", "init_r", "target_r", "lora_alpha", "bias", "target_modules", "modules_to_save", "rank_pattern" })
            Assert.IsTrue(JsonElement.DeepEquals(theirConfig.RootElement.GetProperty(field), ourConfig.RootElement.GetProperty(field)),
                $"{field}: {theirConfig.RootElement.GetProperty(field)} written as {ourConfig.RootElement.GetProperty(field)}");
    }

    /// <summary>Read back, a PEFT AdaLoRA export is the model: the same logits, the same singular values kept, and a
    /// schedule PEFT accepts (total_step beyond t_init + t_final).</summary>
    [TestMethod]
    [DataRow(null, "query,value")]
    [DataRow(40, "query,value")]
    [DataRow(40, "query,output.dense")] // target_modules written as a pattern: output.dense alone is two modules to PEFT
    public void AnAdaLoraModelExportsAsPeftAdaLoraWithItsLogits(int? trainingSteps, string targets)
    {
        var adalora = new SvdConfig
        {
            Variant = SvdVariant.AdaLora, InitialRank = 4, TargetRank = 2, Alpha = 8, Dropout = 0, Targets = targets.Split(','),
        };
        using var model = AsIfTrained(adalora);
        var dir = NewDirectory();
        PeftAdaLoraExport.Save(model, dir, null, trainingSteps);

        var read = PeftAdaLoraImport.ReadConfig(dir);
        Assert.AreEqual((4, 2, 8.0), (read.InitialRank, read.TargetRank, read.Alpha));
        CollectionAssert.AreEquivalent(adalora.Targets.ToArray(), read.Targets.ToArray());
        using var imported = AdapterTests.Tiny(read);
        imported.LoadPeftAdapter(dir);
        CollectionAssert.AreEqual(Kept(model), Kept(imported));
        Assert.Contains(0f, Kept(model), "the model has pruned singular values");
        using (no_grad())
        {
            double error = (imported.Forward(AdapterTests.Ids, AdapterTests.Mask) - model.Forward(AdapterTests.Ids, AdapterTests.Mask)).abs().max().item<float>();
            Assert.IsLessThan(1e-6, error, "logits");
        }
        using var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "adapter_config.json")));
        int Setting(string name) => config.RootElement.GetProperty(name).GetInt32();
        Assert.AreEqual(trainingSteps ?? 1, Setting("total_step"));
        Assert.AreEqual(adalora.Warmups(Setting("total_step")), (Setting("tinit"), Setting("tfinal")));
        Assert.IsLessThan(Setting("total_step") - Setting("tfinal"), Setting("tinit"), "PEFT refuses a schedule without a budgeting phase");
        Assert.AreEqual(adalora.MaskInterval, Setting("deltaT"));

        static float[] Kept(PeftModel m) =>
            m.Adapters.named_buffers().Where(b => b.name.EndsWith("rank_mask")).SelectMany(b => b.buffer.data<float>().ToArray()).ToArray();
    }

    [TestMethod]
    public void OnlyAnAdaLoraModelExportsAsPeftAdaLora()
    {
        using var model = AdapterTests.Tiny(new SvdConfig { Variant = SvdVariant.LoraSquared });
        var e = Assert.ThrowsExactly<NotSupportedException>(() => PeftAdaLoraExport.Save(model, NewDirectory(), null, null));
        StringAssert.Contains(e.Message, "lorasquared");
    }

    [TestMethod]
    public void FullFineTuningHasNoAdapterToExport()
    {
        using var model = AdapterTests.Tiny(new FullFineTuningConfig());
        Assert.ThrowsExactly<NotSupportedException>(() => PeftLoraExport.Save(model, NewDirectory(), null));
    }
}
