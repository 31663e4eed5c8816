namespace MlNetPeft.Training;

/// <summary>
/// Linear warm-up then linear decay to zero, as the PyTorch reference (bench/reference.py) schedules it:
/// factor(s) = min((s+1)/warmup, (total−s)/(total−warmup)), warmup = ⌊ratio·total⌋. HF's
/// get_linear_schedule_with_warmup warms up as s/warmup instead (the Trainer's first step runs at rate 0), and the
/// Trainer rounds warmup up.
/// </summary>
internal static class LearningRateSchedule
{
    public static Func<int, double> LinearWithWarmup(int totalSteps, double warmupRatio)
    {
        int warmup = (int)(warmupRatio * totalSteps);
        return step => Math.Min((step + 1.0) / Math.Max(warmup, 1),
            Math.Max(0.0, (double)(totalSteps - step) / Math.Max(totalSteps - warmup, 1)));
    }
}
