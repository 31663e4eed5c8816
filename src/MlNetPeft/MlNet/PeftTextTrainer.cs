using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Runtime;
using MlNetPeft.Adapters;
using MlNetPeft.Backbone;
using MlNetPeft.Training;
using static TorchSharp.torch;

namespace MlNetPeft.MlNet;

/// <summary>
/// The estimator behind every MlNetPeft trainer: reads and tokenizes the text columns, builds the frozen
/// RoBERTa backbone with the options' adapters, runs the one training loop and returns a
/// <see cref="PeftTextTransformer"/>. Concrete trainers only supply their options (the adapter method) and task.
/// </summary>
public abstract class PeftTextTrainer<TOptions> : IEstimator<PeftTextTransformer> where TOptions : PeftTextTrainerOptions
{
    private readonly IHostEnvironment _env;
    private readonly IHost _host;
    private readonly TaskKind _task;
    private readonly bool _binary;

    private protected PeftTextTrainer(IHostEnvironment env, TOptions options, TaskKind task, bool binary = false)
    {
        _env = Contracts.CheckRef(env, nameof(env));
        _host = env.Register(GetType().Name);
        TrainerOptions = options ?? throw new ArgumentNullException(nameof(options));
        _task = task;
        _binary = binary;
    }

    /// <summary>Classification (a key label, class probabilities; or, <see cref="IsBinary"/>, a Boolean label) or
    /// regression (a Single label, one value).</summary>
    public TaskKind Task => _task;

    /// <summary>Binary classification: a Boolean label, and ML.NET's binary outputs (Score as the log-odds of true,
    /// Probability, a Boolean PredictedLabel), for <c>mlContext.BinaryClassification.Evaluate</c>.</summary>
    public bool IsBinary => _binary;

    /// <summary>The options this trainer was made with.</summary>
    public TOptions TrainerOptions { get; }

    /// <summary>Trains on <paramref name="input"/> and returns the fitted transformer.</summary>
    public PeftTextTransformer Fit(IDataView input) => Fit(input, initialModel: null);

