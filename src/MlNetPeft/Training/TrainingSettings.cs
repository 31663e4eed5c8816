namespace MlNetPeft.Training;

/// <summary>Hyper-parameters of the training loop (filled from a trainer's Options).</summary>
internal sealed record TrainingSettings
{
    public int BatchSize { get; init; } = 32;
    public int GradientAccumulationSteps { get; init; } = 1;
    public bool GradientCheckpointing { get; init; }
    public int MaxEpochs { get; init; } = 10;
    public double LearningRate { get; init; } = 5e-4;
    public double HeadLearningRateRatio { get; init; } = 0.5;
    /// <summary>LoRA+ (Hayou et al. 2024): the B factors (and 1-D adapter vectors) train at LearningRate × this; 1 = off.</summary>
    public double LoraPlusLearningRateRatio { get; init; } = 1;
    public double WeightDecay { get; init; } = 0.1;
    public double WarmupRatio { get; init; } = 0.06;
    public double GradientClipNorm { get; init; } = 1.0;
    public int Seed { get; init; } = 42;
    /// <summary>The fp16 loss scale to start from (PyTorch GradScaler's init_scale); see <see cref="LossScaler"/>.</summary>
    public double InitialLossScale { get; init; } = LossScaler.InitialScale;
    public int EarlyStoppingPatience { get; init; }
    public int LogEveryNSteps { get; init; } = 10;
    public ValidationMetric ValidationMetric { get; init; }
    public bool GroupByLength { get; init; }
    public Action<TrainingProgress>? Progress { get; init; }
    /// <summary>Where the run's state is saved and resumed from (see <see cref="TrainingCheckpoint"/>), or null.</summary>
    public string? StateDirectory { get; init; }
    /// <summary>Also save the state every this many optimizer steps (0: at the end of each epoch only).</summary>
    public int SaveStateEveryNSteps { get; init; }
    /// <summary>What else makes the run what it is, by name (the backbone's SHA-256, the starting weights'): a saved
    /// state only resumes a run with the same values.</summary>
    public IReadOnlyDictionary<string, string>? Identity { get; init; }

    public void Validate()
    {
        if (BatchSize <= 0) throw new ArgumentException($"BatchSize must be positive, got {BatchSize}");
        if (GradientAccumulationSteps <= 0) throw new ArgumentException($"GradientAccumulationSteps must be positive (1 = no accumulation), got {GradientAccumulationSteps}");
        if (MaxEpochs <= 0) throw new ArgumentException($"MaxEpochs must be positive, got {MaxEpochs}");
        // The patterns are false for NaN, so a NaN setting is refused here rather than met as a NaN loss later.
        if (LearningRate is not (> 0 and < double.PositiveInfinity)) throw new ArgumentException($"LearningRate must be positive, got {LearningRate}");
        if (HeadLearningRateRatio is not (> 0 and < double.PositiveInfinity)) throw new ArgumentException($"HeadLearningRateRatio must be positive, got {HeadLearningRateRatio}");
        if (LoraPlusLearningRateRatio is not (> 0 and < double.PositiveInfinity))
            throw new ArgumentException($"LoraPlusLearningRateRatio must be positive (1 = plain LoRA), got {LoraPlusLearningRateRatio}");
        if (WeightDecay is not (>= 0 and < double.PositiveInfinity)) throw new ArgumentException($"WeightDecay must be finite and not negative, got {WeightDecay}");
        if (WarmupRatio is not (>= 0 and < 1)) throw new ArgumentException($"WarmupRatio must be in [0, 1), got {WarmupRatio}");
        if (GradientClipNorm is not (>= 0 and < double.PositiveInfinity))
            throw new ArgumentException($"GradientClipNorm must be finite and not negative (0 turns clipping off), got {GradientClipNorm}");
        if (EarlyStoppingPatience < 0) throw new ArgumentException($"EarlyStoppingPatience must not be negative, got {EarlyStoppingPatience}");
        if (SaveStateEveryNSteps < 0) throw new ArgumentException($"SaveStateEveryNSteps must not be negative (0 saves at the end of each epoch only), got {SaveStateEveryNSteps}");
        if (StateDirectory is not null && string.IsNullOrWhiteSpace(StateDirectory)) throw new ArgumentException("TrainingStateDirectory must name a directory (or be null: no saved state)");
        if (SaveStateEveryNSteps > 0 && StateDirectory is null) throw new ArgumentException("SaveStateEveryNSteps needs a TrainingStateDirectory to save to");
        if (InitialLossScale is not (> 0 and < double.PositiveInfinity)) throw new ArgumentException($"InitialLossScale must be positive, got {InitialLossScale}");
        if (LogEveryNSteps <= 0) throw new ArgumentException($"LogEveryNSteps must be positive, got {LogEveryNSteps}");
    }
}
