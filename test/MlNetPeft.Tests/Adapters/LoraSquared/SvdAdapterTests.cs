using MlNetPeft.Adapters;
using MlNetPeft.Adapters.LoraSquared;
using MlNetPeft.Backbone;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetPeft.Tests.Adapters.LoraSquared;

[TestClass]
public sealed class SvdAdapterTests
{
    /// <summary>LoRA² factors (r = 4, k = 2, 6×5 matrix) that are orthonormal and whose planes are orthogonal (aa·B = 0).</summary>
    private static SvdUpdate OrthonormalTwoPlane()
    {
        var update = new SvdUpdate(5, 6, rank: 4, innerRank: 2, alpha: 4, dropoutProbability: 0);
        var p = update.named_parameters().ToDictionary(x => x.name, x => x.parameter);
        using var _ = no_grad();
        p["lora_A"].copy_(eye(2, 5));                                   // rows orthonormal
        p["lora_bb"].copy_(eye(6, 2));                                  // columns orthonormal
        p["lora_aa"].copy_(cat([eye(2), zeros(2, 2)], 1));              // [I 0]: rows orthonormal
        p["lora_B"].copy_(cat([zeros(2, 2), eye(2)], 0));               // [0; I]: columns orthonormal, aa·B = 0
        return update;
    }

    [TestMethod]
    public void RegularizerIsZeroForOrthonormalFactorsAndOrthogonalPlanes()
    {
        using var update = OrthonormalTwoPlane();
        var (orth, cross) = RankAllocator.Regularizer([update]);
        Assert.AreEqual(0.0, orth.item<float>(), 1e-6);
        Assert.AreEqual(0.0, cross!.item<float>(), 1e-5);
    }

    [TestMethod]
    public void RegularizerMatchesHandComputedValues()
    {
        using var update = OrthonormalTwoPlane();
        var p = update.named_parameters().ToDictionary(x => x.name, x => x.parameter);
        using (no_grad())
        {
            p["lora_A"].mul_(2);                        // A·Aᵀ = 4I₂ → ‖3I₂‖_F = 3√2; the other three factors stay at 0
            p["lora_B"].copy_(eye(4, 2));               // [I; 0]: still column-orthonormal, but now aa·B = I₂
        }
        var (orth, cross) = RankAllocator.Regularizer([update]);
        Assert.AreEqual(3 * Math.Sqrt(2) / 4, orth.item<float>(), 1e-5, "mean over the four factors");
        // U·V = bb·(aa·B)·A = bb·I·2A: ‖·‖_F = 2·‖I₂‖_F = 2√2.
        Assert.AreEqual(2 * Math.Sqrt(2), cross!.item<float>(), 1e-5);
        var (u, v) = update.Factors();
        Assert.AreEqual(u.matmul(v).norm().item<float>(), cross.item<float>(), 1e-5, "Gram-matrix form equals ‖U·V‖_F");
    }

    [TestMethod]
    public void CrossTermReachesTheGradients()
    {
        manual_seed(11);
        using var update = new SvdUpdate(16, 12, rank: 4, innerRank: 3, alpha: 4, dropoutProbability: 0);
        var (_, cross) = RankAllocator.Regularizer([update]);
        Assert.IsGreaterThan(0f, cross!.item<float>());
        cross.backward();
        foreach (var (name, p) in update.named_parameters().Where(x => x.name != "lora_E"))
            Assert.IsGreaterThan(0f, p.grad!.norm().item<float>(), $"{name} gets a gradient from the cross term");
    }

    /// <summary>The batched regulariser (factors of one shape stacked) over adapters of two shapes equals the mean of
    /// each adapter's own terms.</summary>
    [TestMethod]
    [DataRow(SvdVariant.AdaLora)]
    [DataRow(SvdVariant.LoraSquared)]
    public void RegularizerOverManyAdaptersIsTheMeanOfEachOnesTerms(SvdVariant variant)
    {
        manual_seed(13);
        int? k = variant == SvdVariant.LoraSquared ? 3 : null;
        SvdUpdate[] updates = [new(16, 12, 4, k, 4, 0), new(16, 12, 4, k, 4, 0), new(10, 20, 4, k, 4, 0)];
        var (orthogonality, cross) = RankAllocator.Regularizer(updates);
        var each = updates.Select(u => RankAllocator.Regularizer([u])).ToList();
        double expected = each.Average(e => e.Orthogonality.item<float>());
        Assert.AreEqual(expected, orthogonality.item<float>(), 1e-6 * expected);
        if (k is null) Assert.IsNull(cross);
        else Assert.AreEqual(each.Average(e => e.Cross!.item<float>()), cross!.item<float>(), 1e-6 * cross.item<float>());
    }

