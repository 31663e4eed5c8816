namespace MlNetPeft.Training;

/// <summary>A progress report, sent to the options' callback and to ML.NET's log as it trains.</summary>
public sealed record TrainingProgress
{
    /// <summary>1-based epoch.</summary>
    public int Epoch { get; init; }
    /// <summary>Optimizer steps done so far, over all epochs.</summary>
    public int Step { get; init; }
    /// <summary>Optimizer steps planned in all.</summary>
    public int TotalSteps { get; init; }
    /// <summary>Mean task loss (cross-entropy or MSE, without regularisers) since the previous report.</summary>
    public double Loss { get; init; }
    /// <summary>Adapter learning rate now.</summary>
    public double LearningRate { get; init; }
    /// <summary>Training rows per second since the previous report.</summary>
    public double RowsPerSecond { get; init; }
    /// <summary>Set (in a report of its own) at the end of an epoch when a validation set is given: the options' ValidationMetric.</summary>
    public double? ValidationMetric { get; init; }

    public override string ToString() => ValidationMetric is { } metric
        ? $"epoch {Epoch} validation {metric:F4}"
        : $"epoch {Epoch} step {Step}/{TotalSteps} loss {Loss:F4} lr {LearningRate:E2} {RowsPerSecond:F1} rows/s";
}
