using System.Diagnostics;
using MlNetPeft.Adapters;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetPeft.Training;

/// <summary>Result of a training run.</summary>
internal sealed record TrainingResult(int Epochs, int Steps, double FinalLoss, double? BestValidationMetric, int? BestEpoch);

/// <summary>
/// The one training loop for every adapter method: AdamW (adapters at LearningRate, head at
/// LearningRate·HeadLearningRateRatio), linear warm-up/decay, global-norm clipping, per-epoch validation
/// with early stopping and best-epoch restore. Every batch runs in its own dispose scope, and the loss is
/// read back from the device only every LogEveryNSteps steps.
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

    public TrainingResult Run(IReadOnlyList<Example> train, IReadOnlyList<Example>? validation, CancellationToken cancel = default)
    {
        if (train.Count == 0) throw new InvalidOperationException("The training data has no rows.");
        var s = _settings;
        var shuffle = new Random(s.Seed);
        int stepsPerEpoch = (train.Count + s.BatchSize - 1) / s.BatchSize, totalSteps = stepsPerEpoch * s.MaxEpochs;
        var trainable = _model.TrainableParameters().Select(p => p.Parameter).ToList();
        using var optimizer = optim.AdamW(new[]
        {
            new AdamW.ParamGroup(_model.BodyParameters(), lr: s.LearningRate, weight_decay: s.WeightDecay),
            new AdamW.ParamGroup(_model.HeadParameters(), lr: s.LearningRate * s.HeadLearningRateRatio, weight_decay: s.WeightDecay),
        }, lr: s.LearningRate);
        var scheduler = optim.lr_scheduler.LambdaLR(optimizer, LearningRateSchedule.LinearWithWarmup(totalSteps, s.WarmupRatio));
        var hooks = _model.Config.CreateHooks(_model.Adapters, totalSteps);

        using var runningLoss = zeros(1, device: _model.Device);
        int step = 0, stepsSinceReport = 0, rowsSinceReport = 0, badEpochs = 0, epoch = 0;
        double lastLoss = double.NaN;
        double? best = null;
        int? bestEpoch = null;
        Dictionary<string, Tensor>? bestState = null;
        var clock = Stopwatch.StartNew();

        try
        {
            for (epoch = 1; epoch <= s.MaxEpochs; epoch++)
            {
                _model.Train();
                foreach (var rows in Batcher.Order(train.Count, s.BatchSize, shuffle))
                {
                    cancel.ThrowIfCancellationRequested();
                    using (var scope = NewDisposeScope())
                    {
                        var batch = Batcher.Make(train, rows, _padId, _model.Device, _task);
                        var loss = Loss(_model.Forward(batch.Ids, batch.Mask), batch.Labels);
                        (hooks?.ExtraLoss() is { } extra ? loss.add(extra) : loss).backward();
                        if (s.GradientClipNorm > 0) ClipByGlobalNorm(trainable, s.GradientClipNorm);
                        optimizer.step();
                        hooks?.AfterOptimizerStep(step + 1);
                        optimizer.zero_grad();
                        scheduler.step();
                        using (no_grad()) runningLoss.add_(loss.detach());
                    }
                    step++;
                    stepsSinceReport++;
                    rowsSinceReport += rows.Length;
                    if (step % s.LogEveryNSteps == 0 || step == epoch * stepsPerEpoch)
                    {
                        lastLoss = ReadLoss(runningLoss, stepsSinceReport, epoch, step);
                        Report(new TrainingProgress
                        {
                            Epoch = epoch, Step = step, TotalSteps = totalSteps, Loss = lastLoss,
                            LearningRate = optimizer.ParamGroups.First().LearningRate,
                            RowsPerSecond = rowsSinceReport / Math.Max(clock.Elapsed.TotalSeconds, 1e-9),
                        });
                        stepsSinceReport = rowsSinceReport = 0;
                        clock.Restart();
                    }
                }

                if (validation is { Count: > 0 })
                {
                    double metric = Evaluate(validation);
                    Report(new TrainingProgress { Epoch = epoch, Step = step, TotalSteps = totalSteps, Loss = lastLoss,
                        LearningRate = optimizer.ParamGroups.First().LearningRate, ValidationMetric = metric });
                    if (best is null || metric > best)
                    {
                        best = metric;
                        bestEpoch = epoch;
                        badEpochs = 0;
                        DisposeAll(bestState);
                        bestState = _model.TrainableState();
                    }
                    else if (s.EarlyStoppingPatience > 0 && ++badEpochs >= s.EarlyStoppingPatience)
                    {
                        _log($"Early stopping after epoch {epoch}: no validation improvement for {badEpochs} epochs (best {best:F4} at epoch {bestEpoch}).");
                        break;
                    }
                }
            }
            if (bestState is not null && bestEpoch != Math.Min(epoch, s.MaxEpochs))
            {
                _log($"Restoring the weights of the best validation epoch {bestEpoch} ({best:F4}).");
                _model.LoadTrainableState(bestState, "best epoch");
            }
        }
        finally
        {
            DisposeAll(bestState);
        }
        _model.Train(false);
        return new TrainingResult(Math.Min(epoch, s.MaxEpochs), step, lastLoss, best, bestEpoch);
    }

    /// <summary>The settings' validation metric (accuracy or Pearson r by default) of the model's predictions.</summary>
    public double Evaluate(IReadOnlyList<Example> examples) =>
        Metrics.Compute(_settings.ValidationMetric, Predict(examples), examples.Select(e => (double)e.Label).ToArray(), _task);

    /// <summary>Predicted class index (classification) or value (regression) per example, in order.</summary>
    public double[] Predict(IReadOnlyList<Example> examples)
    {
        bool wasTraining = _model.Network.training;
        _model.Train(false);
        var result = new double[examples.Count];
        int at = 0;
        using (no_grad())
        {
            foreach (var rows in Batcher.Order(examples.Count, _settings.BatchSize, null))
            {
                using var scope = NewDisposeScope();
                var batch = Batcher.Make(examples, rows, _padId, _model.Device, _task);
                var output = _model.Forward(batch.Ids, batch.Mask);
                var values = (_task == TaskKind.Regression ? output.squeeze(-1) : output.argmax(-1))
                    .to(ScalarType.Float64).cpu().data<double>().ToArray();
                values.CopyTo(result, at);
                at += values.Length;
            }
        }
        _model.Train(wasTraining);
        return result;
    }

    private Tensor Loss(Tensor output, Tensor labels) => _task == TaskKind.Regression
        ? nn.functional.mse_loss(output.squeeze(-1), labels)
        : nn.functional.cross_entropy(output, labels);

    private double ReadLoss(Tensor running, int steps, int epoch, int step)
    {
        using var scope = NewDisposeScope(); // in-place ops return a new wrapper that must be freed too
        double mean = running.item<float>() / steps;
        running.zero_();
        if (!double.IsFinite(mean))
            throw new InvalidOperationException(
                $"Training diverged: the loss became {mean} by epoch {epoch}, step {step}. Lower LearningRate or GradientClipNorm, or check the labels.");
        return mean;
    }

    /// <summary>Scales gradients so their global L2 norm is at most <paramref name="maxNorm"/>, without a host sync.</summary>
    internal static void ClipByGlobalNorm(IReadOnlyList<Parameter> parameters, double maxNorm)
    {
        using var _ = no_grad();
        var grads = parameters.Select(p => p.grad).Where(g => g is not null).Select(g => g!).ToList();
        if (grads.Count == 0) return;
        var total = stack(grads.Select(g => g.norm()).ToArray()).norm();
        var factor = total.add(1e-6).reciprocal().mul(maxNorm).clamp_max(1.0);
        foreach (var g in grads) g.mul_(factor);
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
