using MlNetPeft.Adapters;
using MlNetPeft.Adapters.Lora;
using MlNetPeft.Adapters.LoraSquared;
using MlNetPeft.Adapters.Msplora;
using MlNetPeft.Backbone;
using MlNetPeft.Tests.Backbone;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetPeft.Tests.Adapters;

[TestClass]
public sealed class AdapterTests
{
    internal static Tensor Ids => tensor(TestData.Parity.GetProperty("input_ids").EnumerateArray()
        .SelectMany(r => r.EnumerateArray().Select(v => v.GetInt64())).ToArray(), [3, 12]);

    internal static Tensor Mask => tensor(TestData.Parity.GetProperty("attention_mask").EnumerateArray()
        .SelectMany(r => r.EnumerateArray().Select(v => v.GetInt64())).ToArray(), [3, 12]);

    /// <summary>The fixture's input rows without their padding (as ML.NET scoring takes them).</summary>
    internal static List<int[]> Rows() => Enumerable.Range(0, (int)Ids.shape[0])
        .Select(r => Ids[r].data<long>().Take((int)Mask[r].sum().item<long>()).Select(id => (int)id).ToArray()).ToList();

    /// <summary>The fixture's tiny model with <paramref name="adapters"/>, in evaluation mode; with
    /// <paramref name="backboneDropout"/>, its hidden and attention dropout (the fixture has none).</summary>
    internal static PeftModel Tiny(AdapterConfig adapters, double backboneDropout = 0)
    {
        var config = RobertaConfig.Load(Path.Combine(TestData.TinyRoberta, "config.json")) with
        {
            HiddenDropoutProb = backboneDropout, AttentionProbsDropoutProb = backboneDropout,
        };
        var weights = SafeTensors.Load(Path.Combine(TestData.TinyRoberta, "model.safetensors"));
        var model = PeftModel.Create(config, 3, adapters, weights, "tiny", loadHead: true);
        model.Train(false);
        return model;
    }

    /// <summary>A backbone of the given shape with a tiny vocabulary and FFN: enough to count adapter parameters.</summary>
    private static PeftModel Shaped(int layers, int hidden, AdapterConfig adapters)
    {
        var config = new RobertaConfig { NumHiddenLayers = layers, HiddenSize = hidden, NumAttentionHeads = 4, IntermediateSize = 8, VocabSize = 8, MaxPositionEmbeddings = 8 };
        using var donor = new RobertaForSequenceClassification(config, 2);
        return PeftModel.Create(config, 2, adapters, donor.state_dict(), "random");
    }

    /// <summary>Gives both models' adapter parameters the same N(0, scale²) values (same method, same layout).</summary>
    internal static void SetSameRandomAdapters(PeftModel a, PeftModel b, int seed, double scale)
    {
        using var _ = no_grad();
        manual_seed(seed);
        foreach (var ((name, pa), pb) in a.Adapters.named_parameters().Zip(b.AdapterParameters()))
        {
            var value = name.EndsWith("_magnitude.weight", StringComparison.Ordinal)
                ? pa.mul(randn_like(pa).exp()) // DoRA's row lengths: the ones it starts with, times e^N(0,1)
                : randn_like(pa).mul(scale);
            pa.copy_(value);
            pb.copy_(value);
        }
    }

    /// <summary>Two tiny models with the same random adapters; the second was moved by To(CPU, <paramref name="dtype"/>)
    /// (backbone cast, projections packed), the first was not.</summary>
    private static (PeftModel AsLoaded, PeftModel Moved) AlikeModels(AdapterConfig adapters, ScalarType dtype, int seed, double scale)
    {
        var asLoaded = Tiny(adapters);
        var moved = Tiny(adapters);
        moved.To(CPU, dtype);
        SetSameRandomAdapters(asLoaded, moved, seed, scale);
        return (asLoaded, moved);
    }

    /// <summary>Backpropagates the same loss from both models' logits; every adapter gradient agrees to 1e-5 of its
    /// size.</summary>
    private static void AssertSameAdapterGradients(PeftModel a, Tensor logitsA, PeftModel b, Tensor logitsB)
    {
        var labels = tensor(new long[] { 0, 1, 2 });
        nn.functional.cross_entropy(logitsA, labels).backward();
        nn.functional.cross_entropy(logitsB, labels).backward();
        foreach (var (pa, pb) in a.AdapterParameters().Zip(b.AdapterParameters()))
            Assert.IsLessThan(1e-6 + 1e-5 * pa.grad!.abs().max().item<float>(), (pa.grad - pb.grad!).abs().max().item<float>(), "adapter gradient");
    }

