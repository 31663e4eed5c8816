using System.Diagnostics;
using MlNetPeft.Adapters;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetPeft.Training;

/// <summary>Result of a training run: epochs and steps run, the steps its learning-rate (and AdaLoRA's budget)
/// schedule was made for (early stopping may end the run sooner), the last loss read, the best validation metric and
/// its epoch.</summary>
internal sealed record TrainingResult(int Epochs, int Steps, int ScheduledSteps, double FinalLoss, double? BestValidationMetric, int? BestEpoch);

/// <summary>
/// The one training loop for every adapter method: AdamW (adapters at LearningRate, head at
/// LearningRate·HeadLearningRateRatio) stepping once per GradientAccumulationSteps batches, linear warm-up/decay,
/// global-norm clipping, per-epoch validation with early stopping and best-epoch restore, and, with a state
/// directory, its state saved and resumed (<see cref="TrainingCheckpoint"/>). Every batch runs in its own dispose
/// scope, and the loss is read back from the device only every LogEveryNSteps steps.
/// </summary>
internal sealed class TrainingLoop
{
    private readonly PeftModel _model;
    private readonly TrainingSettings _settings;
    private readonly TaskKind _task;
    private readonly int _padId;
    private readonly Action<string> _log;

    public TrainingLoop(PeftModel model, TrainingSettings settings, TaskKind task, int padId, Action<string> log)
    {
        settings.Validate();
        _model = model;
        _settings = settings;
        _task = task;
        _padId = padId;
        _log = log;
    }

    /// <summary>Trains on <paramref name="train"/>, scoring <paramref name="validation"/> (when given) after each epoch.</summary>
    /// <param name="train">Training examples.</param>
    /// <param name="validation">Validation examples, or null.</param>
    /// <param name="checkAlive">Called before every batch; throws to stop training (ML.NET's <c>CheckAlive</c>, which
    /// <c>MLContext.CancelExecution</c> arms).</param>
    public TrainingResult Run(IReadOnlyList<Example> train, IReadOnlyList<Example>? validation, Action? checkAlive = null)
    {
        if (train.Count == 0) throw new InvalidOperationException("The training data has no rows.");
        var s = _settings;
        var shuffle = new Random(s.Seed);
        var lengths = s.GroupByLength ? train.Select(e => e.Ids.Length).ToArray() : null;
        int batchesPerEpoch = (train.Count + s.BatchSize - 1) / s.BatchSize;
        int stepsPerEpoch = (batchesPerEpoch + s.GradientAccumulationSteps - 1) / s.GradientAccumulationSteps;
        int totalSteps = stepsPerEpoch * s.MaxEpochs;
        using var stepper = new TrainingStepper(_model, s, _task, totalSteps);
        using var runningLoss = zeros(1, device: _model.Device);
        using var checkpoint = s.StateDirectory is null ? null
            : new TrainingCheckpoint(s.StateDirectory, s.SaveStateEveryNSteps, s.Seed, TrainingCheckpoint.Identify(s, _model.Config, train, validation));
        Dictionary<string, Tensor>? bestState = null;

        try
        {
            var at = checkpoint?.TryResume(_model, stepper, runningLoss, out bestState, _log) ?? new LoopPosition();
            if (at.Step > 0)
                _log(at.Stopped || at.Epoch > s.MaxEpochs
                    ? $"{checkpoint!.Path}: that run has finished ({at.Step} steps); its weights are the result."
                    : $"Resuming from {checkpoint!.Path}: epoch {at.Epoch}, step {at.Step} of {totalSteps}.");
            for (int done = 1; done < at.Epoch; done++) _ = Batcher.Order(train.Count, s.BatchSize, shuffle, lengths).Count(); // their shuffles
            var clock = Stopwatch.StartNew();
            while (!at.Stopped && at.Epoch <= s.MaxEpochs)
            {
                _model.Train();
                var epochSteps = Batcher.Order(train.Count, s.BatchSize, shuffle, lengths).Chunk(s.GradientAccumulationSteps);
                foreach (var stepRows in epochSteps.Skip(at.StepInEpoch))
                {
                    checkAlive?.Invoke();
                    using (var scope = NewDisposeScope())
                    {
                        var loss = stepper.Run(stepRows.Select(rows => Batcher.Make(train, rows, _padId, _model.Device, _task)).ToList());
                        using (no_grad()) runningLoss.add_(loss);
                    }
                    at.Step++;
                    at.StepInEpoch++;
                    at.StepsSinceReport++;
                    at.RowsSinceReport += stepRows.Sum(rows => rows.Length);
                    if (at.Step % s.LogEveryNSteps == 0 || at.StepInEpoch == stepsPerEpoch)
                    {
                        at.LastLoss = ReadLoss(runningLoss, at.StepsSinceReport, at.Epoch, at.Step);
                        Report(new TrainingProgress
                        {
                            Epoch = at.Epoch, Step = at.Step, TotalSteps = totalSteps, Loss = at.LastLoss,
                            LearningRate = stepper.LearningRate,
                            RowsPerSecond = at.RowsSinceReport / Math.Max(clock.Elapsed.TotalSeconds, 1e-9),
                        });
                        at.StepsSinceReport = at.RowsSinceReport = 0;
                        clock.Restart();
                    }
                    if (checkpoint?.IsDueAfter(at.Step) == true && at.StepInEpoch < stepsPerEpoch)
                        checkpoint.Save(at, _model, stepper, bestState, runningLoss);
                }

                if (validation is { Count: > 0 })
                {
                    double metric = Evaluate(validation);
                    Report(new TrainingProgress { Epoch = at.Epoch, Step = at.Step, TotalSteps = totalSteps, Loss = at.LastLoss,
                        LearningRate = stepper.LearningRate, ValidationMetric = metric });
                    if (at.Best is not { } best || (Metrics.HigherIsBetter(s.ValidationMetric) ? metric > best : metric < best))
                    {
                        at.Best = metric;
                        at.BestEpoch = at.Epoch;
                        at.BadEpochs = 0;
                        DisposeAll(bestState);
                        bestState = _model.TrainableState();
                    }
                    else if (s.EarlyStoppingPatience > 0 && ++at.BadEpochs >= s.EarlyStoppingPatience)
                    {
                        _log($"Early stopping after epoch {at.Epoch}: no validation improvement for {at.BadEpochs} epochs (best {at.Best:F4} at epoch {at.BestEpoch}).");
                        at.Stopped = true;
                    }
                }
                at.Epoch++;
                at.StepInEpoch = 0;
                checkpoint?.Save(at, _model, stepper, bestState, runningLoss);
            }
            if (stepper.LossScaler is { } scaler)
                _log($"fp16 loss scaling: {stepper.SkippedSteps} of {at.Step} steps skipped for overflowing gradients, final scale {scaler.Scale:G}.");
            int epochs = at.Epoch - 1;
            if (bestState is not null && at.BestEpoch != epochs)
            {
                _log($"Restoring the weights of the best validation epoch {at.BestEpoch} ({at.Best:F4}).");
                _model.LoadTrainableState(bestState, "best epoch");
            }
            _model.Train(false);
            return new TrainingResult(epochs, at.Step, totalSteps, at.LastLoss, at.Best, at.BestEpoch);
        }
        finally
        {
            DisposeAll(bestState);
        }
    }

