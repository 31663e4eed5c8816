using MlNetPeft.Adapters;
using MlNetPeft.Adapters.Msplora;

namespace MlNetPeft.MlNet;

/// <summary>Options of the MSPLoRA trainers (classification and regression).</summary>
public sealed class MsploraOptions : PeftTextTrainerOptions
{
    /// <summary>Ranks from the global level to the layer-specific level (the paper: 8, 4, 2).</summary>
    public int[] Ranks = [8, 4, 2];

    /// <summary>Number of contiguous layer groups sharing a mid-level pair (the paper: 3).</summary>
    public int GroupCount = 3;

    /// <inheritdoc cref="LoraOptions.Bias"/>
    /// <remarks>The paper trains none (the default).</remarks>
    public LoraBias Bias;

    internal override AdapterConfig ToAdapterConfig() => new MsploraConfig
    {
        Ranks = Ranks, GroupCount = GroupCount, Targets = Targets, Alpha = LoraAlpha, Dropout = LoraDropout, Bias = Bias,
    };
}