    public static IEnumerable<object[]> Methods =>
    [
        [new LoraConfig { Dropout = 0 }],
        [new MsploraConfig { Dropout = 0 }],
        [new SvdConfig { Variant = SvdVariant.LoraSquared, Dropout = 0 }],
        [new SvdConfig { Variant = SvdVariant.AdaLora, Dropout = 0 }],
        [new LoraConfig { Dropout = 0, UseDora = true }],
        [new LoraConfig { Dropout = 0, Layers = [0, 2] }], // PEFT's layers_to_transform: not stacked, two layers bare
    ];

    /// <summary>Random adapter values of <paramref name="scale"/>, halved when all six matrices of a block are adapted:
    /// at the full scale MSPLoRA's six updates saturate the tiny model's attention, where the different fp32 rounding
    /// of two equal computations grows to 3e-5 in the logits (1e-8 at half the scale, which still moves them by 0.05).</summary>
    private static double AdapterScale(AdapterConfig adapters, double scale) =>
        adapters.Targets.Length > 3 && adapters is not SvdConfig ? scale / 2 : scale; // SVD forms multiply 3-5 factors: keep

    /// <summary>The methods whose updates add to the weight (not DoRA, which rescales its rows: on the tiny model its
    /// effect on the logits is too small to measure bf16's error against; DoraTests bounds that instead).</summary>
    public static IEnumerable<object[]> AdditiveMethods => Methods.Where(m => m[0] is not LoraConfig { UseDora: true });

    /// <summary>Every method with adapters on all six Linears of each block (the LoRA² and AdaLoRA papers' setting).</summary>
    public static IEnumerable<object[]> MethodsOnEveryLinear =>
        Methods.Select(m => new object[] { (AdapterConfig)m[0] with { Targets = [.. AdapterTargets.All] } });

    [TestMethod]
    [DynamicData(nameof(Methods))]
    [DynamicData(nameof(MethodsOnEveryLinear))]
    public void FreshAdaptersGiveExactlyTheBackboneLogits(AdapterConfig adapters)
    {
        using var reference = RobertaParityTests.LoadTiny();
        using var model = Tiny(adapters);
        using var _ = no_grad();
        var expected = reference.call(Ids, Mask);
        var actual = model.Forward(Ids, Mask);
        Assert.IsTrue(expected.equal(actual).all().item<bool>(), $"max diff {(expected - actual).abs().max().item<float>()}");
    }

    /// <summary>With Layers (PEFT's layers_to_transform), only the listed layers get adapters: the merged checkpoint
    /// differs from the backbone in exactly their adapted weights.</summary>
    [TestMethod]
    public void AdaptersGoOnlyOnTheListedLayers()
    {
        using var model = Tiny(new LoraConfig { Dropout = 0, Layers = [1, 3] });
        CollectionAssert.AreEqual(new[] { 1, 1, 3, 3 }, model.Adapters.Wrapped.Select(w => w.Layer).ToArray());
        using (no_grad())
        {
            manual_seed(5);
            foreach (var p in model.AdapterParameters()) p.copy_(randn_like(p));
        }
        var merged = SafeTensors.Load(MergedCheckpoint.Save(model), "merged");
        var backbone = SafeTensors.Load(Path.Combine(TestData.TinyRoberta, "model.safetensors"));
        var changed = backbone.Keys.Where(k => merged.ContainsKey(k) && !merged[k].equal(backbone[k].to(ScalarType.Float32)).all().item<bool>()).Order();
        var expected = new[] { 1, 3 }.SelectMany(l => new[] { "query", "value" }.Select(t => $"roberta.encoder.layer.{l}.attention.self.{t}.weight")).Order();
        CollectionAssert.AreEqual(expected.ToList(), changed.ToList());

        foreach (var bad in new[] { new[] { 4 }, [], [1, 1], [-1] })
            StringAssert.Contains(Assert.ThrowsExactly<ArgumentException>(() => new LoraConfig { Layers = bad }.Validate(4)).Message, "Layers");
    }

