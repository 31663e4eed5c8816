using Microsoft.ML.Data;
using Microsoft.ML.Runtime;
using MlNetPeft.MlNet;

namespace Microsoft.ML;

/// <summary>
/// MlNetPeft trainers on ML.NET's catalogs, e.g. <c>mlContext.MulticlassClassification.Trainers.Msplora(...)</c>,
/// <c>mlContext.BinaryClassification.Trainers.Msplora(...)</c> and <c>mlContext.Regression.Trainers.Msplora(...)</c>. Each has a short form with the common arguments and a form
/// that takes the method's options object.
/// </summary>
public static class PeftCatalog
{
    /// <summary>MSPLoRA fine-tuning of a RoBERTa checkpoint for text classification.</summary>
    /// <param name="catalog">The multiclass classification trainers.</param>
    /// <param name="backboneDirectory">HF RoBERTa checkpoint directory (config.json, model.safetensors or pytorch_model.bin, vocab.json, merges.txt).</param>
    /// <param name="labelColumnName">Key-typed label column (use MapValueToKey).</param>
    /// <param name="sentence1ColumnName">Text column.</param>
    /// <param name="sentence2ColumnName">Second text column for sentence pairs, or null.</param>
    /// <param name="batchSize">Rows per step.</param>
    /// <param name="maxEpochs">Passes over the data.</param>
    /// <param name="learningRate">Peak adapter learning rate.</param>
    /// <param name="validationSet">Optional validation data, scored each epoch; the best epoch is kept.</param>
    /// <param name="exampleWeightColumnName">Optional Single column weighting each training row's loss.</param>
    public static MsploraTextClassificationTrainer Msplora(this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog,
        string backboneDirectory, string labelColumnName = "Label", string sentence1ColumnName = "Sentence1",
        string? sentence2ColumnName = null, int batchSize = 32, int maxEpochs = 10, double learningRate = 5e-4,
        IDataView? validationSet = null, string? exampleWeightColumnName = null) =>
        catalog.Msplora(Common(new MsploraOptions(), backboneDirectory, labelColumnName, sentence1ColumnName, sentence2ColumnName,
            batchSize, maxEpochs, learningRate, validationSet, exampleWeightColumnName));

    /// <summary>MSPLoRA fine-tuning for text classification, with every option.</summary>
    public static MsploraTextClassificationTrainer Msplora(this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog,
        MsploraOptions options) => new(Env(catalog), options);

    /// <summary>MSPLoRA fine-tuning of a RoBERTa checkpoint for regression on text (one Single label, MSE loss).</summary>
    /// <param name="catalog">The regression trainers.</param>
    /// <param name="backboneDirectory">HF RoBERTa checkpoint directory.</param>
    /// <param name="labelColumnName">Single-typed label column.</param>
    /// <param name="sentence1ColumnName">Text column.</param>
    /// <param name="sentence2ColumnName">Second text column for sentence pairs, or null.</param>
    /// <param name="batchSize">Rows per step.</param>
    /// <param name="maxEpochs">Passes over the data.</param>
    /// <param name="learningRate">Peak adapter learning rate.</param>
    /// <param name="validationSet">Optional validation data (scored by Pearson r each epoch).</param>
    /// <param name="exampleWeightColumnName">Optional Single column weighting each training row's loss.</param>
    public static MsploraRegressionTrainer Msplora(this RegressionCatalog.RegressionTrainers catalog,
        string backboneDirectory, string labelColumnName = "Label", string sentence1ColumnName = "Sentence1",
        string? sentence2ColumnName = null, int batchSize = 32, int maxEpochs = 10, double learningRate = 5e-4,
        IDataView? validationSet = null, string? exampleWeightColumnName = null) =>
        catalog.Msplora(Common(new MsploraOptions(), backboneDirectory, labelColumnName, sentence1ColumnName, sentence2ColumnName,
            batchSize, maxEpochs, learningRate, validationSet, exampleWeightColumnName));

    /// <summary>MSPLoRA fine-tuning for regression on text, with every option.</summary>
    public static MsploraRegressionTrainer Msplora(this RegressionCatalog.RegressionTrainers catalog, MsploraOptions options) =>
        new(Env(catalog), options);

