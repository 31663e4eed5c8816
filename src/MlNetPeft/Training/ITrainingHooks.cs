using static TorchSharp.torch;

namespace MlNetPeft.Training;

/// <summary>Method-specific extras the one training loop calls (AdaLoRA/LoRA²: a regulariser and rank pruning).</summary>
internal interface ITrainingHooks
{
    /// <summary>A term added to the task loss before backward, or null.</summary>
    Tensor? ExtraLoss();

    /// <summary>Called after the optimizer step, while the gradients are still there; <paramref name="step"/> counts
    /// the steps done so far (1 after the first).</summary>
    void AfterOptimizerStep(int step);
}
