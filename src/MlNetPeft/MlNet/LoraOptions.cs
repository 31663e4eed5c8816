using MlNetPeft.Adapters;
using MlNetPeft.Adapters.Lora;

namespace MlNetPeft.MlNet;

/// <summary>Options of the plain LoRA trainers (classification and regression).</summary>
public sealed class LoraOptions : PeftTextTrainerOptions
{
    /// <summary>Rank of every LoRA pair.</summary>
    public int Rank = 8;

    internal override AdapterConfig ToAdapterConfig() => new LoraConfig
    {
        Rank = Rank, Targets = Targets, Alpha = LoraAlpha, Dropout = LoraDropout,
    };
}