    /// <summary>MSPLoRA fine-tuning of a RoBERTa checkpoint for binary text classification (a Boolean label; Score is
    /// the log-odds of true, with Probability and a Boolean PredictedLabel, for <c>BinaryClassification.Evaluate</c>).</summary>
    /// <param name="catalog">The binary classification trainers.</param>
    /// <param name="backboneDirectory">HF RoBERTa checkpoint directory.</param>
    /// <param name="labelColumnName">Boolean label column.</param>
    /// <param name="sentence1ColumnName">Text column.</param>
    /// <param name="sentence2ColumnName">Second text column for sentence pairs, or null.</param>
    /// <param name="batchSize">Rows per step.</param>
    /// <param name="maxEpochs">Passes over the data.</param>
    /// <param name="learningRate">Peak adapter learning rate.</param>
    /// <param name="validationSet">Optional validation data, scored each epoch; the best epoch is kept.</param>
    /// <param name="exampleWeightColumnName">Optional Single column weighting each training row's loss.</param>
    public static MsploraBinaryClassificationTrainer Msplora(this BinaryClassificationCatalog.BinaryClassificationTrainers catalog,
        string backboneDirectory, string labelColumnName = "Label", string sentence1ColumnName = "Sentence1",
        string? sentence2ColumnName = null, int batchSize = 32, int maxEpochs = 10, double learningRate = 5e-4,
        IDataView? validationSet = null, string? exampleWeightColumnName = null) =>
        catalog.Msplora(Common(new MsploraOptions(), backboneDirectory, labelColumnName, sentence1ColumnName, sentence2ColumnName,
            batchSize, maxEpochs, learningRate, validationSet, exampleWeightColumnName));

    /// <summary>MSPLoRA fine-tuning for binary text classification, with every option.</summary>
    public static MsploraBinaryClassificationTrainer Msplora(this BinaryClassificationCatalog.BinaryClassificationTrainers catalog,
        MsploraOptions options) => new(Env(catalog), options);

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
    /// <param name="exampleWeightColumnName">Optional Single column weighting each training row's loss.</param>
    public static LoraTextClassificationTrainer Lora(this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog,
        string backboneDirectory, string labelColumnName = "Label", string sentence1ColumnName = "Sentence1",
        string? sentence2ColumnName = null, int rank = 8, int batchSize = 32, int maxEpochs = 10, double learningRate = 5e-4,
        IDataView? validationSet = null, string? exampleWeightColumnName = null) =>
        catalog.Lora(Common(new LoraOptions { Rank = rank }, backboneDirectory, labelColumnName, sentence1ColumnName,
            sentence2ColumnName, batchSize, maxEpochs, learningRate, validationSet, exampleWeightColumnName));

    /// <summary>Plain LoRA fine-tuning for text classification, with every option.</summary>
    public static LoraTextClassificationTrainer Lora(this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog,
        LoraOptions options) => new(Env(catalog), options);

    /// <summary>Plain LoRA fine-tuning for regression on text (the baseline).</summary>
    /// <param name="catalog">The regression trainers.</param>
    /// <param name="backboneDirectory">HF RoBERTa checkpoint directory.</param>
    /// <param name="labelColumnName">Single-typed label column.</param>
    /// <param name="sentence1ColumnName">Text column.</param>
    /// <param name="sentence2ColumnName">Second text column for sentence pairs, or null.</param>
    /// <param name="rank">LoRA rank.</param>
    /// <param name="batchSize">Rows per step.</param>
    /// <param name="maxEpochs">Passes over the data.</param>
    /// <param name="learningRate">Peak adapter learning rate.</param>
    /// <param name="validationSet">Optional validation data.</param>
    /// <param name="exampleWeightColumnName">Optional Single column weighting each training row's loss.</param>
    public static LoraRegressionTrainer Lora(this RegressionCatalog.RegressionTrainers catalog,
        string backboneDirectory, string labelColumnName = "Label", string sentence1ColumnName = "Sentence1",
        string? sentence2ColumnName = null, int rank = 8, int batchSize = 32, int maxEpochs = 10, double learningRate = 5e-4,
        IDataView? validationSet = null, string? exampleWeightColumnName = null) =>
        catalog.Lora(Common(new LoraOptions { Rank = rank }, backboneDirectory, labelColumnName, sentence1ColumnName,
            sentence2ColumnName, batchSize, maxEpochs, learningRate, validationSet, exampleWeightColumnName));