    /// <summary>
    /// Trains further from <paramref name="initialModel"/> (ML.NET's re-training: a model trained before, by this
    /// trainer type's method with the same adapter settings on the same backbone), with this trainer's options, on
    /// <paramref name="input"/>: its adapters and head (or, fully fine-tuned, its backbone) are the starting weights.
    /// The label must have the model's classes in the model's order (transform new data with the MapValueToKey fitted
    /// for the model). AdamW's state and the schedule start afresh. The initial model is left as it was.
    /// </summary>
    public PeftTextTransformer Fit(IDataView input, PeftTextTransformer? initialModel)
    {
        ArgumentNullException.ThrowIfNull(input);
        var o = TrainerOptions;
        o.Validate();
        if (initialModel is not null && (o.UseCheckpointHead ? "UseCheckpointHead" : o.InitialPeftAdapterDirectory is { } adapter
                ? $"{o.GetType().Name}.InitialPeftAdapter ({adapter})" : null) is { } otherStart)
            throw new ArgumentException($"initialModel: {otherStart} is also set: start from one or the other", nameof(initialModel));
        if (o.BalanceClasses && _task == TaskKind.Regression)
            throw new ArgumentException("BalanceClasses is for classification; a regression label has no classes");
        using var ch = _host.Start("Training");
        void Log(string message) => ch.Info(MessageSensitivity.None, message);

        var backbone = new CheckpointDirectory(o.BackboneDirectory!);
        var config = backbone.LoadConfig();
        var tokenizer = backbone.LoadTokenizer();
        if (tokenizer.VocabSize > config.VocabSize)
            throw new InvalidDataException($"the tokenizer of {backbone.Path} has {tokenizer.VocabSize} tokens but {backbone.ConfigFile} says vocab_size {config.VocabSize}");
        int maxLength = Math.Min(o.MaxSequenceLength, config.MaxSequenceLength);
        if (maxLength < o.MaxSequenceLength)
            Log($"MaxSequenceLength {o.MaxSequenceLength} is more than the backbone's {maxLength} positions: inputs are cut at {maxLength} tokens");
        var adapterConfig = o.ToAdapterConfig();
        adapterConfig.Validate(config.NumHiddenLayers);

        var (train, validation, label, outputs) = ReadData(input, tokenizer, maxLength);
        if (o.UseCheckpointHead) CheckHeadClasses(backbone, label);
        Log($"{train.Count} training rows{(validation is null ? "" : $", {validation.Count} validation rows")}, " +
            $"{outputs} {(_task == TaskKind.Regression ? "output" : "classes")}, backbone {backbone.Path}");

        NativeTorch.EnsureLoaded();
        using var turn = TrainingTurns.Take(_host.CheckAlive, Log);
        manual_seed(o.Seed);
        cuda.manual_seed_all(o.Seed);
        var backboneSha256 = backbone.Fingerprint(); // streamed: the file is never held whole in memory
        PeftModel model;
        int? trainingSteps = null;
        using (var weights = backbone.OpenWeights())
            model = PeftModel.Create(config, outputs, adapterConfig, weights, backbone.WeightsFile, loadHead: o.UseCheckpointHead);
        EmbeddedBackbone? embedded = null;

        try
        {
            // Held open from before training: a backbone file replaced (renamed over) meanwhile is still the one embedded.
            if (o.EmbedBackbone) embedded = EmbeddedBackbone.Of(backbone.WeightsFile, backboneSha256);
            var start = initialModel is null ? o.Initialize(model) : StartFrom(initialModel, model, backboneSha256, label, outputs);
            if (start is not null) Log($"Starting from {start}.");
            var device = MlContextGpu.SelectDevice(_env, o.Device);
            var precision = ComputeSelection.SelectPrecision(o.Precision, device);
            if (ComputeSelection.SlowPrecisionWarning(device, precision) is { } slow)
                ch.Warning(MessageSensitivity.None, slow);
            model.To(device, precision);
            Log($"Device {ComputeSelection.Describe(device)}, backbone {precision}{(precision == ScalarType.Float16 ? " (loss scaled dynamically)" : "")}." +
                $"{Environment.NewLine}{model.Report()}");
            var identity = new Dictionary<string, string> { ["backbone"] = backboneSha256 };
            if (start is not null && o.TrainingStateDirectory is not null) identity["starting weights"] = StateFingerprint(model);
            if (o.MaxEpochs > 0) // MLContext.CancelExecution (AutoML) stops training at the next batch
                trainingSteps = new TrainingLoop(model, o.ToTrainingSettings() with { Identity = identity }, _task, tokenizer.PadId, Log)
                    .Run(train, validation, _host.CheckAlive).ScheduledSteps;
        }
        catch
        {
            model.Dispose();
            embedded?.Dispose();
            throw;
        }

        var info = new PeftModelInfo
        {
            Task = _task,
            Outputs = outputs,
            Sentence1Column = o.Sentence1ColumnName,
            Sentence2Column = o.Sentence2ColumnName,
            LabelColumn = o.LabelColumnName,
            ScoreColumn = o.ScoreColumnName,
            PredictedLabelColumn = o.PredictedLabelColumnName,
            Binary = _binary,
            ProbabilityColumn = o.ProbabilityColumnName,
            MaxSequenceLength = maxLength,
            Adapter = adapterConfig,
            Backbone = config,
            BackbonePath = backbone.Path,
            BackboneSha256 = backboneSha256,
            MergeAdapters = o.MergeAdaptersForInference,
            TrainingSteps = trainingSteps,
        };
        return new PeftTextTransformer(_host, info, model, tokenizer, KeyValues.Of(label), embedded);
    }

    /// <summary>The tokenized training rows (weighted as the options say) and validation rows, the label column and the
    /// number of outputs; bad columns and rows are errors that name them.</summary>
    private (List<Example> Train, List<Example>? Validation, DataViewSchema.Column Label, int Outputs) ReadData(
        IDataView input, RobertaTokenizer tokenizer, int maxLength)
    {
        var o = TrainerOptions;
        var columns = TextColumns.Bind(input.Schema, o.Sentence1ColumnName, o.Sentence2ColumnName, "training data");
        var label = TextColumns.Label(input.Schema, o.LabelColumnName, _task, _binary, "training data");
        int outputs = _task == TaskKind.Regression ? 1 : _binary ? 2 : (int)((KeyDataViewType)label.Type).Count;
        if (Metrics.Mismatch(o.ValidationMetric, _task, outputs) is { } mismatch) throw new ArgumentException(mismatch);
        var weight = o.ExampleWeightColumnName is { } weightName ? TextColumns.Weight(input.Schema, weightName, "training data") : (DataViewSchema.Column?)null;
        var train = columns.ReadExamples(input, label, _task, tokenizer, maxLength, "training data", weight);
        if (o.BalanceClasses) train = Examples.BalanceClasses(train);
        if (weight is not null && train.Count > 0 && train.All(e => e.Weight == 0))
            throw new InvalidDataException($"training data: every row's example weight ('{o.ExampleWeightColumnName}') is 0, so there is nothing to learn from");
        List<Example>? validation = null;
        if (o.ValidationSet is { } validationSet)
        {
            var validationColumns = TextColumns.Bind(validationSet.Schema, o.Sentence1ColumnName, o.Sentence2ColumnName, "validation set");
            var validationLabel = TextColumns.Label(validationSet.Schema, o.LabelColumnName, _task, _binary, "validation set");
            if (validationLabel.Type is KeyDataViewType validationKey && validationKey.Count != (ulong)outputs)
                throw new ArgumentOutOfRangeException(nameof(input), $"validation set: label column '{o.LabelColumnName}' has " +
                    $"{validationKey.Count} classes, the training data {outputs}; map both with the same fitted MapValueToKey");
            validation = validationColumns.ReadExamples(validationSet, validationLabel, _task, tokenizer, maxLength, "validation set");
        }
        return (train, validation, label, outputs);
    }

