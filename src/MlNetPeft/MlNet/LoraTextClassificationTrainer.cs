using Microsoft.ML;
using Microsoft.ML.Runtime;
using MlNetPeft.Adapters;
using MlNetPeft.Adapters.Lora;
using MlNetPeft.Training;

namespace MlNetPeft.MlNet;

/// <summary>
/// Fine-tunes a RoBERTa checkpoint for text classification with plain LoRA (the baseline).
/// Create it with <c>mlContext.MulticlassClassification.Trainers.Lora(...)</c>.
/// </summary>
public sealed class LoraTextClassificationTrainer : PeftTextTrainer<LoraTextClassificationTrainer.Options>
{
    /// <summary>LoRA options on top of the shared training options.</summary>
    public sealed class Options : PeftTextTrainerOptions
    {
        /// <summary>Rank of every LoRA pair.</summary>
        public int Rank = 8;

        internal override AdapterConfig ToAdapterConfig() => new LoraConfig
        {
            Rank = Rank, Targets = Targets, Alpha = LoraAlpha, Dropout = LoraDropout,
        };
    }

    internal LoraTextClassificationTrainer(IHostEnvironment env, Options options)
        : base(env, options, TaskKind.Classification, nameof(LoraTextClassificationTrainer)) { }
}
