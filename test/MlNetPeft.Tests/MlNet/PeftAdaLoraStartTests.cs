using System.Text.Json.Nodes;
using Microsoft.ML;
using MlNetPeft.Adapters;
using MlNetPeft.Adapters.LoraSquared;
using MlNetPeft.Bench;
using MlNetPeft.MlNet;
using MlNetPeft.Tests.Adapters;
using static TorchSharp.torch;

namespace MlNetPeft.Tests.MlNet;

/// <summary>An AdaLoRA trainer that starts from a PEFT AdaLoRA adapter saved after rank allocation: its rank_pattern
/// keeps 0 to 6 of init_r = 6 singular values per matrix (Fixtures/peft-emulated, logits by peft's AdaLoRA code).</summary>
[TestClass]
public sealed class PeftAdaLoraStartTests
{
    private static AdaLoraOptions FromFixtureAdapter(int epochs, string? adapter = null) => PeftTrainerFixture.Tiny(new AdaLoraOptions
    {
        InitialPeftAdapter = adapter ?? TestData.TinyAdaLora, MaxEpochs = epochs, LearningRate = 1e-2, BatchSize = 16,
        LoraDropout = 0, MaskInterval = 2,
        InitialRank = 12, TargetRank = 8, LoraAlpha = 16, Targets = ["query"], // replaced by the adapter's 6, 3, 10, its targets
    });

    [TestMethod]
    public void WithoutTrainingItScoresAsPeftDoesAndSurvivesSaveAndLoad()
    {
        var ml = new MLContext(seed: 1);
        var peft = PeftTrainerFixture.FitOnToyRows(ml, FromFixtureAdapter(epochs: 0));
        var svd = (SvdConfig)peft.Adapter;
        Assert.AreEqual((SvdVariant.AdaLora, 6, 3, 10.0), (svd.Variant, svd.InitialRank, svd.TargetRank, svd.Alpha));
        CollectionAssert.AreEqual(new[] { "query", "value", "intermediate.dense" }, svd.Targets.ToArray());

        // Each matrix keeps the singular values its rank_pattern kept (one keeps none, one all six).
        var kept = TestData.PeftEmulatedExpected.GetProperty("kept_ranks").EnumerateObject().ToDictionary(
            e => e.Name.Replace("roberta.encoder.layer.", "layer").Replace(".attention.self.", "_").Replace(".", "_"), e => e.Value.GetInt32());
        CollectionAssert.AreEquivalent(kept, peft.Parameters.Ranks.ToDictionary(r => r.Name, r => r.FinalRank));
        CollectionAssert.Contains(kept.Values.ToList(), 0);
        CollectionAssert.Contains(kept.Values.ToList(), 6);

        PeftTrainerFixture.ScoresAsFixtureLogits(ml, peft, TestData.PeftEmulatedExpected.GetProperty("adalora_logits"));
    }

