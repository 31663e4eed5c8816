using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetPeft.Adapters;
using MlNetPeft.Backbone;
using MlNetPeft.MlNet;
using MlNetPeft.Training;
using static TorchSharp.torch;

namespace MlNetPeft.Tests.MlNet;

/// <summary>LoadSettings.ShareBackbone: models loaded on one backbone use one copy of its frozen weights, score as
/// each does alone, and keep their trained weights their own; the copy goes with the last of them.</summary>
[TestClass]
public sealed class SharedBackboneTests
{
    private static readonly MLContext Ml = new(seed: 1);
    private static readonly IDataView Data = Ml.Data.LoadFromEnumerable(ToyText.Rows(48, seed: 5));

    /// <summary>A LoRA on query and value, an MSPLoRA that trained every bias, a DoRA on every Linear that trained the
    /// biases of its adapted projections, and an AdaLoRA: different parameters adapted, frozen and trained.</summary>
    private static readonly Lazy<string[]> Zips = new(() => new PeftTextTrainerOptions[]
    {
        PeftTrainerFixture.Lora(2),
        WithBias(PeftTrainerFixture.Msplora(2), LoraBias.All),
        WithBias(PeftTrainerFixture.OnEveryLinear(PeftTrainerFixture.Dora(2)), LoraBias.LoraOnly),
        PeftTrainerFixture.AdaLora(3),
    }.Select(Save).ToArray());

    private static string Save(PeftTextTrainerOptions options)
    {
        var zip = Path.Combine(TestFolders.Create("mlnetpeft-shared-"), "model.zip");
        Ml.Model.Save(PeftTrainerFixture.Fit(Ml, Data, options).Model, Data.Schema, zip);
        return zip;
    }

    private static T WithBias<T>(T options, LoraBias bias) where T : PeftTextTrainerOptions
    {
        switch (options)
        {
            case LoraOptions lora: lora.Bias = bias; break;
            case MsploraOptions msplora: msplora.Bias = bias; break;
        }
        return options;
    }

    private static ITransformer Load(string zip, bool share)
    {
        LoadSettings.ShareBackbone = share;
        try
        {
            return new MLContext().Model.Load(zip, out _);
        }
        finally
        {
            LoadSettings.ShareBackbone = false;
        }
    }

    private static PeftTextTransformer Peft(ITransformer model) => ((TransformerChain<ITransformer>)model).OfType<PeftTextTransformer>().Single();

    private static float[][] Scores(ITransformer model) => PeftTrainerFixture.Scores(model, Data, Ml);

    private static double Largest(float[][] a, float[][] b) => a.Zip(b).SelectMany(r => r.First.Zip(r.Second, (x, y) => Math.Abs(x - y))).Max();

    /// <summary>A weight frozen in every model here, by its checkpoint name: by default the embeddings' LayerNorm's; a
    /// projection's is a row block of its layer's packed query-key-value matrix.</summary>
    private static Tensor FrozenWeight(ITransformer model, string name = "embeddings.LayerNorm.weight") =>
        Peft(model).Model.Network.Encoder.named_parameters().Single(p => IAdaptedProjection.CheckpointName(p.name) == name).parameter;

