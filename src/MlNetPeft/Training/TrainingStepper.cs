using TorchSharp;
using static TorchSharp.torch;

namespace MlNetPeft.Training;

/// <summary>
/// One optimizer step of the training loop: forward, task loss (+ the method's extra loss) and backward of one batch
/// or of several whose gradients add up (the loss scaled when the backbone is fp16), global-norm clipping, AdamW (body
/// at LearningRate, head at LearningRate·HeadLearningRateRatio), the method's after-step hook, and the learning-rate
/// schedule. Shared by <see cref="TrainingLoop"/> and the speed benchmark.
/// </summary>
internal sealed class TrainingStepper : IDisposable
{
    private readonly Adapters.PeftModel _model;
    private readonly TrainingSettings _settings;
    private readonly TaskKind _task;
    private readonly FlatAdamW _optimizer;
    private readonly Func<int, double> _schedule;
    private readonly ITrainingHooks? _hooks;
    private readonly LossScaler? _scaler;

    public TrainingStepper(Adapters.PeftModel model, TrainingSettings settings, TaskKind task, int totalSteps)
    {
        _model = model;
        _settings = settings;
        _task = task;
        // Memory for compute: blocks recomputed in the backward (see Backbone/GradientCheckpoint).
        model.Network.Encoder.GradientCheckpointing = settings.GradientCheckpointing;
        _hooks = model.Config.CreateHooks(model.Adapters, totalSteps);
        // The hooks (AdaLoRA's and LoRA²'s importance scores) read the clipped gradients from the optimizer's flat buffer.
        _optimizer = new FlatAdamW(ParameterGroups(model, settings));
        _hooks?.ReadGradientsFrom(_optimizer);
        _schedule = LearningRateSchedule.LinearWithWarmup(totalSteps, settings.WarmupRatio);
        _optimizer.ScaleLearningRates(_schedule(0));
        // fp16 activations need the loss scaled for their gradients to stay in range; bf16 has fp32's range.
        _scaler = model.BackboneDType == ScalarType.Float16 ? new LossScaler(settings.InitialLossScale) : null;
    }

    /// <summary>The body (adapters, or the backbone) at LearningRate and the head at LearningRate·HeadLearningRateRatio;
    /// with LoRA+, the adapters' B factors apart at LearningRate·LoraPlusLearningRateRatio, and their 1-D vectors (DoRA's
    /// magnitudes) at that rate without weight decay, as PEFT's create_loraplus_optimizer groups them. Backbone biases
    /// that train beside adapters (their Bias) come last, at LearningRate, with their fp32 masters.</summary>
    private static List<FlatAdamW.ParameterGroup> ParameterGroups(Adapters.PeftModel model, TrainingSettings s)
    {
        if (s.LoraPlusLearningRateRatio != 1 && !model.Config.HasLoraPairs)
            throw new ArgumentException($"LoraPlusLearningRateRatio is for LoRA pairs (LoRA, DoRA, MSPLoRA), not {model.Config.MethodName}");
        var head = new FlatAdamW.ParameterGroup(model.HeadParameters().ToList(), s.LearningRate * s.HeadLearningRateRatio, s.WeightDecay);
        var backbone = new FlatAdamW.ParameterGroup(model.TrainedBackboneParameters().ToList(), s.LearningRate, s.WeightDecay, model.TrainedBackboneMasters());
        if (model.Config.TrainsBackbone) return [backbone, head];
        var groups = AdapterGroups(model, s, head);
        if (backbone.Parameters.Count > 0) groups.Add(backbone);
        return groups;
    }

    /// <summary>The adapters' groups, and the head second.</summary>
    private static List<FlatAdamW.ParameterGroup> AdapterGroups(Adapters.PeftModel model, TrainingSettings s, FlatAdamW.ParameterGroup head)
    {
        if (s.LoraPlusLearningRateRatio == 1) return [new(model.AdapterParameters().ToList(), s.LearningRate, s.WeightDecay), head];
        var adapters = model.Adapters.named_parameters().ToList();
        bool IsB(string name) => name.EndsWith(".lora_B", StringComparison.Ordinal);
        double fast = s.LearningRate * s.LoraPlusLearningRateRatio;
        return
        [
            new(adapters.Where(p => !IsB(p.name) && p.parameter.dim() > 1).Select(p => p.parameter).ToList(), s.LearningRate, s.WeightDecay),
            head,
            new(adapters.Where(p => IsB(p.name)).Select(p => p.parameter).ToList(), fast, s.WeightDecay),
            new(adapters.Where(p => !IsB(p.name) && p.parameter.dim() == 1).Select(p => p.parameter).ToList(), fast, 0),
        ];
    }

    /// <summary>Optimizer steps done.</summary>
    public int Steps { get; private set; }

    /// <summary>Steps skipped because their fp16 gradients overflowed (see <see cref="LossScaler"/>): the optimizer,
    /// the method's hooks and the learning-rate schedule did not advance, as under PyTorch's GradScaler.</summary>
    public int SkippedSteps { get; private set; }

    /// <summary>The fp16 loss scale; null when the backbone is not fp16.</summary>
    public LossScaler? LossScaler => _scaler;

    /// <summary>Current learning rate of the body (adapters).</summary>
    public double LearningRate => _optimizer.LearningRate;

