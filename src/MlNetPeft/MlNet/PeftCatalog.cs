using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetPeft.MlNet;

namespace Microsoft.ML;

/// <summary>MlNetPeft trainers on ML.NET's catalogs: <c>mlContext.MulticlassClassification.Trainers.Msplora(...)</c>.</summary>
public static class PeftCatalog
{
    /// <summary>MSPLoRA fine-tuning of a RoBERTa checkpoint for text classification.</summary>
    /// <param name="catalog">The multiclass classification trainers.</param>
    /// <param name="backboneDirectory">HF RoBERTa checkpoint directory (config.json, model.safetensors, vocab.json, merges.txt).</param>
    /// <param name="labelColumnName">Key-typed label column (use MapValueToKey).</param>
    /// <param name="sentence1ColumnName">Text column.</param>
    /// <param name="sentence2ColumnName">Second text column for sentence pairs, or null.</param>
    /// <param name="batchSize">Rows per step.</param>
    /// <param name="maxEpochs">Passes over the data.</param>
    /// <param name="learningRate">Peak adapter learning rate.</param>
    /// <param name="validationSet">Optional validation data, scored each epoch; the best epoch is kept.</param>
    public static MsploraTextClassificationTrainer Msplora(this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog,
        string backboneDirectory, string labelColumnName = "Label", string sentence1ColumnName = "Sentence1",
        string? sentence2ColumnName = null, int batchSize = 32, int maxEpochs = 10, double learningRate = 5e-4,
        IDataView? validationSet = null) =>
        catalog.Msplora(new MsploraTextClassificationTrainer.Options
        {
            BackboneDirectory = backboneDirectory, LabelColumnName = labelColumnName, Sentence1ColumnName = sentence1ColumnName,
            Sentence2ColumnName = sentence2ColumnName, BatchSize = batchSize, MaxEpochs = maxEpochs, LearningRate = learningRate,
            ValidationSet = validationSet,
        });

    /// <summary>MSPLoRA fine-tuning with full options.</summary>
    public static MsploraTextClassificationTrainer Msplora(this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog,
        MsploraTextClassificationTrainer.Options options) => new(Env(catalog), options);

    /// <summary>Plain LoRA fine-tuning of a RoBERTa checkpoint for text classification (the baseline).</summary>
    /// <param name="catalog">The multiclass classification trainers.</param>
    /// <param name="backboneDirectory">HF RoBERTa checkpoint directory.</param>
    /// <param name="labelColumnName">Key-typed label column.</param>
    /// <param name="sentence1ColumnName">Text column.</param>
    /// <param name="sentence2ColumnName">Second text column for sentence pairs, or null.</param>
    /// <param name="rank">LoRA rank.</param>
    /// <param name="batchSize">Rows per step.</param>
    /// <param name="maxEpochs">Passes over the data.</param>
    /// <param name="learningRate">Peak adapter learning rate.</param>
    /// <param name="validationSet">Optional validation data.</param>
    public static LoraTextClassificationTrainer Lora(this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog,
        string backboneDirectory, string labelColumnName = "Label", string sentence1ColumnName = "Sentence1",
        string? sentence2ColumnName = null, int rank = 8, int batchSize = 32, int maxEpochs = 10, double learningRate = 5e-4,
        IDataView? validationSet = null) =>
        catalog.Lora(new LoraTextClassificationTrainer.Options
        {
            BackboneDirectory = backboneDirectory, LabelColumnName = labelColumnName, Sentence1ColumnName = sentence1ColumnName,
            Sentence2ColumnName = sentence2ColumnName, Rank = rank, BatchSize = batchSize, MaxEpochs = maxEpochs,
            LearningRate = learningRate, ValidationSet = validationSet,
        });

    /// <summary>Plain LoRA fine-tuning with full options.</summary>
    public static LoraTextClassificationTrainer Lora(this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog,
        LoraTextClassificationTrainer.Options options) => new(Env(catalog), options);

    private static Runtime.IHostEnvironment Env(TrainCatalogBase.CatalogInstantiatorBase catalog) =>
        CatalogUtils.GetEnvironment(catalog ?? throw new ArgumentNullException(nameof(catalog)));
}
