using MlNetPeft.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetPeft.Adapters.LoraSquared;

/// <summary>
/// Training hooks of the SVD-form adapters: adds the orthogonality regulariser to the loss and, after each
/// optimizer step, updates the importance scores and masks the lowest-scored singular values down to the
/// budget of the schedule (AdaLoRA's RankAllocator, with LoRA²'s cheaper score). Everything stays on the device.
/// </summary>
internal sealed class RankAllocator : ITrainingHooks
{
    private readonly SvdConfig _config;
    private readonly IReadOnlyList<(string Name, SvdUpdate Update)> _updates;
    private readonly Dictionary<Parameter, (Tensor Sensitivity, Tensor Uncertainty)> _ema = new();

    public RankAllocator(SvdConfig config, IReadOnlyList<(string Name, SvdUpdate Update)> updates, int totalSteps)
    {
        _config = config;
        _updates = updates;
        var (init, final) = config.Warmups(totalSteps);
        if (totalSteps <= init + final)
            throw new ArgumentException($"InitialWarmupSteps ({init}) + FinalSteps ({final}) must be fewer than the {totalSteps} training steps " +
                "(rows / BatchSize × MaxEpochs), or pruning never runs");
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
    /// over adapters of the cross term ‖U·V‖_F between the two planes (null for AdaLoRA).
    /// </summary>
    internal static (Tensor Orthogonality, Tensor? Cross) Regularizer(IReadOnlyList<SvdUpdate> updates)
    {
        var terms = new List<Tensor>();
        foreach (var update in updates)
        {
            var (rows, columns) = update.OrthonormalFactors();
            terms.AddRange(rows.Select(m => m.matmul(m.t()).sub(eye(m.shape[0], device: m.device)).norm()));
            terms.AddRange(columns.Select(m => m.t().matmul(m).sub(eye(m.shape[1], device: m.device)).norm()));
        }
        var cross = updates.Select(u => u.CrossTerm()).OfType<Tensor>().ToArray();
        return (stack(terms).mean(), cross.Length == 0 ? null : stack(cross).mean());
    }

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
            foreach (var (s, u) in _ema.Values) { s.Dispose(); u.Dispose(); }
            _ema.Clear();
        }
        else
        {
            foreach (var (_, update) in _updates) update.Values.mul_(update.Mask);
        }
    }

    /// <summary>s = Ī·Ū of I = |p ⊙ ∂L/∂p|, with Ī and Ū exponential averages (β1, β2), as AdaLoRA.</summary>
    private void UpdateScores()
    {
        foreach (var (_, update) in _updates)
            foreach (var p in update.ScoredFactors().Select(f => f.Factor).Append(update.Values))
            {
                if (p.grad is null) continue;
                if (!_ema.TryGetValue(p, out var ema))
                    _ema[p] = ema = (zeros_like(p).DetachFromDisposeScope(), zeros_like(p).DetachFromDisposeScope());
                var importance = p.mul(p.grad).abs();
                ema.Sensitivity.mul_(_config.Beta1).add_(importance, alpha: 1 - _config.Beta1);
                ema.Uncertainty.mul_(_config.Beta2).add_(importance.sub(ema.Sensitivity).abs(), alpha: 1 - _config.Beta2);
            }
    }

    private Tensor Score(Parameter p) =>
        _ema.TryGetValue(p, out var ema) ? ema.Sensitivity.mul(ema.Uncertainty) : zeros_like(p);

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
