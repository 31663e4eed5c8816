using System.Text.Json;
using System.Text.Json.Nodes;
using MlNetPeft.Adapters;
using MlNetPeft.Adapters.Full;
using MlNetPeft.Adapters.Lora;
using MlNetPeft.Adapters.LoraSquared;
using MlNetPeft.Adapters.Msplora;
using MlNetPeft.Backbone;
using static TorchSharp.torch;

namespace MlNetPeft.Tests.Adapters;

/// <summary>PEFT's bias setting: the backbone biases that train beside the LoRA pairs, their gradients against
/// PyTorch's, and PEFT adapter files that hold them.</summary>
[TestClass]
public sealed class LoraBiasTests
{
    private static LoraConfig Lora(LoraBias bias) => new() { Rank = 4, Alpha = 8, Dropout = 0, Targets = ["query", "value"], Bias = bias };

    private static AdapterConfig Fresh(string method, LoraBias bias) => method switch
    {
        "lora" => Lora(bias),
        "msplora" => new MsploraConfig { Dropout = 0, Bias = bias },
        _ => new SvdConfig { Variant = SvdVariant.LoraSquared, Dropout = 0, Bias = bias },
    };

    /// <summary>
    /// A fresh adapter adds nothing (LoRA's and MSPLoRA's B = 0, LoRA²'s λ = 0), so the fixture model with it computes
    /// what the full fine-tuning reference (Fixtures/reference, PyTorch) computed, and its trained biases must get that
    /// reference's gradients: every bias of the backbone with All (as PEFT's "all" marks every parameter named "bias"),
    /// the adapted projections' with LoraOnly. Nothing else of the backbone gets one.
    /// </summary>
    [TestMethod]
    [DataRow("lora", LoraBias.All, 1 + 4 * 8)]
    [DataRow("lora", LoraBias.LoraOnly, 4 * 2)]
    [DataRow("msplora", LoraBias.All, 1 + 4 * 8)]
    [DataRow("lorasquared", LoraBias.LoraOnly, 4 * 2)]
    public void TrainedBiasesGetPyTorchsGradients(string method, LoraBias bias, int count)
    {
        using var model = AdapterTests.Tiny(Fresh(method, bias));
        model.Train(true);
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(TestData.Fixtures, "..", "reference", "expected.json")));
        var full = json.RootElement.GetProperty("full");
        var logits = model.Forward(AdapterTests.Ids, AdapterTests.Mask);
        var reference = tensor(full.GetProperty("logits").EnumerateArray().SelectMany(r => r.EnumerateArray().Select(v => v.GetSingle())).ToArray()).view(-1, 3);
        Assert.IsLessThan(1e-5, logits.detach().sub(reference).abs().max().item<float>(), "logits");
        var labels = tensor(TestData.Parity.GetProperty("labels").EnumerateArray().Select(v => v.GetInt64()).ToArray());
        nn.functional.cross_entropy(logits, labels).backward();

        var trained = model.TrainedBackbone().ToList();
        Assert.HasCount(count, trained);
        if (bias == LoraBias.LoraOnly)
            Assert.IsTrue(trained.All(p => p.Name.EndsWith("query.base_layer.bias") || p.Name.EndsWith("value.base_layer.bias")), string.Join(", ", trained.Select(p => p.Name)));
        var norms = full.GetProperty("grad_norms");
        foreach (var (name, parameter) in trained)
        {
            // The reference names an adapted projection's bias without PEFT's base_layer.
            double expected = norms.GetProperty("roberta." + name.Replace(".base_layer.", ".")).GetDouble();
            double actual = parameter.grad!.norm().item<float>();
            Assert.AreEqual(expected, actual, 1e-4 * expected + 1e-9, name);
        }
        var frozen = model.Network.Encoder.named_parameters().Where(p => !trained.Any(t => t.Name == p.name)).ToList();
        Assert.IsTrue(frozen.All(p => !p.parameter.requires_grad && p.parameter.grad is null), "only the biases of the setting train");
        Assert.HasCount(count + 4 + model.AdapterParameters().Count(), model.TrainableParameters().ToList(), "the biases, the head's 4 tensors, the adapters");
    }

    /// <summary>
    /// An adapter saved by PEFT with bias "all": besides the pairs and the head, every bias of the base model under
    /// its module path (an adapted projection's as "…query.base_layer.bias"), PEFT's untouched copy of the head
    /// ("classifier.original_module.*", to be ignored) and the trained head under a second name. It scores as the
    /// fixture's LoRA on a backbone whose biases are those values.
    /// </summary>
    [TestMethod]
    public void APeftAdapterWithBiasAllLoadsItsBiases()
    {
        var dir = CopyFixtureAdapter("all", out var tensors);
        var shifted = ShiftedBiases();
        AddUnderPeftNames(tensors, shifted);
        tensors["base_model.model.classifier.original_module.dense.bias"] = zeros_like(tensors["base_model.model.classifier.dense.bias"]).add(7);
        tensors["base_model.model.classifier.modules_to_save.default.dense.bias"] = tensors["base_model.model.classifier.dense.bias"];
        File.WriteAllBytes(Path.Combine(dir, "adapter_model.safetensors"), SafeTensors.Save(tensors));

        var config = PeftLoraImport.ReadConfig(dir);
        Assert.AreEqual(LoraBias.All, config.Bias);
        using var imported = AdapterTests.Tiny(config);
        imported.LoadPeftAdapter(dir);
        using var expected = FixtureLoraOn(shifted);
        AssertSameLogits(expected, imported);

        // A head saved twice must be saved the same.
        tensors["base_model.model.classifier.modules_to_save.default.dense.bias"] = tensors["base_model.model.classifier.dense.bias"].add(1);
        File.WriteAllBytes(Path.Combine(dir, "adapter_model.safetensors"), SafeTensors.Save(tensors));
        using var again = AdapterTests.Tiny(config);
        var e = Assert.ThrowsExactly<InvalidDataException>(() => again.LoadPeftAdapter(dir));
        StringAssert.Contains(e.Message, "classifier.dense.bias");
    }

    /// <summary>PEFT's "lora_only" save looks for an adapted layer's bias without base_layer in its name and so saves
    /// none: such a file scores as PEFT's loader leaves it, with the base model's biases. A file that has them under
    /// the name PEFT used before base_layer ("…query.bias") gives them.</summary>
    [TestMethod]
    public void APeftAdapterWithBiasLoraOnlyLoadsTheBiasesItHas()
    {
        var dir = CopyFixtureAdapter("lora_only", out var tensors);
        using var withoutBiases = AdapterTests.Tiny(PeftLoraImport.ReadConfig(dir));
        withoutBiases.LoadPeftAdapter(dir);
        using var plain = FixtureLoraOn(new Dictionary<string, Tensor>());
        AssertSameLogits(plain, withoutBiases);

        var shifted = SafeTensors.Load(Path.Combine(TestData.TinyRoberta, "model.safetensors"))
            .Where(kv => kv.Key.EndsWith("query.bias") || kv.Key.EndsWith("value.bias")).ToDictionary(kv => kv.Key, kv => kv.Value.add(0.05));
        foreach (var (name, value) in shifted) tensors["base_model.model." + name] = value;
        File.WriteAllBytes(Path.Combine(dir, "adapter_model.safetensors"), SafeTensors.Save(tensors));
        using var withBiases = AdapterTests.Tiny(PeftLoraImport.ReadConfig(dir));
        withBiases.LoadPeftAdapter(dir);
        using var expected = FixtureLoraOn(shifted);
        AssertSameLogits(expected, withBiases);
    }

    /// <summary>With the backbone in bf16 the biases train as bf16 copies of fp32 masters, which the optimizer updates
    /// and the saved state holds.</summary>
    [TestMethod]
    public void BiasesInABfloatBackboneTrainFloat32Masters()
    {
        using var model = AdapterTests.Tiny(Lora(LoraBias.All));
        model.To(CPU, ScalarType.BFloat16);
        var masters = model.TrainedBackboneMasters()!;
        Assert.HasCount(33, masters);
        var before = masters.Select(m => m.clone()).ToList();
        var batch = new MlNetPeft.Training.Batch(AdapterTests.Ids, AdapterTests.Mask, tensor(new long[] { 0, 1, 2 }), 3);
        var settings = new MlNetPeft.Training.TrainingSettings { BatchSize = 3, LearningRate = 1e-3, WarmupRatio = 0 };
        using (var stepper = new MlNetPeft.Training.TrainingStepper(model, settings, MlNetPeft.Training.TaskKind.Classification, totalSteps: 10))
            for (int i = 0; i < 3; i++) using (NewDisposeScope()) stepper.Run(batch);
        var state = model.TrainableState();
        var trained = model.TrainedBackbone().ToList();
        for (int i = 0; i < trained.Count; i++)
        {
            var (name, weight) = trained[i];
            Assert.AreEqual(ScalarType.Float32, masters[i].dtype);
            Assert.AreEqual(ScalarType.BFloat16, weight.dtype, name);
            Assert.IsFalse(masters[i].equal(before[i]).all().item<bool>(), $"{name}: the master moved");
            Assert.IsTrue(state["roberta." + name].equal(masters[i]).all().item<bool>(), $"{name}: the saved state is the master");
            Assert.IsTrue(weight.equal(masters[i].to(ScalarType.BFloat16)).all().item<bool>(), $"{name}: the weight is the master rounded");
        }
    }

    [TestMethod]
    public void AnUnknownBiasSettingIsRefusedNamingTheFile()
    {
        var dir = CopyFixtureAdapter("some", out _);
        var e = Assert.ThrowsExactly<InvalidDataException>(() => PeftLoraImport.ReadConfig(dir));
        StringAssert.Contains(e.Message, Path.Combine(dir, "adapter_config.json"));
        StringAssert.Contains(e.Message, "\"some\"");
    }

    /// <summary>A PEFT AdaLoRA adapter saved with bias "all" (AdaLoRA's config takes LoRA's bias setting): its biases
    /// replace the backbone's, as for LoRA.</summary>
    [TestMethod]
    public void APeftAdaLoraAdapterWithBiasAllLoadsItsBiases()
    {
        var source = Path.Combine(TestData.PeftEmulated, "tiny-adalora-training");
        var dir = CopyAdapter(source, "all", out var tensors);
        var shifted = ShiftedBiases();
        AddUnderPeftNames(tensors, shifted);
        File.WriteAllBytes(Path.Combine(dir, "adapter_model.safetensors"), SafeTensors.Save(tensors));

        var read = MlNetPeft.Adapters.LoraSquared.PeftAdaLoraImport.ReadConfig(dir);
        Assert.AreEqual(LoraBias.All, read.Bias);
        using var imported = AdapterTests.Tiny(read);
        imported.LoadPeftAdapter(dir);
        using var expected = On(shifted, read with { Bias = LoraBias.None }, source);
        AssertSameLogits(expected, imported);
    }

    /// <summary>The hf-parity fixture's PEFT LoRA adapter copied to a new directory with <paramref name="bias"/> in its
    /// config; its tensors (by PEFT key) to add to.</summary>
    private static string CopyFixtureAdapter(string bias, out Dictionary<string, Tensor> tensors) =>
        CopyAdapter(Path.Combine(TestData.Fixtures, "tiny-lora"), bias, out tensors);

    /// <summary>The PEFT adapter directory <paramref name="source"/> copied with <paramref name="bias"/> in its config;
    /// its tensors (by PEFT key) to add to.</summary>
    private static string CopyAdapter(string source, string bias, out Dictionary<string, Tensor> tensors)
    {
        var dir = TestFolders.Create("peft-bias");
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(source, "adapter_config.json")))!;
        config["bias"] = bias;
        File.WriteAllText(Path.Combine(dir, "adapter_config.json"), config.ToJsonString());
        tensors = SafeTensors.Load(Path.Combine(source, "adapter_model.safetensors"));
        File.Copy(Path.Combine(source, "adapter_model.safetensors"), Path.Combine(dir, "adapter_model.safetensors"));
        return dir;
    }

    /// <summary>Every bias of the tiny backbone, each shifted by a different amount, so that a swapped name shows.</summary>
    private static Dictionary<string, Tensor> ShiftedBiases() =>
        SafeTensors.Load(Path.Combine(TestData.TinyRoberta, "model.safetensors"))
            .Where(kv => kv.Key.StartsWith("roberta.") && kv.Key.EndsWith(".bias"))
            .Select((kv, i) => (kv.Key, Value: kv.Value.add(0.01 * (i + 1))))
            .ToDictionary(kv => kv.Key, kv => kv.Value);

    /// <summary>Biases into an adapter file's tensors as PEFT saves them: under the module path, an adapted projection's
    /// (query, value) as "…query.base_layer.bias".</summary>
    private static void AddUnderPeftNames(Dictionary<string, Tensor> tensors, IReadOnlyDictionary<string, Tensor> biases)
    {
        foreach (var (name, value) in biases)
        {
            bool adapted = name.Contains(".query.") || name.Contains(".value.");
            tensors["base_model.model." + (adapted ? name.Replace(".bias", ".base_layer.bias") : name)] = value;
        }
    }

    /// <summary>The fixture's LoRA adapter (bias "none") on the tiny backbone with some of its biases replaced.</summary>
    private static PeftModel FixtureLoraOn(IReadOnlyDictionary<string, Tensor> biases) =>
        On(biases, Lora(LoraBias.None), Path.Combine(TestData.Fixtures, "tiny-lora"));

    /// <summary>A PEFT adapter (without biases) on the tiny backbone with some of its biases replaced.</summary>
    private static PeftModel On(IReadOnlyDictionary<string, Tensor> biases, AdapterConfig adapters, string adapter)
    {
        var config = RobertaConfig.Load(Path.Combine(TestData.TinyRoberta, "config.json"));
        var weights = SafeTensors.Load(Path.Combine(TestData.TinyRoberta, "model.safetensors"));
        foreach (var (name, value) in biases) weights[name] = value;
        var model = PeftModel.Create(config, 3, adapters, weights, "tiny", loadHead: true);
        model.LoadPeftAdapter(adapter);
        model.Train(false);
        return model;
    }

    private static void AssertSameLogits(PeftModel expected, PeftModel actual)
    {
        using var _ = no_grad();
        actual.Train(false);
        var difference = expected.Forward(AdapterTests.Ids, AdapterTests.Mask).sub(actual.Forward(AdapterTests.Ids, AdapterTests.Mask)).abs().max().item<float>();
        Assert.IsLessThan(1e-6, difference);
    }
}