    [TestMethod]
    public void MsploraCountMatchesThePaperFormula()
    {
        // (10 + N)·r0·d for query and value with ranks 8/4/2 and 3 groups, against LoRA's 4·N·r0·d.
        foreach (var (layers, hidden) in new[] { (12, 768), (6, 256), (4, 64) })
        {
            using var msp = Shaped(layers, hidden, new MsploraConfig());
            Assert.AreEqual((10L + layers) * 8 * hidden, msp.Report().AdapterCount, $"MSPLoRA {layers}x{hidden}");
            using var lora = Shaped(layers, hidden, new LoraConfig());
            Assert.AreEqual(4L * layers * 8 * hidden, lora.Report().AdapterCount, $"LoRA {layers}x{hidden}");
            long head = hidden * hidden + hidden + hidden * 2 + 2;
            Assert.AreEqual(head, msp.Report().HeadCount);
            Assert.AreEqual(msp.Report().AdapterCount + head, msp.TrainableCount);
        }
    }

    [TestMethod]
    public void MsploraSharesGlobalAndGroupComponents()
    {
        using var model = Shaped(12, 64, new MsploraConfig());
        var query = model.Adapters.Wrapped.Where(w => w.Path.EndsWith("query")).Select(w => w.Linear.Updates).ToList();
        Assert.HasCount(12, query);
        Assert.IsTrue(query.All(u => u.Count == 3));
        Assert.IsTrue(query.All(u => ReferenceEquals(u[0], query[0][0])), "one global pair for all layers");
        for (int layer = 0; layer < 12; layer++)
        {
            Assert.AreSame(query[layer / 4 * 4][1], query[layer][1], $"layer {layer} shares its group's mid pair");
            Assert.AreEqual(1, query.Count(u => ReferenceEquals(u[2], query[layer][2])), "layer-specific pair is its own");
        }
        Assert.AreEqual(3, query.Select(u => u[1]).Distinct().Count());
        var value = model.Adapters.Wrapped.First(w => w.Path.EndsWith("value")).Linear.Updates;
        Assert.AreNotSame(query[0][0], value[0], "query and value have separate pyramids");
        // Each parameter is registered exactly once: 2 targets × (1 global + 3 mid + 12 layer) pairs × (A, B).
        Assert.AreEqual(2 * 16 * 2, model.AdapterParameters().Count());
    }

    [TestMethod]
    public void GroupsAreContiguousEqualRanges()
    {
        var config = new MsploraConfig();
        CollectionAssert.AreEqual(new[] { 0, 0, 1, 1, 2, 2 }, Enumerable.Range(0, 6).Select(l => config.GroupOf(l, 6)).ToArray());
        CollectionAssert.AreEqual(new[] { 0, 0, 1, 2 }, Enumerable.Range(0, 4).Select(l => config.GroupOf(l, 4)).ToArray());
    }

    [TestMethod]
    [DynamicData(nameof(Methods))]
    [DynamicData(nameof(MethodsOnEveryLinear))]
    public void MergedAdaptersGiveTheSameLogits(AdapterConfig adapters)
    {
        using var model = Tiny(adapters);
        using var _ = no_grad();
        manual_seed(3);
        foreach (var p in model.AdapterParameters()) p.copy_(randn_like(p).mul(AdapterScale(adapters, 0.2)));
        var unmerged = model.Forward(Ids, Mask);
        using var reference = RobertaParityTests.LoadTiny();
        Assert.IsGreaterThan(1e-4, (unmerged - reference.call(Ids, Mask)).abs().max().item<float>(), "the adapters change the output");
        model.Merge();
        var merged = model.Forward(Ids, Mask);
        Assert.IsLessThan(1e-5, (merged - unmerged).abs().max().item<float>());
    }