    /// <summary>Plain LoRA fine-tuning for regression on text, with every option.</summary>
    public static LoraRegressionTrainer Lora(this RegressionCatalog.RegressionTrainers catalog, LoraOptions options) =>
        new(Env(catalog), options);

    /// <summary>Plain LoRA fine-tuning for binary text classification (a Boolean label).</summary>
    /// <param name="catalog">The binary classification trainers.</param>
    /// <param name="backboneDirectory">HF RoBERTa checkpoint directory.</param>
    /// <param name="labelColumnName">Boolean label column.</param>
    /// <param name="sentence1ColumnName">Text column.</param>
    /// <param name="sentence2ColumnName">Second text column for sentence pairs, or null.</param>
    /// <param name="rank">LoRA rank.</param>
    /// <param name="batchSize">Rows per step.</param>
    /// <param name="maxEpochs">Passes over the data.</param>
    /// <param name="learningRate">Peak adapter learning rate.</param>
    /// <param name="validationSet">Optional validation data.</param>
    /// <param name="exampleWeightColumnName">Optional Single column weighting each training row's loss.</param>
    public static LoraBinaryClassificationTrainer Lora(this BinaryClassificationCatalog.BinaryClassificationTrainers catalog,
        string backboneDirectory, string labelColumnName = "Label", string sentence1ColumnName = "Sentence1",
        string? sentence2ColumnName = null, int rank = 8, int batchSize = 32, int maxEpochs = 10, double learningRate = 5e-4,
        IDataView? validationSet = null, string? exampleWeightColumnName = null) =>
        catalog.Lora(Common(new LoraOptions { Rank = rank }, backboneDirectory, labelColumnName, sentence1ColumnName,
            sentence2ColumnName, batchSize, maxEpochs, learningRate, validationSet, exampleWeightColumnName));

    /// <summary>Plain LoRA fine-tuning for binary text classification, with every option.</summary>
    public static LoraBinaryClassificationTrainer Lora(this BinaryClassificationCatalog.BinaryClassificationTrainers catalog, LoraOptions options) =>
        new(Env(catalog), options);

    /// <summary>LoRA² fine-tuning (SVD-form adapters whose factors are LoRAs, pruned to a rank budget) for text classification.</summary>
    /// <param name="catalog">The multiclass classification trainers.</param>
    /// <param name="backboneDirectory">HF RoBERTa checkpoint directory.</param>
    /// <param name="labelColumnName">Key-typed label column.</param>
    /// <param name="sentence1ColumnName">Text column.</param>
    /// <param name="sentence2ColumnName">Second text column for sentence pairs, or null.</param>
    /// <param name="initialRank">Initial rank r of every adapted matrix.</param>
    /// <param name="targetRank">Average rank left after pruning.</param>
    /// <param name="batchSize">Rows per step.</param>
    /// <param name="maxEpochs">Passes over the data.</param>
    /// <param name="learningRate">Peak adapter learning rate.</param>
    /// <param name="validationSet">Optional validation data.</param>
    /// <param name="exampleWeightColumnName">Optional Single column weighting each training row's loss.</param>
    public static LoraSquaredTrainer LoraSquared(this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog,
        string backboneDirectory, string labelColumnName = "Label", string sentence1ColumnName = "Sentence1",
        string? sentence2ColumnName = null, int initialRank = 8, int targetRank = 2, int batchSize = 32, int maxEpochs = 10,
        double learningRate = 5e-4, IDataView? validationSet = null, string? exampleWeightColumnName = null) =>
        catalog.LoraSquared(Common(new LoraSquaredOptions { InitialRank = initialRank, TargetRank = targetRank }, backboneDirectory,
            labelColumnName, sentence1ColumnName, sentence2ColumnName, batchSize, maxEpochs, learningRate, validationSet, exampleWeightColumnName));

