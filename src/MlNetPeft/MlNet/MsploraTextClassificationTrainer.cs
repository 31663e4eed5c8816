using Microsoft.ML;
using Microsoft.ML.Runtime;
using MlNetPeft.Adapters;
using MlNetPeft.Adapters.Msplora;
using MlNetPeft.Training;

namespace MlNetPeft.MlNet;

/// <summary>
/// Fine-tunes a RoBERTa checkpoint for text classification with MSPLoRA adapters (global + mid-level +
/// layer-specific low-rank updates). Create it with <c>mlContext.MulticlassClassification.Trainers.Msplora(...)</c>.
/// </summary>
public sealed class MsploraTextClassificationTrainer : PeftTextTrainer<MsploraTextClassificationTrainer.Options>
{
    /// <summary>MSPLoRA options on top of the shared training options.</summary>
    public sealed class Options : PeftTextTrainerOptions
    {
        /// <summary>Ranks from the global level to the layer-specific level (the paper: 8, 4, 2).</summary>
        public int[] Ranks = [8, 4, 2];

        /// <summary>Number of contiguous layer groups sharing a mid-level pair (the paper: 3).</summary>
        public int GroupCount = 3;

        internal override AdapterConfig ToAdapterConfig() => new MsploraConfig
        {
            Ranks = Ranks, GroupCount = GroupCount, Targets = Targets, Alpha = LoraAlpha, Dropout = LoraDropout,
        };
    }

    internal MsploraTextClassificationTrainer(IHostEnvironment env, Options options)
        : base(env, options, TaskKind.Classification, nameof(MsploraTextClassificationTrainer)) { }
}