    /// <summary>
    /// A target's adapter sits on the matrix HF's key of that name holds: with LoRA on that one target, the merged
    /// checkpoint differs from the backbone's in exactly that weight of every layer and gives the adapted logits.
    /// </summary>
    [TestMethod]
    [DataRow(AdapterTargets.Query)]
    [DataRow(AdapterTargets.Key)]
    [DataRow(AdapterTargets.Value)]
    [DataRow(AdapterTargets.AttentionOutput)]
    [DataRow(AdapterTargets.Intermediate)]
    [DataRow(AdapterTargets.Output)]
    public void EachTargetAdaptsTheMatrixOfItsName(string target)
    {
        using var model = Tiny(new LoraConfig { Dropout = 0, Targets = [target] });
        using (no_grad())
        {
            manual_seed(5);
            foreach (var p in model.AdapterParameters()) p.copy_(randn_like(p)); // large: a query or key alone moves the logits little
        }
        var merged = SafeTensors.Load(MergedCheckpoint.Save(model), "merged");
        var backbone = SafeTensors.Load(Path.Combine(TestData.TinyRoberta, "model.safetensors"));
        var changed = backbone.Keys.Where(k => merged.ContainsKey(k) && !merged[k].equal(backbone[k].to(ScalarType.Float32)).all().item<bool>()).Order();
        var expected = Enumerable.Range(0, model.Network.Encoder.Layers.Count)
            .Select(i => $"roberta.encoder.layer.{i}.{(target is "query" or "key" or "value" ? "attention.self." : "")}{target}.weight").Order();
        CollectionAssert.AreEqual(expected.ToList(), changed.ToList());

        var config = RobertaConfig.Load(Path.Combine(TestData.TinyRoberta, "config.json"));
        using var plain = PeftModel.Create(config, 3, new MlNetPeft.Adapters.Full.FullFineTuningConfig(), merged, "merged", loadHead: true);
        plain.Train(false);
        using var reference = RobertaParityTests.LoadTiny();
        using var _ = no_grad();
        var adapted = model.Forward(Ids, Mask);
        Assert.IsGreaterThan(1e-4, (adapted - reference.call(Ids, Mask)).abs().max().item<float>(), "the adapter is in the forward");
        Assert.IsLessThan(1e-5, (plain.Forward(Ids, Mask) - adapted).abs().max().item<float>());
    }

    /// <summary>The CUDA default (bf16 frozen backbone, fp32 adapters and head), run on the CPU: logits and adapter
    /// gradients agree with fp32 to bf16 accuracy, trainable weights and their gradients stay fp32, and merging
    /// into the bf16 weights keeps the logits.</summary>
    [TestMethod]
    [DynamicData(nameof(AdditiveMethods))]
    public void BfloatBackboneAgreesWithFloat32(AdapterConfig adapters)
    {
        var (fp32, bf16) = AlikeModels(adapters, ScalarType.BFloat16, seed: 5, scale: 0.5);
        using var disposeFp32 = fp32;
        using var disposeBf16 = bf16;
        Assert.AreEqual(ScalarType.BFloat16, bf16.Network.Encoder.parameters().First().dtype);
        Assert.IsTrue(bf16.TrainableParameters().All(p => p.Parameter.dtype == ScalarType.Float32), "trainable weights stay fp32");

        var expected = fp32.Forward(Ids, Mask);
        var actual = bf16.Forward(Ids, Mask);
        Assert.AreEqual(ScalarType.Float32, actual.dtype);
        double effect, error = (actual - expected).abs().max().item<float>();
        using (no_grad())
        using (var backbone = RobertaParityTests.LoadTiny())
            effect = (expected - backbone.call(Ids, Mask)).abs().max().item<float>();
        Assert.IsLessThan(0.05 * effect, error, $"bf16 error {error} against the adapters' effect {effect}");

        var labels = tensor(new long[] { 0, 1, 2 });
        nn.functional.cross_entropy(expected, labels).backward();
        nn.functional.cross_entropy(actual, labels).backward();
        Assert.IsTrue(bf16.AdapterParameters().All(p => p.grad!.dtype == ScalarType.Float32), "gradients are fp32");
        static Tensor Gradients(PeftModel m) => cat(m.AdapterParameters().Select(p => p.grad!.flatten()).ToArray());
        double cosine = nn.functional.cosine_similarity(Gradients(fp32), Gradients(bf16), 0).item<float>();
        Assert.IsGreaterThan(0.995, cosine, "direction of the adapter gradient");

        using var _ = no_grad();
        bf16.Merge();
        var merged = bf16.Forward(Ids, Mask);
        Assert.IsLessThan(0.05 * effect, (merged - actual).abs().max().item<float>());
    }