    [TestMethod]
    public void ModelsOnOneBackboneShareItsWeightsAndScoreAsAlone()
    {
        var alone = Zips.Value.Select(zip => Load(zip, share: false)).ToList();
        var expected = alone.Select(Scores).ToList();
        int before = SharedBackbone.ModelsSharing;
        var shared = Zips.Value.Append(Zips.Value[0]).Select(zip => Load(zip, share: true)).ToList();
        Assert.AreEqual(before + Zips.Value.Length + 1, SharedBackbone.ModelsSharing);
        for (int i = 0; i < shared.Count; i++)
        {
            Assert.IsTrue(Peft(shared[i]).Model.SharesBackbone);
            // Unmerged adapters against merged ones: equal to rounding.
            Assert.IsLessThan(1e-5, Largest(expected[i % Zips.Value.Length], Scores(shared[i])), $"model {i}");
        }

        // One copy: a change to the first model's frozen weight is every sharing model's, and no other model's.
        foreach (var name in new[] { "embeddings.LayerNorm.weight", "encoder.layer.0.attention.self.value.weight" })
        {
            using (no_grad()) FrozenWeight(shared[0], name).neg_();
            try
            {
                for (int i = 1; i < shared.Count; i++)
                    Assert.IsGreaterThan(1e-4, Largest(expected[i % Zips.Value.Length], Scores(shared[i])), $"model {i} uses the first one's {name}");
                PeftTrainerFixture.AssertSameScores(expected[1], Scores(alone[1]), "a model loaded alone: ");
            }
            finally
            {
                using (no_grad()) FrozenWeight(shared[0], name).neg_();
            }
        }

        // Each keeps its own trained weights (model 1's biases): saved again, it reloads alone as the model it was.
        var again = Path.Combine(TestFolders.Create("mlnetpeft-shared-"), "again.zip");
        Ml.Model.Save(shared[1], Data.Schema, again);
        PeftTrainerFixture.AssertSameScores(expected[1], Scores(Load(again, share: false)), "saved again: ");

        // The first model (whose weights the copy is) goes; the others score on, and a new one shares with them.
        ((IDisposable)shared[0]).Dispose();
        GC.Collect();
        GC.WaitForPendingFinalizers();
        for (int i = 1; i < shared.Count; i++)
            Assert.IsLessThan(1e-5, Largest(expected[i % Zips.Value.Length], Scores(shared[i])), $"model {i} after the first is disposed");
        var later = Load(Zips.Value[0], share: true);
        Assert.IsLessThan(1e-5, Largest(expected[0], Scores(later)));
        using (no_grad()) FrozenWeight(later).neg_();
        Assert.IsGreaterThan(1e-4, Largest(expected[1], Scores(shared[1])), "the later model shares the same copy");
        using (no_grad()) FrozenWeight(later).neg_();

        foreach (var model in shared.Skip(1).Append(later)) ((IDisposable)model).Dispose();
        Assert.AreEqual(before, SharedBackbone.ModelsSharing, "the copy goes with its last model");
        foreach (var model in alone) ((IDisposable)model).Dispose();
    }

    /// <summary>Models whose zips embed the backbone share one temporary copy of its file as well (the next ones do not
    /// copy the entry out again); a sharing model saves it again after the first model is disposed, and the file goes
    /// with the last of them.</summary>
    [TestMethod]
    public void ModelsWithTheBackboneEmbeddedShareOneCopyOfItsFile()
    {
        var backbone = PeftTrainerFixture.CopyOfTinyBackbone();
        var zips = new PeftTextTrainerOptions[] { PeftTrainerFixture.Lora(2), PeftTrainerFixture.Msplora(2) }.Select(options =>
        {
            (options.BackboneDirectory, options.EmbedBackbone) = (backbone, true);
            return Save(options);
        }).ToArray();
        Directory.Delete(backbone, recursive: true);
        var expected = zips.Select(zip =>
        {
            var alone = Load(zip, share: false);
            var scores = Scores(alone);
            ((IDisposable)alone).Dispose();
            return scores;
        }).ToList();

        int before = TemporaryBackboneFiles();
        var first = Load(zips[0], share: true);
        var second = Load(zips[1], share: true);
        Assert.AreEqual(before + 1, TemporaryBackboneFiles(), "one copy of the entry for both");
        Assert.IsLessThan(1e-5, Largest(expected[0], Scores(first)));
        Assert.IsLessThan(1e-5, Largest(expected[1], Scores(second)));

        ((IDisposable)first).Dispose();
        var again = Path.Combine(TestFolders.Create("mlnetpeft-shared-"), "again.zip");
        Ml.Model.Save(second, Data.Schema, again);
        using (var reloaded = (IDisposable)Load(again, share: false))
            PeftTrainerFixture.AssertSameScores(expected[1], Scores((ITransformer)reloaded), "saved again: ");
        ((IDisposable)second).Dispose();
        Assert.AreEqual(before, TemporaryBackboneFiles(), "the copy's file closes with the last model");
    }