    /// <summary>Copies a trained model's weights into the fresh <paramref name="model"/> after checking that they fit:
    /// same task, adapters, backbone and classes. Returns what the run starts from.</summary>
    private string StartFrom(PeftTextTransformer initial, PeftModel model, string backboneSha256, DataViewSchema.Column label, int outputs)
    {
        var info = initial.Info;
        ArgumentException Refusal(string what) => new($"initialModel: {what}; it can only be trained further as it was made", nameof(initial));
        if (info.Task != _task) throw Refusal($"it is a {info.Task} model and this trainer trains {_task}");
        if (info.Binary != _binary)
            throw Refusal(info.Binary ? "it is a binary model (Boolean label) and this trainer is multiclass" : "it is a multiclass model and this trainer is binary (Boolean label)");
        if (info.Adapter.ToJson() != model.Config.ToJson())
            throw Refusal($"its adapters are {info.Adapter.ToJson()}, this trainer's {model.Config.ToJson()}");
        if (info.BackboneSha256 != backboneSha256)
            throw Refusal($"it was trained on a backbone of SHA-256 {info.BackboneSha256}, and {TrainerOptions.BackboneDirectory} holds {backboneSha256}");
        if (info.Outputs != outputs) throw Refusal($"it has {info.Outputs} {(_task == TaskKind.Regression ? "outputs" : "classes")}, this data {outputs}");
        if (_task == TaskKind.Classification && initial.LabelValues is { } before && KeyValues.Of(label) is { } now
            && !before.Names().SequenceEqual(now.Names()))
            throw Refusal($"its classes are [{string.Join(", ", before.Names())}] and this data's label '{label.Name}' has " +
                $"[{string.Join(", ", now.Names())}]: map the label with the MapValueToKey fitted for the model");
        var state = initial.TrainableState();
        try { model.LoadTrainableState(state, "initialModel"); }
        finally { foreach (var t in state.Values) t.Dispose(); }
        return $"the given model ({info.Adapter.MethodName}, {model.TrainableCount:N0} trained parameters)";
    }

    /// <summary>With <see cref="PeftTextTrainerOptions.UseCheckpointHead"/>: where the checkpoint names its classes, the
    /// label's key values must be those names in the head's order (a multiclass label; a binary one is false, true).</summary>
    private void CheckHeadClasses(CheckpointDirectory backbone, DataViewSchema.Column label)
    {
        if (_task != TaskKind.Classification || _binary || backbone.ReadClassNames() is not { } names || KeyValues.Of(label) is not { } keys) return;
        var ours = keys.Names();
        if (!ours.SequenceEqual(names))
            throw new ArgumentException($"UseCheckpointHead: {backbone.ConfigFile} names the head's classes [{string.Join(", ", names)}] (id2label), " +
                $"and the label '{label.Name}' has [{string.Join(", ", ours)}] in key order. Map the label so that key i+1 is class i, " +
                "e.g. MapValueToKey with keyData listing the classes in the head's order.");
    }

    /// <summary>SHA-256 of the model's trainable state: what a run starts from, when it is not a fresh initialisation.</summary>
    private static string StateFingerprint(PeftModel model)
    {
        var state = model.TrainableState();
        try
        {
            // Streamed into the hash: a fully fine-tuned backbone's state is too large to serialise in memory first.
            using var sha = System.Security.Cryptography.SHA256.Create();
            using (var hashing = new System.Security.Cryptography.CryptoStream(Stream.Null, sha, System.Security.Cryptography.CryptoStreamMode.Write))
                SafeTensors.Write(hashing, state);
            return Convert.ToHexStringLower(sha.Hash!);
        }
        finally { foreach (var t in state.Values) t.Dispose(); }
    }