    /// <summary>PeftModel.To packs each layer's frozen query, key and value into one matrix: logits and adapter
    /// gradients stay those of separate projections, and merging lands in the packed weights.</summary>
    [TestMethod]
    [DynamicData(nameof(Methods))]
    [DynamicData(nameof(MethodsOnEveryLinear))]
    public void PackedProjectionsGiveTheSameLogitsAndGradients(AdapterConfig adapters)
    {
        var (separate, packed) = AlikeModels(adapters, ScalarType.Float32, seed: 11, scale: AdapterScale(adapters, 0.3));
        using var disposeSeparate = separate;
        using var disposePacked = packed;
        Assert.IsTrue(packed.Network.Encoder.Layers.All(l => l.SelfAttention.IsPacked));
        Assert.IsFalse(separate.Network.Encoder.Layers.Any(l => l.SelfAttention.IsPacked));

        var expected = separate.Forward(Ids, Mask);
        var actual = packed.Forward(Ids, Mask);
        Assert.IsLessThan(1e-6, (expected - actual).abs().max().item<float>(), "logits");
        AssertSameAdapterGradients(separate, expected, packed, actual);

        using var _ = no_grad();
        separate.Merge();
        packed.Merge();
        Assert.IsLessThan(1e-5, (separate.Forward(Ids, Mask) - packed.Forward(Ids, Mask)).abs().max().item<float>(), "merged logits");
    }

    /// <summary>A frozen weight replaced after packing (not changed in place) is the one used: that layer goes back
    /// to separate projections rather than reading the stale packed copy.</summary>
    [TestMethod]
    public void AWeightReplacedAfterPackingIsUsed()
    {
        using var separate = Tiny(new LoraConfig { Dropout = 0 });
        using var packed = Tiny(new LoraConfig { Dropout = 0 });
        packed.To(CPU, ScalarType.Float32);
        var before = packed.Forward(Ids, Mask).detach();
        manual_seed(12);
        var replacement = randn(64, 64);
        foreach (var model in new[] { separate, packed })
            ((TorchSharp.Modules.Linear)model.Network.Encoder.Layers[1].SelfAttention.Projection("key")).weight =
                new TorchSharp.Modules.Parameter(replacement.clone(), requires_grad: false);
        var attention = packed.Network.Encoder.Layers[1].SelfAttention;
        Assert.IsFalse(attention.IsPacked);
        Assert.IsTrue(packed.Network.Encoder.Layers[0].SelfAttention.IsPacked, "other layers stay packed");

        using var _ = no_grad();
        var expected = separate.Forward(Ids, Mask);
        Assert.IsGreaterThan(1e-4, (expected - before).abs().max().item<float>(), "the new weight matters");
        Assert.IsLessThan(1e-6, (expected - packed.Forward(Ids, Mask)).abs().max().item<float>());
        attention.PackProjections();
        Assert.IsTrue(attention.IsPacked);
        Assert.IsLessThan(1e-6, (expected - packed.Forward(Ids, Mask)).abs().max().item<float>(), "packed again");
    }

    [TestMethod]
    public void FusedMsploraProjectionsEqualTheSeparatePairs()
    {
        manual_seed(8);
        using var separate = Tiny(new MsploraConfig { Dropout = 0, FuseProjections = false });
        manual_seed(8);
        using var fused = Tiny(new MsploraConfig { Dropout = 0, FuseProjections = true });
        SetSameRandomAdapters(separate, fused, seed: 9, scale: 0.3);
        var expected = separate.Forward(Ids, Mask);
        var actual = fused.Forward(Ids, Mask);
        using (no_grad())
            Assert.IsGreaterThan(1e-4, (expected - RobertaParityTests.LoadTiny().call(Ids, Mask)).abs().max().item<float>(), "non-trivial update");
        Assert.IsLessThan(1e-6, (expected - actual).abs().max().item<float>(), "logits");

        AssertSameAdapterGradients(separate, expected, fused, actual);
    }