    /// <summary>Open files that are loaded models' unlinked copies of an embedded backbone (Linux: /proc/self/fd).</summary>
    private static int TemporaryBackboneFiles()
    {
        var prefix = Path.Combine(Path.GetTempPath(), "mlnetpeft-backbone-");
        return Directory.GetFiles("/proc/self/fd").Count(fd =>
        {
            try { return new FileInfo(fd).LinkTarget is { } target && target.StartsWith(prefix, StringComparison.Ordinal); }
            catch (IOException) { return false; } // closed meanwhile
        });
    }

    /// <summary>Unmerged adapters (a shared backbone's, or MergeAdaptersForInference = false) add their updates through
    /// each attention layer's stack, built once at load, where the method stacks (DoRA rescales each output: it does
    /// not), and score as merged ones.</summary>
    [TestMethod]
    public void UnmergedAdaptersAddTheirUpdatesStacked()
    {
        var shared = Zips.Value.Select(zip => Load(zip, share: true)).ToList();
        CollectionAssert.AreEqual(new[] { true, true, false, true },
            shared.Select(m => Peft(m).Model.Network.Encoder.Layers.All(l => l.SelfAttention.HasPackedUpdate)).ToArray(),
            "LoRA, MSPLoRA, DoRA, AdaLoRA");
        foreach (var model in shared) ((IDisposable)model).Dispose();

        float[][] ScoresOf(bool merge)
        {
            var ml = new MLContext(seed: 1);
            var options = PeftTrainerFixture.Msplora(2);
            options.MergeAdaptersForInference = merge;
            var model = PeftTrainerFixture.Fit(ml, Data, options).Model;
            Assert.AreEqual(!merge, Peft(model).Model.Network.Encoder.Layers.All(l => l.SelfAttention.HasPackedUpdate));
            return Scores(model);
        }
        Assert.IsLessThan(1e-5, Largest(ScoresOf(merge: true), ScoresOf(merge: false)), "merged against stacked");
    }

    /// <summary>A full fine-tuning's backbone is its own: it loads as without sharing and joins no copy.</summary>
    [TestMethod]
    public void AFullFineTuningKeepsItsOwnBackbone()
    {
        var zip = Save(PeftTrainerFixture.Tiny(new FullFineTuningOptions { MaxEpochs = 1, LearningRate = 1e-3, BatchSize = 16 }));
        using var lora = (IDisposable)Load(Zips.Value[0], share: true);
        int before = SharedBackbone.ModelsSharing;
        var model = Load(zip, share: true);
        Assert.AreEqual(before, SharedBackbone.ModelsSharing);
        Assert.IsFalse(Peft(model).Model.SharesBackbone);
        PeftTrainerFixture.AssertSameScores(Scores(Load(zip, share: false)), Scores(model));
    }

    /// <summary>Models loaded in another precision use another copy: bf16 models share bf16 weights with each other, and
    /// the fp32 model's are its copy's.</summary>
    [TestMethod]
    public void AnotherPrecisionUsesAnotherCopy()
    {
        var fp32 = Load(Zips.Value[0], share: true);
        var fp32Scores = Scores(fp32);
        LoadSettings.Precision = ComputePrecision.BFloat16;
        try
        {
            var first = Load(Zips.Value[0], share: true);
            var second = Load(Zips.Value[1], share: true);
            var bf16Scores = Scores(second);
            Assert.IsLessThan(0.05, Largest(Scores(Load(Zips.Value[1], share: false)), bf16Scores), "bf16 rounding only");
            Assert.AreEqual(ScalarType.BFloat16, FrozenWeight(second).dtype);
            Assert.AreEqual(ScalarType.Float32, FrozenWeight(fp32).dtype);
            using (no_grad()) FrozenWeight(first).neg_();
            Assert.IsGreaterThan(1e-4, Largest(bf16Scores, Scores(second)), "the two bf16 models share a copy");
            PeftTrainerFixture.AssertSameScores(fp32Scores, Scores(fp32), "the fp32 model: ");
            foreach (var model in new[] { fp32, first, second }) ((IDisposable)model).Dispose();
        }
        finally
        {
            LoadSettings.Precision = ComputePrecision.Auto;
        }
    }
}
