using static TorchSharp.torch;

namespace MlNetPeft.Training;

/// <summary>Method-specific extras the one training loop calls (AdaLoRA/LoRA²: a regulariser and rank pruning).</summary>
internal interface ITrainingHooks
{
    /// <summary>A term added to the task loss before backward, or null.</summary>
    Tensor? ExtraLoss();

    /// <summary>Called once, before the first step, by a training step that optimizes with <paramref name="optimizer"/>:
    /// the hooks read the step's gradients (unscaled, clipped) from its flat buffers. Until then they read each
    /// parameter's grad.</summary>
    void ReadGradientsFrom(FlatAdamW optimizer);

    /// <summary>Called after the optimizer step, while the gradients are still there; <paramref name="step"/> counts
    /// the steps done so far (1 after the first).</summary>
    void AfterOptimizerStep(int step);

    /// <summary>Tensors the hooks carry from step to step (saved with a run's training state), by name.</summary>
    IEnumerable<(string Name, Tensor Tensor)> State();

    /// <summary>Goes on from a saved <see cref="State"/>; <paramref name="source"/> names it in errors.</summary>
    void LoadState(IReadOnlyDictionary<string, Tensor> state, string source);
}
