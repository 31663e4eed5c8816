using TorchSharp;
using TorchSharp.Modules;
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
    private readonly AdamW _optimizer;
    private readonly optim.lr_scheduler.LRScheduler _scheduler;
    private readonly ITrainingHooks? _hooks;
    private readonly List<Parameter> _trainable;

    public TrainingStepper(Adapters.PeftModel model, TrainingSettings settings, TaskKind task, int totalSteps)
    {
        _model = model;
        _settings = settings;
        _task = task;
        _trainable = model.TrainableParameters().Select(p => p.Parameter).ToList();
        _optimizer = optim.AdamW(new[]
        {
            new AdamW.ParamGroup(model.BodyParameters(), lr: settings.LearningRate, weight_decay: settings.WeightDecay),
            new AdamW.ParamGroup(model.HeadParameters(), lr: settings.LearningRate * settings.HeadLearningRateRatio, weight_decay: settings.WeightDecay),
        }, lr: settings.LearningRate);
        _scheduler = optim.lr_scheduler.LambdaLR(_optimizer, LearningRateSchedule.LinearWithWarmup(totalSteps, settings.WarmupRatio));
        _hooks = model.Config.CreateHooks(model.Adapters, totalSteps);
    }

    /// <summary>Optimizer steps done.</summary>
    public int Steps { get; private set; }

    /// <summary>Current learning rate of the body (adapters).</summary>
    public double LearningRate => _optimizer.ParamGroups.First().LearningRate;

    /// <summary>Trains on one batch; returns the task loss, detached (call inside a dispose scope; no host sync).</summary>
    public Tensor Run(Batch batch)
    {
        var output = _model.Forward(batch.Ids, batch.Mask);
        var loss = _task == TaskKind.Regression
            ? nn.functional.mse_loss(output.squeeze(-1), batch.Labels)
            : nn.functional.cross_entropy(output, batch.Labels);
        (_hooks?.ExtraLoss() is { } extra ? loss.add(extra) : loss).backward();
        if (_settings.GradientClipNorm > 0) ClipByGlobalNorm(_trainable, _settings.GradientClipNorm);
        _optimizer.step();
        _hooks?.AfterOptimizerStep(++Steps);
        _optimizer.zero_grad();
        _scheduler.step();
        return loss.detach();
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

    public void Dispose() => _optimizer.Dispose();
}
