using Microsoft.ML.Runtime;
using MlNetPeft.Training;

namespace MlNetPeft.MlNet;

// One small class per method and task: the options pick the adapter method, the class the task and its name.
// All the work is in PeftTextTrainer.

/// <summary>MSPLoRA text classification: <c>mlContext.MulticlassClassification.Trainers.Msplora(...)</c>.</summary>
public sealed class MsploraTextClassificationTrainer : PeftTextTrainer<MsploraOptions>
{
    internal MsploraTextClassificationTrainer(IHostEnvironment env, MsploraOptions options) : base(env, options, TaskKind.Classification) { }
}

/// <summary>MSPLoRA regression on text: <c>mlContext.Regression.Trainers.Msplora(...)</c>.</summary>
public sealed class MsploraRegressionTrainer : PeftTextTrainer<MsploraOptions>
{
    internal MsploraRegressionTrainer(IHostEnvironment env, MsploraOptions options) : base(env, options, TaskKind.Regression) { }
}

/// <summary>MSPLoRA binary classification of text (a Boolean label): <c>mlContext.BinaryClassification.Trainers.Msplora(...)</c>.</summary>
public sealed class MsploraBinaryClassificationTrainer : PeftTextTrainer<MsploraOptions>
{
    internal MsploraBinaryClassificationTrainer(IHostEnvironment env, MsploraOptions options) : base(env, options, TaskKind.Classification, binary: true) { }
}

/// <summary>Plain LoRA text classification (the baseline): <c>mlContext.MulticlassClassification.Trainers.Lora(...)</c>.</summary>
public sealed class LoraTextClassificationTrainer : PeftTextTrainer<LoraOptions>
{
    internal LoraTextClassificationTrainer(IHostEnvironment env, LoraOptions options) : base(env, options, TaskKind.Classification) { }
}

/// <summary>Plain LoRA regression on text: <c>mlContext.Regression.Trainers.Lora(...)</c>.</summary>
public sealed class LoraRegressionTrainer : PeftTextTrainer<LoraOptions>
{
    internal LoraRegressionTrainer(IHostEnvironment env, LoraOptions options) : base(env, options, TaskKind.Regression) { }
}

/// <summary>Plain LoRA binary classification of text: <c>mlContext.BinaryClassification.Trainers.Lora(...)</c>.</summary>
public sealed class LoraBinaryClassificationTrainer : PeftTextTrainer<LoraOptions>
{
    internal LoraBinaryClassificationTrainer(IHostEnvironment env, LoraOptions options) : base(env, options, TaskKind.Classification, binary: true) { }
}

/// <summary>LoRA² text classification: <c>mlContext.MulticlassClassification.Trainers.LoraSquared(...)</c>.</summary>
public sealed class LoraSquaredTrainer : PeftTextTrainer<LoraSquaredOptions>
{
    internal LoraSquaredTrainer(IHostEnvironment env, LoraSquaredOptions options) : base(env, options, TaskKind.Classification) { }
}

/// <summary>LoRA² regression on text: <c>mlContext.Regression.Trainers.LoraSquared(...)</c>.</summary>
public sealed class LoraSquaredRegressionTrainer : PeftTextTrainer<LoraSquaredOptions>
{
    internal LoraSquaredRegressionTrainer(IHostEnvironment env, LoraSquaredOptions options) : base(env, options, TaskKind.Regression) { }
}

/// <summary>LoRA² binary classification of text: <c>mlContext.BinaryClassification.Trainers.LoraSquared(...)</c>.</summary>
public sealed class LoraSquaredBinaryTrainer : PeftTextTrainer<LoraSquaredOptions>
{
    internal LoraSquaredBinaryTrainer(IHostEnvironment env, LoraSquaredOptions options) : base(env, options, TaskKind.Classification, binary: true) { }
}

/// <summary>AdaLoRA text classification: <c>mlContext.MulticlassClassification.Trainers.AdaLora(...)</c>.</summary>
public sealed class AdaLoraTrainer : PeftTextTrainer<AdaLoraOptions>
{
    internal AdaLoraTrainer(IHostEnvironment env, AdaLoraOptions options) : base(env, options, TaskKind.Classification) { }
}

/// <summary>AdaLoRA regression on text: <c>mlContext.Regression.Trainers.AdaLora(...)</c>.</summary>
public sealed class AdaLoraRegressionTrainer : PeftTextTrainer<AdaLoraOptions>
{
    internal AdaLoraRegressionTrainer(IHostEnvironment env, AdaLoraOptions options) : base(env, options, TaskKind.Regression) { }
}

/// <summary>AdaLoRA binary classification of text: <c>mlContext.BinaryClassification.Trainers.AdaLora(...)</c>.</summary>
public sealed class AdaLoraBinaryTrainer : PeftTextTrainer<AdaLoraOptions>
{
    internal AdaLoraBinaryTrainer(IHostEnvironment env, AdaLoraOptions options) : base(env, options, TaskKind.Classification, binary: true) { }
}

/// <summary>Full fine-tuning text classification (the upper baseline): <c>mlContext.MulticlassClassification.Trainers.FullFineTuning(...)</c>.</summary>
public sealed class FullFineTuningTextClassificationTrainer : PeftTextTrainer<FullFineTuningOptions>
{
    internal FullFineTuningTextClassificationTrainer(IHostEnvironment env, FullFineTuningOptions options) : base(env, options, TaskKind.Classification) { }
}

/// <summary>Full fine-tuning regression on text: <c>mlContext.Regression.Trainers.FullFineTuning(...)</c>.</summary>
public sealed class FullFineTuningRegressionTrainer : PeftTextTrainer<FullFineTuningOptions>
{
    internal FullFineTuningRegressionTrainer(IHostEnvironment env, FullFineTuningOptions options) : base(env, options, TaskKind.Regression) { }
}

/// <summary>Full fine-tuning for binary classification of text: <c>mlContext.BinaryClassification.Trainers.FullFineTuning(...)</c>.</summary>
public sealed class FullFineTuningBinaryClassificationTrainer : PeftTextTrainer<FullFineTuningOptions>
{
    internal FullFineTuningBinaryClassificationTrainer(IHostEnvironment env, FullFineTuningOptions options) : base(env, options, TaskKind.Classification, binary: true) { }
}
