using MlNetPeft.Adapters;
using MlNetPeft.Adapters.Full;

namespace MlNetPeft.MlNet;

/// <summary>Options of the full fine-tuning trainers (every backbone weight trains): the baseline for the adapters.</summary>
public sealed class FullFineTuningOptions : PeftTextTrainerOptions
{
    public FullFineTuningOptions()
    {
        LearningRate = 1e-4; // all 125M weights move: a rate 5x lower than the adapters'
        HeadLearningRateRatio = 1;
    }

    internal override AdapterConfig ToAdapterConfig() => new FullFineTuningConfig();
}
