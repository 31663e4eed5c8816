using static TorchSharp.torch;

namespace MlNetPeft.Training;

/// <summary>Method-specific extras the one training loop calls (e.g. a regulariser or rank pruning).</summary>
internal interface ITrainingHooks
{
    /// <summary>A term added to the task loss before backward, or null.</summary>
    Tensor? ExtraLoss();

    /// <summary>Called after backward and gradient clipping, before the optimizer step.</summary>
    void AfterBackward(int step);
}
