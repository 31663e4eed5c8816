namespace MlNetPeft.Adapters.LoraSquared;

/// <summary>
/// AdaLoRA's budget (total kept singular values) at step t: b(0) until t_init, then a cubic fall
/// b(t) = b_T + (b(0) − b_T)·(1 − (t − t_init)/(T − t_final − t_init))³ with pruning every ΔT steps, then b_T with
/// pruning at every step for the last t_final steps.
/// </summary>
internal sealed record BudgetSchedule(int InitialBudget, int TargetBudget, int TotalSteps, int InitialWarmup, int FinalSteps, int Interval)
{
    public (int Budget, bool Prune) At(int step)
    {
        if (step <= InitialWarmup) return (InitialBudget, false);
        if (step > TotalSteps - FinalSteps) return (TargetBudget, true);
        double left = 1 - (double)(step - InitialWarmup) / (TotalSteps - FinalSteps - InitialWarmup);
        return ((int)((InitialBudget - TargetBudget) * left * left * left + TargetBudget), step % Interval == 0);
    }
}
