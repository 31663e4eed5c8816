using MlNetPeft.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetPeft.Adapters.LoraSquared;

/// <summary>
/// Training hooks of the SVD-form adapters: adds the orthogonality regulariser to the loss and, after each
/// optimizer step, updates the importance scores and masks the lowest-scored singular values down to the
/// budget of the schedule (AdaLoRA's RankAllocator, with LoRA²'s cheaper score). Everything stays on the device, and
/// the per-adapter work is batched (stacked factors, one flat score buffer), so a step's kernel count does not grow
/// with the number of adapters: on a GPU the step is bound by that count.
/// </summary>
internal sealed class RankAllocator : ITrainingHooks
{
    private readonly SvdConfig _config;
    private readonly IReadOnlyList<(string Name, SvdUpdate Update)> _updates;
    private readonly Parameter[] _scored;
    private readonly Dictionary<Parameter, long> _offsets = new();
    private Tensor? _sensitivity, _uncertainty; // exponential averages, flat over _scored
    private FlatAdamW.FlatView? _scoredView;    // where the optimizer keeps _scored; null: read each parameter

    public RankAllocator(SvdConfig config, IReadOnlyList<(string Name, SvdUpdate Update)> updates, int totalSteps)
    {
        _config = config;
        _updates = updates;
        var (init, final) = config.Warmups(totalSteps);
        if (totalSteps <= init + final)
            throw new ArgumentException($"InitialWarmupSteps ({init}) + FinalSteps ({final}) must be fewer than the {totalSteps} training steps " +
                "(rows / BatchSize × MaxEpochs), or pruning never runs");
        _scored = updates.SelectMany(u => u.Update.ScoredFactors().Select(f => f.Factor).Append(u.Update.Values)).ToArray();
        long offset = 0;
        foreach (var p in _scored) { _offsets[p] = offset; offset += p.numel(); }
        Schedule = new BudgetSchedule(config.InitialRank * updates.Count, config.TargetRank * updates.Count, totalSteps, init, final, config.MaskInterval);
    }

    public BudgetSchedule Schedule { get; }

    public Tensor? ExtraLoss()
    {
        var (orthogonality, cross) = Regularizer(_updates.Select(u => u.Update).ToList());
        var loss = orthogonality.mul(_config.OrthogonalityWeight);
        return cross is null ? loss : loss.add(cross.mul(_config.CrossOrthogonalityWeight));
    }

    /// <summary>
    /// Mean over all factors of ‖M·Mᵀ − I‖_F (row factors) or ‖Mᵀ·M − I‖_F (column factors), and for LoRA² the mean
    /// over adapters of the cross term ‖U·V‖_F between the two planes (null for AdaLoRA). Factors of one shape are
    /// stacked and multiplied as one batch.
    /// </summary>
    internal static (Tensor Orthogonality, Tensor? Cross) Regularizer(IReadOnlyList<SvdUpdate> updates)
    {
        var terms = new List<Tensor>();
        var cross = new List<Tensor>();
        var factored = updates.Select(u => (Update: u, Factors: u.OrthonormalFactors()));
        foreach (var group in factored.GroupBy(x => string.Join("|", x.Factors.Rows.Concat(x.Factors.Columns).Select(Shape))))
        {
            // The i-th factor of one side (LoRA²'s rows: A, aa; columns: B, bb. AdaLoRA's: A; B) of every update, stacked.
            Tensor[] Stacked(Func<(IReadOnlyList<Tensor> Rows, IReadOnlyList<Tensor> Columns), IReadOnlyList<Tensor>> side) =>
                Enumerable.Range(0, side(group.First().Factors).Count).Select(i => stack(group.Select(x => side(x.Factors)[i]).ToArray())).ToArray();
            var rows = Stacked(f => f.Rows);
            var columns = Stacked(f => f.Columns);
            terms.AddRange(rows.Select(m => Distance(m.bmm(m.transpose(1, 2)))));
            terms.AddRange(columns.Select(m => Distance(m.transpose(1, 2).bmm(m))));
            if (group.First().Update.IsTwoPlane) cross.Add(SvdUpdate.CrossTerms(a: rows[0], aa: rows[1], b: columns[0], bb: columns[1]));
        }
        return (cat(terms.ToArray()).mean(), cross.Count == 0 ? null : cat(cross.ToArray()).mean());
    }

    /// <summary>‖G − I‖_F of each Gram matrix in a batch [n, d, d].</summary>
    private static Tensor Distance(Tensor gram) =>
        gram.sub(eye(gram.shape[1], device: gram.device)).flatten(1).norm(dim: 1);