    /// <summary>The allocator's flat score buffer gives AdaLoRA's scores: per parameter, I = |p ⊙ ∂L/∂p|,
    /// Ī ← β1·Ī + (1−β1)·I, Ū ← β2·Ū + (1−β2)·|I − Ī|, and a singular value's score is s(λⱼ) plus the mean of Ī·Ū
    /// over the j-th row or column of each scored factor.</summary>
    [TestMethod]
    [DataRow(SvdVariant.AdaLora)]
    [DataRow(SvdVariant.LoraSquared)]
    public void ImportanceScoresFollowAdaLorasFormula(SvdVariant variant)
    {
        var config = new SvdConfig
        {
            Variant = variant, InitialRank = 4, TargetRank = 2, Dropout = 0, InitialWarmupSteps = 5, FinalSteps = 4, MaskInterval = 1,
            Beta1 = 0.8, Beta2 = 0.9,
        };
        var (model, allocator, updates) = WithRandomValues(config, totalSteps: 20, seed: 3);
        using var _ = model;
        var ema = new Dictionary<Parameter, (Tensor S, Tensor U)>();
        TrainSteps(model, allocator, 1, 3, afterBackward: () =>
        {
            using var __ = no_grad();
            foreach (var p in updates.SelectMany(u => u.ScoredFactors().Select(f => f.Factor).Append(u.Values)))
            {
                var importance = p.mul(p.grad!).abs();
                var (s, un) = ema.TryGetValue(p, out var e) ? e : (zeros_like(p), zeros_like(p));
                s = s.mul(config.Beta1).add(importance.mul(1 - config.Beta1));
                ema[p] = (s, un.mul(config.Beta2).add(importance.sub(s).abs().mul(1 - config.Beta2)));
            }
        });
        foreach (var u in updates)
        {
            Tensor Score(Parameter p) => ema[p].S.mul(ema[p].U);
            var expected = u.ScoredFactors().Aggregate(Score(u.Values).view(-1), (sum, f) => sum.add(Score(f.Factor).mean([1 - f.RankDim])));
            var actual = allocator.TripletScores(u);
            Assert.IsGreaterThan(0f, expected.abs().min().item<float>());
            Assert.IsTrue(actual.allclose(expected, rtol: 1e-5, atol: 0), "triplet scores (they are tiny: products of averaged |p·∂L/∂p|)");
        }
    }

    [TestMethod]
    public void AdaLoraHasNoCrossTerm()
    {
        using var update = new SvdUpdate(8, 8, rank: 4, innerRank: null, alpha: 4, dropoutProbability: 0);
        Assert.IsNull(RankAllocator.Regularizer([update]).Cross);
    }

    [TestMethod]
    public void BudgetFollowsTheCubicSchedule()
    {
        var s = new BudgetSchedule(InitialBudget: 96, TargetBudget: 24, TotalSteps: 1000, InitialWarmup: 100, FinalSteps: 300, Interval: 10);
        Assert.AreEqual((96, false), s.At(1));
        Assert.AreEqual((96, false), s.At(100), "no pruning until t_init");
        // Half-way through the fall: 24 + 72·(1 − 300/600)³ = 33.
        Assert.AreEqual((33, true), s.At(400));
        Assert.AreEqual((24 + (int)(72 * Math.Pow(1 - 155.0 / 600, 3)), false), s.At(255), "prunes only every ΔT steps");
        Assert.AreEqual((24, true), s.At(701), "after T − t_final: the target, every step");
        Assert.AreEqual((24, true), s.At(1000));
    }

    /// <summary>The tiny model with <paramref name="config"/>'s adapters, its allocator, and its updates, with
    /// random λ so that every singular value matters.</summary>
    private static (PeftModel Model, RankAllocator Allocator, List<SvdUpdate> Updates) WithRandomValues(SvdConfig config, int totalSteps, int seed)
    {
        var model = AdapterTests.Tiny(config);
        var allocator = (RankAllocator)config.CreateHooks(model.Adapters, totalSteps);
        var updates = model.Adapters.Components.Select(c => (SvdUpdate)c.Component).ToList();
        manual_seed(seed);
        using (no_grad()) foreach (var u in updates) u.Values.copy_(randn_like(u.Values));
        return (model, allocator, updates);
    }

    /// <summary>Backward passes on one random batch, each followed by <paramref name="afterBackward"/> and the
    /// allocator's step hook (no optimizer: the gradients feed the scores). Returns the batch.</summary>
    private static Tensor TrainSteps(PeftModel model, RankAllocator allocator, int first, int last, Action? afterBackward = null)
    {
        var ids = randint(3, 259, [4, 10]);
        var labels = tensor(new long[] { 0, 1, 2, 1 });
        model.Train(true);
        for (int step = first; step <= last; step++)
        {
            nn.functional.cross_entropy(model.Forward(ids, null), labels).backward();
            afterBackward?.Invoke();
            allocator.AfterOptimizerStep(step);
            foreach (var p in model.AdapterParameters()) p.grad?.zero_();
        }
        return ids;
    }