    public static IEnumerable<object[]> StackableMethods =>
    [
        [new LoraConfig { Dropout = 0 }],
        [new LoraConfig { Dropout = 0, Rank = 4, Targets = ["query", "key", "value"] }],
        // PEFT's alpha_pattern: each pair's own alpha/r rides on its rows of the stack.
        [new LoraConfig { Dropout = 0, Targets = ["query", "value"], AlphaPattern = new() { [@"layer\.[13]\..*value"] = 40, ["query"] = 4 } }],
        [new MsploraConfig { Dropout = 0 }],
        [new MsploraConfig { Dropout = 0, Ranks = [6, 3, 2, 1], GroupCount = 2, Alpha = 5, Targets = ["key", "value"] }],
        [new SvdConfig { Variant = SvdVariant.AdaLora, Dropout = 0 }],
        [new SvdConfig { Variant = SvdVariant.LoraSquared, Dropout = 0, Targets = ["query", "key", "value"] }],
        // The attention projections stack; the dense ones add their own updates beside the stack.
        [new MsploraConfig { Dropout = 0, Targets = [.. AdapterTargets.All] }],
        [new SvdConfig { Variant = SvdVariant.LoraSquared, Dropout = 0, Targets = [.. AdapterTargets.All] }],
    ];

    /// <summary>A training forward gathers the adapter factors of all layers into one stack (shared MSPLoRA pairs by a
    /// selection matmul, SVD-form factors by batched matmuls) and adds each layer's updates to its packed
    /// query|key|value output at once: logits and adapter gradients equal those of each projection using its own
    /// factors, pruned singular values included. (Updates small enough that fp32 rounding is not amplified through
    /// saturated softmaxes.)</summary>
    [TestMethod]
    [DynamicData(nameof(StackableMethods))]
    public void StackedFactorsGiveTheSameLogitsAndGradients(AdapterConfig adapters)
    {
        foreach (var dtype in new[] { ScalarType.Float32, ScalarType.BFloat16 })
        {
            var (own, stacked) = AlikeModels(adapters, dtype, seed: 13, scale: adapters is SvdConfig ? 0.4 : 0.1);
            using var disposeOwn = own;
            using var disposeStacked = stacked;
            foreach (var model in new[] { own, stacked })
                foreach (var svd in model.Adapters.Components.Select(c => c.Component).OfType<SvdUpdate>())
                    svd.Mask.narrow(0, 0, 3).fill_(0); // three singular values pruned
            own.To(CPU, dtype);
            own.Adapters.StackingEnabled = false;
            var expected = own.Forward(Ids, Mask);
            var actual = stacked.Forward(Ids, Mask);
            Assert.IsTrue(stacked.Adapters.StackFactors(dtype), "the method's factors stack");
            stacked.Adapters.ReleaseStacks();
            float tolerance = dtype == ScalarType.Float32 ? 1e-6f : 1e-2f;
            using (no_grad())
                Assert.IsGreaterThan(1e-3, (expected - RobertaParityTests.LoadTiny().call(Ids, Mask)).abs().max().item<float>(), "non-trivial update");
            Assert.IsLessThan(tolerance, (expected - actual).abs().max().item<float>(), $"{dtype} logits");
            if (dtype == ScalarType.Float32) AssertSameAdapterGradients(own, expected, stacked, actual);
        }
    }

    /// <summary>Optimizer steps through the training loop's stepper (clipping, AdamW on the flat buffer) move the
    /// adapters the same with stacked factors as without: the stacked gradients reach every parameter, shared
    /// MSPLoRA pairs summed over their layers.</summary>
    [TestMethod]
    [DataRow("msplora")]
    [DataRow("adalora")]
    public void TrainingStepsWithStackedFactorsMatchThePerProjectionPath(string method)
    {
        AdapterConfig adapters = method == "msplora" ? new MsploraConfig { Dropout = 0 } : new SvdConfig { Variant = SvdVariant.AdaLora, Dropout = 0 };
        var (own, stacked) = AlikeModels(adapters, ScalarType.Float32, seed: 16, scale: adapters is SvdConfig ? 0.4 : 0.1);
        using var disposeOwn = own;
        using var disposeStacked = stacked;
        own.To(CPU, ScalarType.Float32);
        own.Adapters.StackingEnabled = false;
        var batch = new MlNetPeft.Training.Batch(Ids, Mask, tensor(new long[] { 0, 1, 2 }), 3);
        var settings = new MlNetPeft.Training.TrainingSettings { BatchSize = 3, LearningRate = 1e-2 };
        var before = stacked.AdapterParameters().Select(p => p.detach().clone()).ToList();
        foreach (var model in new[] { own, stacked })
        {
            // A long schedule: AdaLoRA prunes nothing in these steps (near-equal scores could rank either way).
            using var stepper = new MlNetPeft.Training.TrainingStepper(model, settings, MlNetPeft.Training.TaskKind.Classification, totalSteps: 1000);
            for (int i = 0; i < 3; i++) stepper.Run(batch);
        }
        foreach (var ((po, ps), start) in own.AdapterParameters().Zip(stacked.AdapterParameters()).Zip(before))
        {
            float moved = (ps - start).abs().max().item<float>();
            Assert.IsGreaterThan(1e-4, moved, "the step moved the adapter");
            Assert.IsLessThan(1e-3 * moved, (po - ps).abs().max().item<float>(), "same steps");
        }
    }