    private static string Shape(Tensor t) => string.Join("x", t.shape);

    public void ReadGradientsFrom(FlatAdamW optimizer) => _scoredView = optimizer.View(_scored);

    public void AfterOptimizerStep(int step)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        int finalStart = Schedule.TotalSteps - Schedule.FinalSteps;
        if (step < finalStart)
        {
            UpdateScores();
            var (budget, prune) = Schedule.At(step);
            if (prune) MaskToBudget(budget);
        }
        else if (step == finalStart)
        {
            MaskToBudget(Schedule.TargetBudget); // the mask is fixed from here on
            _sensitivity?.Dispose();
            _uncertainty?.Dispose();
            _sensitivity = _uncertainty = null;
        }
        else
        {
            foreach (var (_, update) in _updates) update.Values.mul_(update.Mask);
        }
    }

    /// <summary>The importance averages (none before the first step and once the mask is fixed).</summary>
    public IEnumerable<(string Name, Tensor Tensor)> State() =>
        _sensitivity is null || _uncertainty is null ? [] : [("sensitivity", _sensitivity), ("uncertainty", _uncertainty)];

    public void LoadState(IReadOnlyDictionary<string, Tensor> state, string source)
    {
        _sensitivity?.Dispose();
        _uncertainty?.Dispose();
        _sensitivity = _uncertainty = null;
        if (!state.TryGetValue("sensitivity", out var sensitivity) || !state.TryGetValue("uncertainty", out var uncertainty)) return;
        long expected = _scored.Sum(p => p.numel());
        if (sensitivity.numel() != expected || uncertainty.numel() != expected)
            throw new InvalidDataException($"{source}: importance scores for {sensitivity.numel()} values, the adapters have {expected}");
        var device = _scored[0].device;
        _sensitivity = sensitivity.to(ScalarType.Float32, device, copy: true).DetachFromDisposeScope();
        _uncertainty = uncertainty.to(ScalarType.Float32, device, copy: true).DetachFromDisposeScope();
    }

    /// <summary>s = Ī·Ū of I = |p ⊙ ∂L/∂p|, with Ī and Ū exponential averages (β1, β2), as AdaLoRA; over all
    /// scored parameters at once (a parameter without a gradient counts as zero importance).</summary>
    private void UpdateScores()
    {
        var (weights, gradients) = _scoredView is { } view
            ? (view.Weights(), view.Gradients())
            : (cat(_scored.Select(p => p.detach().flatten()).ToArray()), cat(_scored.Select(p => (p.grad ?? zeros_like(p)).flatten()).ToArray()));
        var importance = weights.mul(gradients).abs_();
        _sensitivity ??= zeros_like(importance).DetachFromDisposeScope();
        _uncertainty ??= zeros_like(importance).DetachFromDisposeScope();
        _sensitivity.mul_(_config.Beta1).add_(importance, alpha: 1 - _config.Beta1);
        _uncertainty.mul_(_config.Beta2).add_(importance.sub_(_sensitivity).abs_(), alpha: 1 - _config.Beta2);
    }

    private Tensor Score(Parameter p)
    {
        if (_sensitivity is null || _uncertainty is null) return zeros_like(p);
        long at = _offsets[p], n = p.numel();
        return _sensitivity.narrow(0, at, n).mul(_uncertainty.narrow(0, at, n)).view(p.shape);
    }

    /// <summary>Score of each singular value j: s(λⱼ) + the mean of s over each scored factor's j-th row or column.</summary>
    internal Tensor TripletScores(SvdUpdate update)
    {
        var score = Score(update.Values).view(-1);
        foreach (var (factor, rankDim) in update.ScoredFactors())
            score = score.add(Score(factor).mean([1 - rankDim]));
        return score;
    }

    /// <summary>Keeps exactly the <paramref name="budget"/> best-scored singular values over all adapters; zeroes the rest.</summary>
    internal void MaskToBudget(int budget)
    {
        var scores = cat(_updates.Select(u => TripletScores(u.Update)).ToArray());
        var keep = zeros_like(scores);
        if (budget >= scores.shape[0]) keep.fill_(1);
        else if (budget > 0) keep.index_fill_(0, scores.topk(budget).indexes, 1);
        long at = 0;
        foreach (var (_, update) in _updates)
        {
            var mask = keep.narrow(0, at, update.Rank).view(update.Rank, 1);
            update.Mask.copy_(mask);
            update.Values.mul_(mask);
            at += update.Rank;
        }
    }
}