    /// <summary>Pruned slots are zero in λ, V's rows and U's columns, and masked; kept ones hold the saved values in
    /// the slots rank_pattern names, in order.</summary>
    [TestMethod]
    public void KeptSingularValuesGoToTheSlotsOfTheRankPattern()
    {
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(TestData.TinyAdaLora, "adapter_config.json")))!;
        var pattern = config["rank_pattern"]!["roberta.encoder.layer.0.attention.self.query.lora_E"]!.AsArray().Select(v => v!.GetValue<bool>()).ToArray();
        Assert.IsTrue(pattern.Contains(true) && pattern.Contains(false), "the fixture prunes part of layer 0's query");
        using var model = AdapterTests.Tiny(PeftAdaLoraImport.ReadConfig(TestData.TinyAdaLora) with { Dropout = 0 });
        PeftAdapterFiles.LoadPeftAdapter(model, TestData.TinyAdaLora);
        var state = model.TrainableState();
        var saved = MlNetPeft.Backbone.SafeTensors.Load(Path.Combine(TestData.TinyAdaLora, "adapter_model.safetensors"));
        var prefix = "base_model.model.roberta.encoder.layer.0.attention.self.query.";
        int next = 0;
        for (int slot = 0; slot < pattern.Length; slot++)
        {
            Assert.AreEqual(pattern[slot] ? 1f : 0f, state["adapters.layer0_query.rank_mask"][slot, 0].item<float>(), $"mask of slot {slot}");
            var (a, e, b) = (state["adapters.layer0_query.lora_A"][slot], state["adapters.layer0_query.lora_E"][slot], state["adapters.layer0_query.lora_B"][.., slot]);
            if (!pattern[slot])
            {
                Assert.AreEqual(0f, a.abs().sum().item<float>() + e.abs().sum().item<float>() + b.abs().sum().item<float>(), $"pruned slot {slot}");
                continue;
            }
            Assert.IsTrue(a.eq(saved[prefix + "lora_A"][next]).all().item<bool>(), $"lora_A row of slot {slot}");
            Assert.IsTrue(e.eq(saved[prefix + "lora_E"][next]).all().item<bool>(), $"lora_E of slot {slot}");
            Assert.IsTrue(b.eq(saved[prefix + "lora_B"][.., next]).all().item<bool>(), $"lora_B column of slot {slot}");
            next++;
        }
        Assert.AreEqual(saved[prefix + "lora_E"].shape[0], next);
    }

    /// <summary>On the unpruned fixture adapter (Fixtures/peft-emulated/tiny-adalora-training, its allocator set as the
    /// fixture's: 50 steps, no warm-up or final phase, pruning every step), after one backward with PEFT's gradients
    /// (ReferenceGradientTests asserts those), three allocations keep the singular values peft's RankAllocator keeps:
    /// importance averages, triplet scores and the cubic budget (46, 45, 43 of 48).</summary>
    [TestMethod]
    public void PruningKeepsTheSingularValuesPeftKeeps()
    {
        var c = MethodParity.Cases(TestData.Fixtures).Single(c => c.Name == "adalora (peft)");
        using var model = c.Build(CPU, ScalarType.Float32);
        var hooks = model.Config.CreateHooks(model.Adapters, totalSteps: 50)!;
        Assert.IsLessThan(c.Tolerance, MethodParity.Compare(model, c.Expected(), TestData.Fixtures, c.OurName, hooks).GradientError);
        int step = 0;
        foreach (var allocation in TestData.PeftEmulatedExpected.GetProperty("adalora_allocations").EnumerateArray())
        {
            hooks.AfterOptimizerStep(++step);
            Assert.AreEqual(allocation.GetProperty("budget").GetInt32(), model.Report().RankBudget, $"budget at step {step}");
            var state = model.TrainableState();
            foreach (var module in allocation.GetProperty("kept").EnumerateObject())
            {
                var expected = module.Value.EnumerateArray().Select(v => v.GetBoolean() ? 1f : 0f).ToArray();
                var mask = state[PeftAdaLoraImport.FromPeftKey(module.Name + ".lora_E").Replace(".lora_E", ".rank_mask")].flatten().data<float>().ToArray();
                CollectionAssert.AreEqual(expected, mask, $"{module.Name} at step {step}");
            }
        }
    }

    [TestMethod]
    public void TrainingContinuesFromTheAdapter()
    {
        var trained = PeftTrainerFixture.FitOnToyRows(new MLContext(seed: 1), FromFixtureAdapter(epochs: 2));
        var start = PeftTrainerFixture.FitOnToyRows(new MLContext(seed: 1), FromFixtureAdapter(epochs: 0));
        Assert.IsGreaterThan(1e-3, PeftTrainerFixture.LargestScoreDifference(trained, start), "two epochs changed the scores");
        Assert.AreEqual(3 * 12, trained.Parameters.RankBudget, "pruned to the adapter's target_r on average");
    }

    /// <summary>A model the AdaLoRA trainer pruned, saved from its reloaded zip as a PEFT AdaLoRA adapter, starts the
    /// trainer again as the same model; the adapter carries the run's schedule (total_step, t_init, t_final, ΔT).</summary>
    [TestMethod]
    public void APrunedModelSavedAsPeftAdaLoraStartsTheTrainerAsItself()
    {
        var ml = new MLContext(seed: 1);
        var options = PeftTrainerFixture.AdaLora(epochs: 4); // 40 rows in batches of 16: 3 steps an epoch
        var trained = PeftTrainerFixture.FitOnToyRows(ml, options);
        Assert.AreEqual(4 * 8, trained.Parameters.RankBudget, "query and value of 4 layers pruned from 8 to 4 singular values on average");
        var zip = Path.Combine(TestFolders.Create("adalora-zip"), "model.zip");
        ml.Model.Save(trained, null, zip);
        var reloaded = (PeftTextTransformer)ml.Model.Load(zip, out _);
        var dir = TestFolders.Create("adalora-export");
        reloaded.SavePeftAdapter(dir, PeftAdapterFormat.AdaLora);

        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "adapter_config.json")))!;
        Assert.AreEqual("ADALORA", config["peft_type"]!.GetValue<string>());
        Assert.AreEqual((12, 1, 5, 2), (config["total_step"]!.GetValue<int>(), config["tinit"]!.GetValue<int>(),
            config["tfinal"]!.GetValue<int>(), config["deltaT"]!.GetValue<int>()), "4 epochs of 3 steps; 15% and 45% of them");
        Assert.HasCount(8, config["rank_pattern"]!.AsObject());

        var again = PeftTrainerFixture.FitOnToyRows(ml, PeftTrainerFixture.Tiny(new AdaLoraOptions { InitialPeftAdapter = dir, MaxEpochs = 0 }));
        Assert.AreEqual(trained.Parameters.RankBudget, again.Parameters.RankBudget);
        Assert.IsLessThan(1e-6, PeftTrainerFixture.LargestScoreDifference(trained, again));

        var lora = PeftTrainerFixture.FitOnToyRows(ml, PeftTrainerFixture.Lora(epochs: 1));
        StringAssert.Contains(Assert.ThrowsExactly<NotSupportedException>(() => lora.SavePeftAdapter(dir, PeftAdapterFormat.AdaLora)).Message,
            "PeftAdapterFormat.Lora");
    }

    [TestMethod]
    public void BadAdaptersAreNamed()
    {
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(ToyText.Rows(20, seed: 1));

        // A LoRA adapter for the AdaLoRA trainer, and the other way round: each names the option that takes it.
        var e = Assert.ThrowsExactly<InvalidDataException>(() => PeftTrainerFixture.Fit(ml, data, FromFixtureAdapter(0, TestData.TinyLora)));
        StringAssert.Contains(e.Message, "LoraOptions.InitialPeftAdapter");
        var lora = PeftTrainerFixture.Tiny(new LoraOptions { InitialPeftAdapter = TestData.TinyAdaLora, MaxEpochs = 0 });
        e = Assert.ThrowsExactly<InvalidDataException>(() => PeftTrainerFixture.Fit(ml, data, lora));
        StringAssert.Contains(e.Message, "AdaLoraOptions.InitialPeftAdapter");

        // A rank_pattern that does not fit the saved tensors names the tensor.
        var flipped = AdapterWith(c =>
        {
            var entry = c["rank_pattern"]!["roberta.encoder.layer.0.attention.self.query.lora_E"]!.AsArray();
            int slot = entry.Select(v => v!.GetValue<bool>()).ToList().IndexOf(false);
            entry[slot] = true;
        });
        e = Assert.ThrowsExactly<InvalidDataException>(() => PeftTrainerFixture.Fit(ml, data, FromFixtureAdapter(0, flipped)));
        StringAssert.Contains(e.Message, "layer.0.attention.self.query.lora_");
        StringAssert.Contains(e.Message, "rank_pattern");

        var shortPattern = AdapterWith(c => c["rank_pattern"]!["roberta.encoder.layer.1.attention.self.value.lora_E"] = new JsonArray(true, false));
        e = Assert.ThrowsExactly<InvalidDataException>(() => PeftTrainerFixture.Fit(ml, data, FromFixtureAdapter(0, shortPattern)));
        StringAssert.Contains(e.Message, "layer.1.attention.self.value.lora_E");

        var someLayers = AdapterWith(c => c["layers_to_transform"] = new JsonArray(0, 1));
        e = Assert.ThrowsExactly<InvalidDataException>(() => PeftTrainerFixture.Fit(ml, data, FromFixtureAdapter(0, someLayers)));
        StringAssert.Contains(e.Message, "adapter_config.json");
        StringAssert.Contains(e.Message, "layers_to_transform");

        var withHead = FromFixtureAdapter(0);
        withHead.UseCheckpointHead = true;
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentException>(() => PeftTrainerFixture.Fit(ml, data, withHead)).Message, "UseCheckpointHead");
    }

    /// <summary>A copy of the fixture adapter whose adapter_config.json <paramref name="edit"/> changed.</summary>
    private static string AdapterWith(Action<JsonObject> edit)
    {
        var dir = TestFolders.Create("peft-adalora-");
        File.Copy(Path.Combine(TestData.TinyAdaLora, "adapter_model.safetensors"), Path.Combine(dir, "adapter_model.safetensors"));
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(TestData.TinyAdaLora, "adapter_config.json")))!.AsObject();
        edit(config);
        File.WriteAllText(Path.Combine(dir, "adapter_config.json"), config.ToJsonString());
        return dir;
    }
}