    /// <summary>Full fine-tuning in bf16 trains a bf16 compute copy of fp32 masters: the masters start as the exact fp32
    /// weights, keep steps too small for bf16 to resolve, the forward's weights are the masters cast, the saved state is
    /// the masters, and the steps go the way fp32 training's do.</summary>
    [TestMethod]
    public void FullFineTuningInBfloatTrainsFloat32Masters()
    {
        using var mixed = Tiny(new MlNetPeft.Adapters.Full.FullFineTuningConfig());
        using var fp32 = Tiny(new MlNetPeft.Adapters.Full.FullFineTuningConfig());
        var start = mixed.TrainableState();
        mixed.To(CPU, ScalarType.BFloat16);
        fp32.To(CPU, ScalarType.Float32);
        Assert.IsNull(fp32.TrainedBackboneMasters());
        var names = mixed.Network.Encoder.named_parameters().Select(p => "roberta." + p.name).ToList();
        foreach (var (key, master) in names.Zip(mixed.TrainedBackboneMasters()!))
            Assert.IsTrue(master.equal(start[key]).all().item<bool>(), $"{key}: the master starts as the exact fp32 weight");
        var batch = new MlNetPeft.Training.Batch(Ids, Mask, tensor(new long[] { 0, 1, 2 }), 3);
        var settings = new MlNetPeft.Training.TrainingSettings { BatchSize = 3, LearningRate = 1e-4, WarmupRatio = 0 };
        foreach (var model in new[] { mixed, fp32 })
        {
            using var stepper = new MlNetPeft.Training.TrainingStepper(model, settings, MlNetPeft.Training.TaskKind.Classification, totalSteps: 100);
            for (int i = 0; i < 3; i++) using (NewDisposeScope()) stepper.Run(batch);
        }
        var (mixedState, fp32State) = (mixed.TrainableState(), fp32.TrainableState());
        var weights = mixed.Network.Encoder.named_parameters().ToList();
        Assert.IsTrue(weights.All(w => w.parameter.dtype == ScalarType.BFloat16));
        long keptOnlyByMaster = 0;
        var (mixedSteps, fp32Steps) = (new List<Tensor>(), new List<Tensor>());
        foreach (var ((name, weight), master) in weights.Zip(mixed.TrainedBackboneMasters()!))
        {
            string key = "roberta." + name;
            var initial = start[key];
            Assert.IsTrue(mixedState[key].equal(master).all().item<bool>(), $"{key}: the saved state is the master");
            Assert.IsTrue(weight.equal(master.to(ScalarType.BFloat16)).all().item<bool>(), $"{name}: the forward's weight is its master cast");
            keptOnlyByMaster += master.ne(initial).logical_and(master.to(ScalarType.BFloat16).eq(initial.to(ScalarType.BFloat16))).sum().item<long>();
            mixedSteps.Add((master - initial).flatten());
            fp32Steps.Add((fp32State[key] - initial).flatten());
        }
        Assert.IsGreaterThan(0L, keptOnlyByMaster, "steps below bf16's resolution are kept by the masters");
        var (a, b) = (cat(mixedSteps.ToArray()), cat(fp32Steps.ToArray()));
        double cosine = a.dot(b).item<float>() / (a.norm().item<float>() * b.norm().item<float>());
        Assert.IsGreaterThan(0.9, cosine, $"bf16 and fp32 steps agree in direction (cosine {cosine:F3})");
        Assert.ThrowsExactly<InvalidOperationException>(() => mixed.To(CPU, ScalarType.Float32));
    }