    /// <summary>The settings' validation metric (accuracy or Pearson r by default, or the loss) of the model's outputs.</summary>
    public double Evaluate(IReadOnlyList<Example> examples)
    {
        var outputs = Outputs(examples);
        var gold = examples.Select(e => (double)e.Label).ToArray();
        if (_settings.ValidationMetric == ValidationMetric.Loss) return Metrics.Loss(outputs, gold, _task);
        var predicted = outputs.Select(o => _task == TaskKind.Regression ? o[0] : (double)Array.IndexOf(o, o.Max())).ToArray();
        return Metrics.Compute(_settings.ValidationMetric, predicted, gold, _task);
    }

    /// <summary>Class probabilities (classification) or the value (regression) per example, in order, in evaluation mode.</summary>
    private float[][] Outputs(IReadOnlyList<Example> examples)
    {
        bool wasTraining = _model.Network.training;
        _model.Train(false);
        try { return BatchScorer.Outputs(_model, examples, _settings.BatchSize, _padId, _task); }
        finally { _model.Train(wasTraining); }
    }

    private double ReadLoss(Tensor running, int steps, int epoch, int step)
    {
        using var scope = NewDisposeScope(); // in-place ops return a new wrapper that must be freed too
        double mean = running.item<float>() / steps;
        running.zero_();
        if (!double.IsFinite(mean))
            throw new InvalidOperationException(
                $"Training diverged: the loss became {mean} by epoch {epoch}, step {step}. Lower LearningRate or GradientClipNorm, or check the labels." +
                (_model.BackboneDType == ScalarType.Float16
                    ? " In Float16 the backbone's activations may also overflow fp16 (beyond ±65504): try Precision = BFloat16 or Float32."
                    : ""));
        return mean;
    }

    private void Report(TrainingProgress progress)
    {
        _log(progress.ToString());
        _settings.Progress?.Invoke(progress);
    }

    private static void DisposeAll(Dictionary<string, Tensor>? state)
    {
        if (state is null) return;
        foreach (var t in state.Values) t.Dispose();
    }
}
