using TorchSharp;
using static TorchSharp.torch;

namespace MlNetPeft.Training;

/// <summary>
/// One optimizer step of the training loop: forward, task loss (+ the method's extra loss), backward, global-norm
/// clipping, AdamW (body at LearningRate, head at LearningRate·HeadLearningRateRatio), the method's after-step hook,
/// and the learning-rate schedule. Shared by <see cref="TrainingLoop"/> and the speed benchmark.
/// </summary>
internal sealed class TrainingStepper : IDisposable
{
    private readonly Adapters.PeftModel _model;
    private readonly TrainingSettings _settings;
    private readonly TaskKind _task;
    private readonly FlatAdamW _optimizer;
    private readonly Func<int, double> _schedule;
    private readonly ITrainingHooks? _hooks;

    public TrainingStepper(Adapters.PeftModel model, TrainingSettings settings, TaskKind task, int totalSteps)
    {
        _model = model;
        _settings = settings;
        _task = task;
        _optimizer = new FlatAdamW(
        [
            new(model.BodyParameters().ToList(), settings.LearningRate, settings.WeightDecay, model.BodyMasters()),
            new(model.HeadParameters().ToList(), settings.LearningRate * settings.HeadLearningRateRatio, settings.WeightDecay),
        ]);
        _schedule = LearningRateSchedule.LinearWithWarmup(totalSteps, settings.WarmupRatio);
        _optimizer.ScaleLearningRates(_schedule(0));
        _hooks = model.Config.CreateHooks(model.Adapters, totalSteps);
    }

    /// <summary>Optimizer steps done.</summary>
    public int Steps { get; private set; }

    /// <summary>Current learning rate of the body (adapters).</summary>
    public double LearningRate => _optimizer.LearningRate;

    /// <summary>Trains on one batch; returns the task loss, detached (call inside a dispose scope; no host sync).</summary>
    public Tensor Run(Batch batch)
    {
        var output = _model.Forward(batch.Ids, batch.Mask);
        var loss = _task == TaskKind.Regression
            ? nn.functional.mse_loss(output.squeeze(-1), batch.Labels)
            : nn.functional.cross_entropy(output, batch.Labels);
        (_hooks?.ExtraLoss() is { } extra ? loss.add(extra) : loss).backward();
        if (_settings.GradientClipNorm > 0) _optimizer.ClipGradNorm(_settings.GradientClipNorm);
        _optimizer.Step();
        Steps++; // not inside the call below: `?.` skips evaluating its arguments when there are no hooks
        _hooks?.AfterOptimizerStep(Steps);
        _optimizer.ZeroGrad();
        _optimizer.ScaleLearningRates(_schedule(Steps));
        return loss.detach();
    }

    public void Dispose() => _optimizer.Dispose();
}