    /// <summary>With adapter dropout, a stacked training forward drops each target's input separately: it draws a mask
    /// per target (so it differs from the dropout-free forward) and every pair still gets a gradient.</summary>
    [TestMethod]
    public void StackedFactorsApplyEachTargetsDropout()
    {
        using var model = Tiny(new MsploraConfig { Dropout = 0.3 });
        model.To(CPU, ScalarType.Float32);
        SetSameRandomAdapters(model, model, seed: 14, scale: 0.1);
        var clean = model.Forward(Ids, Mask).detach();
        model.Adapters.train(true);
        manual_seed(15);
        var dropped = model.Forward(Ids, Mask);
        Assert.IsGreaterThan(1e-4, (dropped - clean).abs().max().item<float>(), "dropout applied");
        nn.functional.cross_entropy(dropped, tensor(new long[] { 0, 1, 2 })).backward();
        foreach (var p in model.AdapterParameters())
            Assert.IsTrue(p.grad is not null && p.grad.abs().max().item<float>() > 0 && p.grad.isfinite().all().item<bool>());
    }

    /// <summary>With adapter dropout, the stacked training forward draws the masks each projection's own update draws,
    /// in the same order (MSPLoRA: one per pair, PairDropout), so the same seed gives the same logits and gradients.
    /// (On value only: the last layer's query update covers the &lt;s&gt; rows alone when each projection runs its
    /// own, so its masks are drawn over another shape.)</summary>
    [TestMethod]
    [DataRow("msplora")]
    [DataRow("lora")]
    public void StackedDropoutDrawsThePerProjectionMasks(string method)
    {
        AdapterConfig adapters = method == "msplora"
            ? new MsploraConfig { Dropout = 0.3, Targets = ["value"] }
            : new LoraConfig { Dropout = 0.3, Targets = ["value"] };
        var (own, stacked) = AlikeModels(adapters, ScalarType.Float32, seed: 17, scale: 0.1);
        using var disposeOwn = own;
        using var disposeStacked = stacked;
        own.To(CPU, ScalarType.Float32);
        own.Adapters.StackingEnabled = false;
        var clean = stacked.Forward(Ids, Mask).detach();
        own.Adapters.train(true);
        stacked.Adapters.train(true);
        manual_seed(18);
        var expected = own.Forward(Ids, Mask);
        manual_seed(18);
        var actual = stacked.Forward(Ids, Mask);
        Assert.IsTrue(stacked.Adapters.StackFactors(ScalarType.Float32), "the method's factors stack");
        stacked.Adapters.ReleaseStacks();
        Assert.IsGreaterThan(1e-4, (expected - clean).abs().max().item<float>(), "dropout applied");
        Assert.IsLessThan(1e-6, (expected - actual).abs().max().item<float>(), "logits");
        AssertSameAdapterGradients(own, expected, stacked, actual);
    }

    [TestMethod]
    public void BadAdapterOptionsAreRejected()
    {
        Assert.ThrowsExactly<ArgumentException>(() => new MsploraConfig { Ranks = [] }.Validate(12));
        Assert.ThrowsExactly<ArgumentException>(() => new MsploraConfig { GroupCount = 13 }.Validate(12));
        Assert.ThrowsExactly<ArgumentException>(() => new LoraConfig { Rank = 0 }.Validate(12));
        var e = Assert.ThrowsExactly<ArgumentException>(() => new LoraConfig { Targets = ["dense"] }.Validate(12));
        StringAssert.Contains(e.Message, "'dense'");
        StringAssert.Contains(e.Message, "intermediate.dense"); // the names it takes
        Assert.ThrowsExactly<ArgumentException>(() => new LoraConfig { Targets = ["value", "value"] }.Validate(12));
    }

    [TestMethod]
    public void ConfigRoundTripsThroughJson()
    {
        var config = new MsploraConfig { Ranks = [16, 8, 4, 2], GroupCount = 4, Targets = ["query", "key", "value"], Alpha = 32 };
        var back = AdapterConfig.FromJson(config.ToJson());
        Assert.IsInstanceOfType<MsploraConfig>(back);
        Assert.AreEqual(config.ToJson(), back.ToJson());
        StringAssert.Contains(config.ToJson(), "\"method\":\"msplora\"");
    }
}