    /// <summary>Trains on one batch; returns the task loss, detached (call inside a dispose scope; no host sync).</summary>
    public Tensor Run(Batch batch) => Run([batch]);

    /// <summary>One optimizer step on the gradients of all <paramref name="batches"/> (gradient accumulation). Each
    /// batch's loss is weighted by its share of the rows (of the row weights, when rows have weights), so the step is
    /// the one a single batch of all the rows would take; the method's extra loss is added once. Returns that mean task
    /// loss, detached (call inside a dispose scope; no host sync).</summary>
    public Tensor Run(IReadOnlyList<Batch> batches)
    {
        double stepWeight = batches.Sum(b => b.Weight);
        Tensor? total = null;
        for (int i = 0; i < batches.Count; i++)
        {
            // A scope per batch: its activations are freed before the next batch runs.
            using var scope = NewDisposeScope();
            var loss = TaskLoss(batches[i], batches.Count == 1 ? null : stepWeight);
            bool last = i == batches.Count - 1;
            var objective = last && _hooks?.ExtraLoss() is { } extra ? loss.add(extra) : loss;
            (_scaler is null ? objective : objective.mul(_scaler.Scale)).backward();
            Backbone.GradientCheckpoint.ThrowIfReplayFailed();
            if (!last) _optimizer.AccumulateGradients();
            if (total is null) total = loss.detach().MoveToOuterDisposeScope();
            else total.add_(loss.detach());
        }
        if (_scaler is null || _scaler.Update(_optimizer.Unscale(_scaler.Scale)))
        {
            if (_settings.GradientClipNorm > 0) _optimizer.ClipGradNorm(_settings.GradientClipNorm);
            _optimizer.Step();
            Steps++; // not inside the call below: `?.` skips evaluating its arguments when there are no hooks
            _hooks?.AfterOptimizerStep(Steps);
        }
        else SkipStep(_scaler);
        _optimizer.ZeroGrad();
        _optimizer.ScaleLearningRates(_schedule(Steps));
        return total!;
    }

    private void SkipStep(LossScaler scaler)
    {
        SkippedSteps++;
        if (scaler.Scale < LossScaler.SmallestScale)
            throw new InvalidOperationException(
                $"Training in Float16 skipped step after step because the gradients overflowed fp16, down to a loss scale of {scaler.Scale:G3} " +
                $"({SkippedSteps} steps skipped in all): the backbone's fp16 activations overflow (beyond ±65504), or training diverges. " +
                "Use Precision = BFloat16 (GPUs of compute capability 8.0 and newer) or Float32, or lower LearningRate.");
    }

    /// <summary>What a step carries forward besides the weights: AdamW's averages ("optimizer.*"), the method's hook
    /// state ("hooks.*"), the tensors themselves, not copies; and, as new CPU tensors, the fp16 loss scale
    /// ("scaler.*") and the steps skipped so far.</summary>
    public IEnumerable<(string Name, Tensor Tensor)> State() =>
        _optimizer.State().Select(s => ("optimizer." + s.Name, s.Tensor))
            .Concat((_hooks?.State() ?? []).Select(s => ("hooks." + s.Name, s.Tensor)))
            .Concat((_scaler?.State() ?? []).Select(s => ("scaler." + s.Name, s.Tensor)))
            .Concat(SkippedSteps > 0 ? [("skipped_steps", tensor((long)SkippedSteps))] : []);

    /// <summary>Goes on from a saved <see cref="State"/> after <paramref name="steps"/> steps of the loop: the averages,
    /// the hooks' state, the loss scale, the step count (less the skipped steps) and with it the learning rate.</summary>
    public void LoadState(IReadOnlyDictionary<string, Tensor> state, int steps, string source)
    {
        SkippedSteps = state.TryGetValue("skipped_steps", out var skipped) ? (int)skipped.to(ScalarType.Int64).item<long>() : 0;
        Steps = steps - SkippedSteps;
        _optimizer.LoadState(TrainingCheckpoint.WithPrefix(state, "optimizer."), Steps, source);
        _hooks?.LoadState(TrainingCheckpoint.WithPrefix(state, "hooks."), source);
        _scaler?.LoadState(TrainingCheckpoint.WithPrefix(state, "scaler."));
        _optimizer.ScaleLearningRates(_schedule(Steps));
    }

    /// <summary>The batch's mean loss, or its share of the step's (Σ its rows' weighted losses / the step's total weight)
    /// when <paramref name="stepWeight"/> is given or rows have weights (a step whose rows all weigh 0 has loss 0).</summary>
    private Tensor TaskLoss(Batch batch, double? stepWeight)
    {
        var output = _model.Forward(batch.Ids, batch.Mask);
        var reduction = batch.Weights is null ? nn.Reduction.Mean : nn.Reduction.None;
        var loss = _task == TaskKind.Regression
            ? nn.functional.mse_loss(output.squeeze(-1), batch.Labels, reduction)
            : nn.functional.cross_entropy(output, batch.Labels, reduction: reduction);
        double weight = stepWeight ?? batch.Weight;
        if (batch.Weights is null) return stepWeight is null ? loss : loss.mul(batch.Rows / weight);
        return loss.mul(batch.Weights.Values).sum().mul(weight > 0 ? 1 / weight : 0);
    }

    public void Dispose() => _optimizer.Dispose();
}