    [TestMethod]
    [DataRow(SvdVariant.AdaLora)]
    [DataRow(SvdVariant.LoraSquared)]
    public void PruningKeepsExactlyTheBudgetChosenByScore(SvdVariant variant)
    {
        var config = new SvdConfig { Variant = variant, InitialRank = 4, TargetRank = 2, Dropout = 0, InitialWarmupSteps = 2, FinalSteps = 4, MaskInterval = 1 };
        var (model, allocator, updates) = WithRandomValues(config, totalSteps: 20, seed: 2);
        using var _ = model;

        var ids = TrainSteps(model, allocator, 1, 6);
        // 8 matrices × rank 4: budget 32 → 16. Step 6 pruned to the cubic budget ⌊16 + 16·(1 − 4/14)³⌋ = 21.
        int budget = allocator.Schedule.At(6).Budget;
        Assert.AreEqual(21, budget);
        Assert.AreEqual(budget, updates.Sum(u => u.KeptRank));

        var scores = updates.Select(allocator.TripletScores).ToList();
        var kept = updates.Zip(scores).SelectMany(x => x.Second.data<float>().ToArray().Where((_, j) => x.First.Mask[j, 0].item<float>() == 1)).ToList();
        var pruned = updates.Zip(scores).SelectMany(x => x.Second.data<float>().ToArray().Where((_, j) => x.First.Mask[j, 0].item<float>() == 0)).ToList();
        Assert.HasCount(32 - 21, pruned);
        Assert.IsGreaterThanOrEqualTo(pruned.Max(), kept.Min(), "every kept value scores at least as high as every pruned one");
        foreach (var u in updates)
            Assert.AreEqual(0f, u.Values.mul(u.Mask.neg().add(1)).abs().sum().item<float>(), "pruned λ are zero");
    }

    [TestMethod]
    public void MaskedValuesStayMaskedAndDoNotChangeTheOutput()
    {
        var config = new SvdConfig { Variant = SvdVariant.LoraSquared, InitialRank = 4, TargetRank = 1, Dropout = 0, InitialWarmupSteps = 0, FinalSteps = 2, MaskInterval = 1 };
        var (model, allocator, updates) = WithRandomValues(config, totalSteps: 6, seed: 4);
        using var _ = model;
        var ids = TrainSteps(model, allocator, 1, 4);
        Assert.AreEqual(8, updates.Sum(u => u.KeptRank), "final budget: 1 per matrix on average");
        var masks = updates.Select(u => u.Mask.clone()).ToList();

        model.Train(false);
        Tensor before;
        using (no_grad()) before = model.Forward(ids, null);
        // Something (an optimizer step, a bad update) writes into pruned λ: the output must not move...
        using (no_grad()) foreach (var u in updates) u.Values.add_(u.Mask.neg().add(1).mul(5));
        using (no_grad()) Assert.IsTrue(before.equal(model.Forward(ids, null)).all().item<bool>());
        // ...and the next step of the final phase zeroes them again, with the mask unchanged.
        allocator.AfterOptimizerStep(5);
        for (int i = 0; i < updates.Count; i++)
        {
            Assert.IsTrue(masks[i].equal(updates[i].Mask).all().item<bool>());
            Assert.AreEqual(0f, updates[i].Values.mul(updates[i].Mask.neg().add(1)).abs().sum().item<float>());
        }
    }

    [TestMethod]
    public void LoraSquaredScoresAboutOnePercentOfWhatAdaLoraScores()
    {
        // One roberta-base query matrix (768×768), r = 8, k = 8.
        long adalora = new SvdConfig { Variant = SvdVariant.AdaLora, InitialRank = 8 }.ScoredEntriesPerMatrix(768, 768);
        long lora2 = new SvdConfig { Variant = SvdVariant.LoraSquared, InitialRank = 8, InnerRank = 8 }.ScoredEntriesPerMatrix(768, 768);
        Assert.AreEqual(8L * (768 + 768 + 1), adalora);
        Assert.AreEqual(8L * (2 * 8 + 1), lora2);
        Assert.IsGreaterThan(0.985, 1 - (double)lora2 / adalora, "the paper claims about 98.5% fewer");
    }

    [TestMethod]
    public void ReportListsRanksAndTheBudgetReached()
    {
        using var model = AdapterTests.Tiny(new SvdConfig { Variant = SvdVariant.AdaLora, InitialRank = 4, TargetRank = 2, Dropout = 0 });
        var first = (SvdUpdate)model.Adapters.Components[0].Component;
        using (no_grad()) first.Mask.narrow(0, 0, 3).zero_();
        var report = model.Report();
        Assert.HasCount(8, report.Ranks);
        Assert.AreEqual((4, 1), (report.Ranks[0].InitialRank, report.Ranks[0].FinalRank));
        Assert.AreEqual(7 * 4 + 1, report.RankBudget);
        Assert.AreEqual(report.TrainableCount - 3 * (64 + 64 + 1), report.EffectiveTrainableCount);
        StringAssert.Contains(report.ToString(), "budget reached: 29 of 32");
    }
}