    /// <summary>LoRA² fine-tuning for text classification, with every option.</summary>
    public static LoraSquaredTrainer LoraSquared(this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog,
        LoraSquaredOptions options) => new(Env(catalog), options);

    /// <summary>LoRA² fine-tuning for regression on text (one Single label, MSE loss).</summary>
    /// <param name="catalog">The regression trainers.</param>
    /// <param name="backboneDirectory">HF RoBERTa checkpoint directory.</param>
    /// <param name="labelColumnName">Single-typed label column.</param>
    /// <param name="sentence1ColumnName">Text column.</param>
    /// <param name="sentence2ColumnName">Second text column for sentence pairs, or null.</param>
    /// <param name="initialRank">Initial rank r of every adapted matrix.</param>
    /// <param name="targetRank">Average rank left after pruning.</param>
    /// <param name="batchSize">Rows per step.</param>
    /// <param name="maxEpochs">Passes over the data.</param>
    /// <param name="learningRate">Peak adapter learning rate.</param>
    /// <param name="validationSet">Optional validation data.</param>
    /// <param name="exampleWeightColumnName">Optional Single column weighting each training row's loss.</param>
    public static LoraSquaredRegressionTrainer LoraSquared(this RegressionCatalog.RegressionTrainers catalog,
        string backboneDirectory, string labelColumnName = "Label", string sentence1ColumnName = "Sentence1",
        string? sentence2ColumnName = null, int initialRank = 8, int targetRank = 2, int batchSize = 32, int maxEpochs = 10,
        double learningRate = 5e-4, IDataView? validationSet = null, string? exampleWeightColumnName = null) =>
        catalog.LoraSquared(Common(new LoraSquaredOptions { InitialRank = initialRank, TargetRank = targetRank }, backboneDirectory,
            labelColumnName, sentence1ColumnName, sentence2ColumnName, batchSize, maxEpochs, learningRate, validationSet, exampleWeightColumnName));

    /// <summary>LoRA² fine-tuning for regression on text, with every option.</summary>
    public static LoraSquaredRegressionTrainer LoraSquared(this RegressionCatalog.RegressionTrainers catalog, LoraSquaredOptions options) =>
        new(Env(catalog), options);

    /// <summary>LoRA² fine-tuning for binary text classification (a Boolean label).</summary>
    /// <param name="catalog">The binary classification trainers.</param>
    /// <param name="backboneDirectory">HF RoBERTa checkpoint directory.</param>
    /// <param name="labelColumnName">Boolean label column.</param>
    /// <param name="sentence1ColumnName">Text column.</param>
    /// <param name="sentence2ColumnName">Second text column for sentence pairs, or null.</param>
    /// <param name="initialRank">Initial rank r of every adapted matrix.</param>
    /// <param name="targetRank">Average rank left after pruning.</param>
    /// <param name="batchSize">Rows per step.</param>
    /// <param name="maxEpochs">Passes over the data.</param>
    /// <param name="learningRate">Peak adapter learning rate.</param>
    /// <param name="validationSet">Optional validation data.</param>
    /// <param name="exampleWeightColumnName">Optional Single column weighting each training row's loss.</param>
    public static LoraSquaredBinaryTrainer LoraSquared(this BinaryClassificationCatalog.BinaryClassificationTrainers catalog,
        string backboneDirectory, string labelColumnName = "Label", string sentence1ColumnName = "Sentence1",
        string? sentence2ColumnName = null, int initialRank = 8, int targetRank = 2, int batchSize = 32, int maxEpochs = 10,
        double learningRate = 5e-4, IDataView? validationSet = null, string? exampleWeightColumnName = null) =>
        catalog.LoraSquared(Common(new LoraSquaredOptions { InitialRank = initialRank, TargetRank = targetRank }, backboneDirectory,
            labelColumnName, sentence1ColumnName, sentence2ColumnName, batchSize, maxEpochs, learningRate, validationSet, exampleWeightColumnName));