    /// <summary>Checks the input columns and describes the Score (and Probability, PredictedLabel) columns the model adds.</summary>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema)
    {
        var o = TrainerOptions;
        o.Validate(); // a pipeline asks for this before Fit: bad options are named here, not met as a null column name
        foreach (var name in new[] { o.Sentence1ColumnName, o.Sentence2ColumnName }.OfType<string>())
        {
            if (!inputSchema.TryFindColumn(name, out var text))
                throw new ArgumentOutOfRangeException(nameof(inputSchema), $"text column '{name}' not found");
            if (text.Kind != SchemaShape.Column.VectorKind.Scalar || text.ItemType is not TextDataViewType)
                throw new ArgumentOutOfRangeException(nameof(inputSchema), $"column '{name}' must be text, but is {text.GetTypeString()}");
        }
        if (o.ExampleWeightColumnName is { } weightName)
        {
            if (!inputSchema.TryFindColumn(weightName, out var weight))
                throw new ArgumentOutOfRangeException(nameof(inputSchema), $"example weight column '{weightName}' not found");
            if (weight.Kind != SchemaShape.Column.VectorKind.Scalar || weight.ItemType != NumberDataViewType.Single)
                throw new ArgumentOutOfRangeException(nameof(inputSchema), $"example weight column '{weightName}' must be Single, but is {weight.GetTypeString()}");
        }
        if (!inputSchema.TryFindColumn(o.LabelColumnName, out var label))
            throw new ArgumentOutOfRangeException(nameof(inputSchema), $"label column '{o.LabelColumnName}' not found");

        var columns = inputSchema.ToDictionary(c => c.Name);
        if (_task == TaskKind.Regression)
        {
            if (label.Kind != SchemaShape.Column.VectorKind.Scalar || label.ItemType != NumberDataViewType.Single)
                throw new ArgumentOutOfRangeException(nameof(inputSchema), $"label column '{o.LabelColumnName}' must be Single, but is {label.GetTypeString()}");
            columns[o.ScoreColumnName] = new SchemaShape.Column(o.ScoreColumnName, SchemaShape.Column.VectorKind.Scalar,
                NumberDataViewType.Single, false, new SchemaShape(AnnotationUtils.GetTrainerOutputAnnotation()));
        }
        else if (_binary)
        {
            if (label.Kind != SchemaShape.Column.VectorKind.Scalar || label.ItemType is not BooleanDataViewType)
                throw new ArgumentOutOfRangeException(nameof(inputSchema), $"label column '{o.LabelColumnName}' must be Boolean, but is {label.GetTypeString()}");
            columns[o.ScoreColumnName] = new SchemaShape.Column(o.ScoreColumnName, SchemaShape.Column.VectorKind.Scalar,
                NumberDataViewType.Single, false, new SchemaShape(AnnotationUtils.GetTrainerOutputAnnotation()));
            columns[o.ProbabilityColumnName] = new SchemaShape.Column(o.ProbabilityColumnName, SchemaShape.Column.VectorKind.Scalar,
                NumberDataViewType.Single, false, new SchemaShape(AnnotationUtils.GetTrainerOutputAnnotation(isNormalized: true)));
            columns[o.PredictedLabelColumnName] = new SchemaShape.Column(o.PredictedLabelColumnName, SchemaShape.Column.VectorKind.Scalar,
                BooleanDataViewType.Instance, false, new SchemaShape(AnnotationUtils.GetTrainerOutputAnnotation()));
        }
        else
        {
            if (!label.IsKey)
                throw new ArgumentOutOfRangeException(nameof(inputSchema),
                    $"label column '{o.LabelColumnName}' must be a key type, but is {label.GetTypeString()}; add MapValueToKey(\"{o.LabelColumnName}\")");
            columns[o.ScoreColumnName] = new SchemaShape.Column(o.ScoreColumnName, SchemaShape.Column.VectorKind.Vector,
                NumberDataViewType.Single, false, new SchemaShape(AnnotationUtils.AnnotationsForMulticlassScoreColumn(label)));
            columns[o.PredictedLabelColumnName] = new SchemaShape.Column(o.PredictedLabelColumnName, SchemaShape.Column.VectorKind.Scalar,
                NumberDataViewType.UInt32, true, new SchemaShape(label.Annotations.Where(a => a.Name == AnnotationUtils.Kinds.KeyValues)
                    .Concat(AnnotationUtils.GetTrainerOutputAnnotation())));
        }
        return new SchemaShape(columns.Values);
    }
}