    /// <summary>LoRA² fine-tuning for binary text classification (a Boolean label), with every option.</summary>
    public static LoraSquaredBinaryTrainer LoraSquared(this BinaryClassificationCatalog.BinaryClassificationTrainers catalog, LoraSquaredOptions options) =>
        new(Env(catalog), options);

    /// <summary>AdaLoRA fine-tuning (SVD-form adapters pruned to a rank budget) for text classification: LoRA²'s baseline.</summary>
    /// <param name="catalog">The multiclass classification trainers.</param>
    /// <param name="backboneDirectory">HF RoBERTa checkpoint directory.</param>
    /// <param name="labelColumnName">Key-typed label column.</param>
    /// <param name="sentence1ColumnName">Text column.</param>
    /// <param name="sentence2ColumnName">Second text column for sentence pairs, or null.</param>
    /// <param name="initialRank">Initial rank r of every adapted matrix.</param>
    /// <param name="targetRank">Average rank left after pruning.</param>
    /// <param name="batchSize">Rows per step.</param>
    /// <param name="maxEpochs">Passes over the data.</param>
    /// <param name="learningRate">Peak adapter learning rate.</param>
    /// <param name="validationSet">Optional validation data.</param>
    /// <param name="exampleWeightColumnName">Optional Single column weighting each training row's loss.</param>
    public static AdaLoraTrainer AdaLora(this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog,
        string backboneDirectory, string labelColumnName = "Label", string sentence1ColumnName = "Sentence1",
        string? sentence2ColumnName = null, int initialRank = 12, int targetRank = 8, int batchSize = 32, int maxEpochs = 10,
        double learningRate = 5e-4, IDataView? validationSet = null, string? exampleWeightColumnName = null) =>
        catalog.AdaLora(Common(new AdaLoraOptions { InitialRank = initialRank, TargetRank = targetRank }, backboneDirectory,
            labelColumnName, sentence1ColumnName, sentence2ColumnName, batchSize, maxEpochs, learningRate, validationSet, exampleWeightColumnName));

    /// <summary>AdaLoRA fine-tuning for text classification, with every option.</summary>
    public static AdaLoraTrainer AdaLora(this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog,
        AdaLoraOptions options) => new(Env(catalog), options);

    /// <summary>AdaLoRA fine-tuning for regression on text (one Single label, MSE loss).</summary>
    /// <param name="catalog">The regression trainers.</param>
    /// <param name="backboneDirectory">HF RoBERTa checkpoint directory.</param>
    /// <param name="labelColumnName">Single-typed label column.</param>
    /// <param name="sentence1ColumnName">Text column.</param>
    /// <param name="sentence2ColumnName">Second text column for sentence pairs, or null.</param>
    /// <param name="initialRank">Initial rank r of every adapted matrix.</param>
    /// <param name="targetRank">Average rank left after pruning.</param>
    /// <param name="batchSize">Rows per step.</param>
    /// <param name="maxEpochs">Passes over the data.</param>
    /// <param name="learningRate">Peak adapter learning rate.</param>
    /// <param name="validationSet">Optional validation data.</param>
    /// <param name="exampleWeightColumnName">Optional Single column weighting each training row's loss.</param>
    public static AdaLoraRegressionTrainer AdaLora(this RegressionCatalog.RegressionTrainers catalog,
        string backboneDirectory, string labelColumnName = "Label", string sentence1ColumnName = "Sentence1",
        string? sentence2ColumnName = null, int initialRank = 12, int targetRank = 8, int batchSize = 32, int maxEpochs = 10,
        double learningRate = 5e-4, IDataView? validationSet = null, string? exampleWeightColumnName = null) =>
        catalog.AdaLora(Common(new AdaLoraOptions { InitialRank = initialRank, TargetRank = targetRank }, backboneDirectory,
            labelColumnName, sentence1ColumnName, sentence2ColumnName, batchSize, maxEpochs, learningRate, validationSet, exampleWeightColumnName));

    /// <summary>AdaLoRA fine-tuning for regression on text, with every option.</summary>
    public static AdaLoraRegressionTrainer AdaLora(this RegressionCatalog.RegressionTrainers catalog, AdaLoraOptions options) =>
        new(Env(catalog), options);

    /// <summary>AdaLoRA fine-tuning for binary text classification (a Boolean label).</summary>
    /// <param name="catalog">The binary classification trainers.</param>
    /// <param name="backboneDirectory">HF RoBERTa checkpoint directory.</param>
    /// <param name="labelColumnName">Boolean label column.</param>
    /// <param name="sentence1ColumnName">Text column.</param>
    /// <param name="sentence2ColumnName">Second text column for sentence pairs, or null.</param>
    /// <param name="initialRank">Initial rank r of every adapted matrix.</param>
    /// <param name="targetRank">Average rank left after pruning.</param>
    /// <param name="batchSize">Rows per step.</param>
    /// <param name="maxEpochs">Passes over the data.</param>
    /// <param name="learningRate">Peak adapter learning rate.</param>
    /// <param name="validationSet">Optional validation data.</param>
    /// <param name="exampleWeightColumnName">Optional Single column weighting each training row's loss.</param>
    public static AdaLoraBinaryTrainer AdaLora(this BinaryClassificationCatalog.BinaryClassificationTrainers catalog,
        string backboneDirectory, string labelColumnName = "Label", string sentence1ColumnName = "Sentence1",
        string? sentence2ColumnName = null, int initialRank = 12, int targetRank = 8, int batchSize = 32, int maxEpochs = 10,
        double learningRate = 5e-4, IDataView? validationSet = null, string? exampleWeightColumnName = null) =>
        catalog.AdaLora(Common(new AdaLoraOptions { InitialRank = initialRank, TargetRank = targetRank }, backboneDirectory,
            labelColumnName, sentence1ColumnName, sentence2ColumnName, batchSize, maxEpochs, learningRate, validationSet, exampleWeightColumnName));

    /// <summary>AdaLoRA fine-tuning for binary text classification (a Boolean label), with every option.</summary>
    public static AdaLoraBinaryTrainer AdaLora(this BinaryClassificationCatalog.BinaryClassificationTrainers catalog, AdaLoraOptions options) =>
        new(Env(catalog), options);

    /// <summary>Full fine-tuning (every backbone weight trains) for text classification: the baseline adapters are compared with.</summary>
    public static FullFineTuningTextClassificationTrainer FullFineTuning(this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog,
        FullFineTuningOptions options) => new(Env(catalog), options);

    /// <summary>Full fine-tuning for regression on text.</summary>
    public static FullFineTuningRegressionTrainer FullFineTuning(this RegressionCatalog.RegressionTrainers catalog, FullFineTuningOptions options) =>
        new(Env(catalog), options);

    /// <summary>Full fine-tuning for binary text classification (a Boolean label).</summary>
    public static FullFineTuningBinaryClassificationTrainer FullFineTuning(this BinaryClassificationCatalog.BinaryClassificationTrainers catalog,
        FullFineTuningOptions options) => new(Env(catalog), options);

    private static T Common<T>(T options, string backboneDirectory, string labelColumnName, string sentence1ColumnName,
        string? sentence2ColumnName, int batchSize, int maxEpochs, double learningRate, IDataView? validationSet,
        string? exampleWeightColumnName) where T : PeftTextTrainerOptions
    {
        options.BackboneDirectory = backboneDirectory;
        options.LabelColumnName = labelColumnName;
        options.Sentence1ColumnName = sentence1ColumnName;
        options.Sentence2ColumnName = sentence2ColumnName;
        options.BatchSize = batchSize;
        options.MaxEpochs = maxEpochs;
        options.LearningRate = learningRate;
        options.ValidationSet = validationSet;
        options.ExampleWeightColumnName = exampleWeightColumnName;
        return options;
    }

    private static IHostEnvironment Env(TrainCatalogBase.CatalogInstantiatorBase catalog) =>
        CatalogUtils.GetEnvironment(catalog ?? throw new ArgumentNullException(nameof(catalog)));
}
