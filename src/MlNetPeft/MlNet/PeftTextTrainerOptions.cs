using Microsoft.ML;
using MlNetPeft.Adapters;
using MlNetPeft.Training;

namespace MlNetPeft.MlNet;

/// <summary>Options every MlNetPeft text trainer shares: columns, backbone, training loop, compute.</summary>
public abstract class PeftTextTrainerOptions
{
    /// <summary>Label column: a key type for multiclass classification (use MapValueToKey), Boolean for binary
    /// classification, Single for regression.</summary>
    public string LabelColumnName = "Label";

    /// <summary>First (or only) text column.</summary>
    public string Sentence1ColumnName = "Sentence1";

    /// <summary>Second text column for sentence-pair tasks (encoded as &lt;s&gt; A &lt;/s&gt;&lt;/s&gt; B &lt;/s&gt;), or null.</summary>
    public string? Sentence2ColumnName;

    /// <summary>Optional Single column weighting each training row's loss (ML.NET's example weight): a row of weight 2
    /// counts as that row twice, 0 as left out. Weights must be finite and not negative; validation is unweighted.</summary>
    public string? ExampleWeightColumnName;

    /// <summary>Classification: weight each training row by rows / (classes × rows of its class), so every class weighs
    /// the same in the loss (scikit-learn's class_weight="balanced"; PyTorch's CrossEntropyLoss(weight=...)). Multiplies
    /// the example weights when there are any.</summary>
    public bool BalanceClasses;

    /// <summary>Output column with the class probabilities, the regression value, or (binary) the log-odds of true.</summary>
    public string ScoreColumnName = "Score";

    /// <summary>Output column with the predicted label: a key (multiclass) or Boolean (binary); not for regression.</summary>
    public string PredictedLabelColumnName = "PredictedLabel";

    /// <summary>Output column with the probability of true (binary classification only).</summary>
    public string ProbabilityColumnName = "Probability";

    /// <summary>HuggingFace RoBERTa checkpoint directory: config.json, model.safetensors (or pytorch_model.bin), vocab.json, merges.txt.</summary>
    public string? BackboneDirectory;

    /// <summary>Longest input in tokens, special tokens included; longer inputs are truncated (longest side first). At most
    /// the backbone's positions (512 for RoBERTa): a larger value is cut to that, and the training log says so.</summary>
    public int MaxSequenceLength = 128;

    /// <summary>Rows per forward and backward pass (and per scoring batch).</summary>
    public int BatchSize = 32;

    /// <summary>Batches whose gradients are summed before each optimizer step (HF's gradient_accumulation_steps): the
    /// optimizer sees BatchSize × this many rows per step while memory holds the activations of one batch. Each batch's
    /// loss is weighted by its share of the step's rows, so 4 batches of 8 give the step one batch of 32 would.</summary>
    public int GradientAccumulationSteps = 1;

    /// <summary>Keep only each encoder block's input during the forward and run the block again in the backward (HF's
    /// gradient_checkpointing): activation memory falls to about one hidden state per block, for about a third more
    /// time per step. Same gradients, same dropout masks.</summary>
    public bool GradientCheckpointing;

    /// <summary>Passes over the training data (0: no training, for a model that starts trained: UseCheckpointHead, or
    /// InitialPeftAdapter of LoraOptions and AdaLoraOptions).</summary>
    public int MaxEpochs = 10;

    /// <summary>Peak AdamW learning rate of the adapters (the paper's roberta-base recipe uses 4e-4 to 5e-4).</summary>
    public double LearningRate = 5e-4;

    /// <summary>Head learning rate as a fraction of <see cref="LearningRate"/> (the MSPLoRA authors use 0.5).</summary>
    public double HeadLearningRateRatio = 0.5;

    /// <summary>LoRA+ (Hayou et al. 2024, PEFT's create_loraplus_optimizer loraplus_lr_ratio): the adapters' B factors
    /// train at LearningRate × this (the paper suggests 16 for roberta-base GLUE), their 1-D vectors (DoRA's magnitudes)
    /// at that rate without weight decay. 1 = off. For methods with LoRA pairs: LoRA, DoRA, MSPLoRA.</summary>
    public double LoraPlusLearningRateRatio = 1;

    /// <summary>AdamW decoupled weight decay.</summary>
    public double WeightDecay = 0.1;

    /// <summary>Fraction of all steps spent warming the learning rate up linearly; it then decays linearly to 0.</summary>
    public double WarmupRatio = 0.06;

    /// <summary>Clip the global gradient norm to this value (0 = no clipping).</summary>
    public double GradientClipNorm = 1.0;

    /// <summary>Seed for adapter and head initialisation, dropout and shuffling: same seed, same model.</summary>
    public int Seed = 42;

    /// <summary>Optional validation data (same columns); scored after each epoch, and the best epoch's weights are kept.</summary>
    public IDataView? ValidationSet;

    /// <summary>Score that picks the best validation epoch: accuracy (classification) or Pearson r (regression) by
    /// default; GLUE uses Matthews correlation for CoLA.</summary>
    public ValidationMetric ValidationMetric = ValidationMetric.Default;

    /// <summary>Stop after this many epochs without validation improvement (0 = never stop early).</summary>
    public int EarlyStoppingPatience;

    /// <summary>Batch rows of similar length together (sorted within random windows of 50 batches, batch order
    /// shuffled) so less time goes into padding. Off by default, as in HF: where length goes with the label, batches
    /// of one length are batches of one class, and small data sets then learn worse.</summary>
    public bool GroupByLength;

    /// <summary>Directory where the run saves its whole training state (weights, optimizer, random generator, position)
    /// at the end of every epoch, and from which a run with the same settings and data resumes: after a crash or a
    /// cancellation, Fit again goes on from the last save and ends with the model the uninterrupted run would have
    /// given. Each distinct run (settings, adapters, backbone, data) keeps its own file there, so the folds of a
    /// CrossValidate resume their own. Null: nothing saved.</summary>
    public string? TrainingStateDirectory;

    /// <summary>Also save the training state every this many optimizer steps (0: at the end of each epoch only).</summary>
    public int SaveStateEveryNSteps;

    /// <summary>CPU, CUDA, or CUDA when available.</summary>
    public ComputeDevice Device = ComputeDevice.Auto;

    /// <summary>Precision of the backbone: by default fp32 on the CPU, and on CUDA bf16, or fp16 on GPUs without bf16
    /// tensor cores (see <see cref="ComputePrecision.Auto"/>). Full fine-tuning in bf16 or fp16 updates fp32 master
    /// weights and computes with a low-precision copy of them; fp16 training scales the loss dynamically.</summary>
    public ComputePrecision Precision = ComputePrecision.Auto;

    /// <summary>Start from the backbone checkpoint's own classification head (<c>classifier.dense</c>,
    /// <c>classifier.out_proj</c>: a RobertaForSequenceClassification fine-tuned elsewhere) instead of a fresh one. Its
    /// class i must be the label's key i+1 (for a binary label, class 1 is true); where the checkpoint's config.json
    /// names its classes (id2label), the label's key values must be those names in that order. With MaxEpochs = 0
    /// nothing trains and the model scores as transformers does with that checkpoint.</summary>
    public bool UseCheckpointHead;

    /// <summary>Store the backbone weights inside the model zip (self-contained, but as large as the backbone).</summary>
    public bool EmbedBackbone;

    /// <summary>Fold the adapters into the frozen weights for prediction (same scores, faster).</summary>
    public bool MergeAdaptersForInference = true;

    /// <summary>Projections of every block that get adapters: any of <see cref="AdapterTargets.All"/> ("query", "key",
    /// "value", "attention.output.dense", "intermediate.dense", "output.dense").</summary>
    public string[] Targets = ["query", "value"];

    /// <summary>LoRA alpha: each adapter component is scaled by alpha / its rank.</summary>
    public double LoraAlpha = 16;

    /// <summary>Dropout on the adapter input while training.</summary>
    public double LoraDropout = 0.05;

    /// <summary>Report progress every this many steps (this is also how often the loss is read back from the GPU).</summary>
    public int LogEveryNSteps = 10;

    /// <summary>Called with each progress report (also written to ML.NET's log).</summary>
    public Action<TrainingProgress>? ProgressCallback;

    /// <summary>The adapter method these options describe.</summary>
    internal abstract AdapterConfig ToAdapterConfig();

    /// <summary>The HF PEFT adapter directory the method starts from (its InitialPeftAdapter option), or null.</summary>
    internal virtual string? InitialPeftAdapterDirectory => null;

    /// <summary>Whether the model starts from trained weights (then MaxEpochs may be 0).</summary>
    private bool StartsTrained => UseCheckpointHead || InitialPeftAdapterDirectory is not null;

    /// <summary>Sets the starting weights of a freshly built model and says what they are, or keeps the fresh
    /// initialisation and returns null.</summary>
    internal virtual string? Initialize(PeftModel model) => UseCheckpointHead ? "the checkpoint's classification head" : null;

    internal TrainingSettings ToTrainingSettings() => new()
    {
        BatchSize = BatchSize,
        GradientAccumulationSteps = GradientAccumulationSteps,
        GradientCheckpointing = GradientCheckpointing,
        MaxEpochs = MaxEpochs,
        LearningRate = LearningRate,
        HeadLearningRateRatio = HeadLearningRateRatio,
        LoraPlusLearningRateRatio = LoraPlusLearningRateRatio,
        WeightDecay = WeightDecay,
        WarmupRatio = WarmupRatio,
        GradientClipNorm = GradientClipNorm,
        Seed = Seed,
        EarlyStoppingPatience = EarlyStoppingPatience,
        LogEveryNSteps = LogEveryNSteps,
        ValidationMetric = ValidationMetric,
        GroupByLength = GroupByLength,
        Progress = ProgressCallback,
        StateDirectory = TrainingStateDirectory,
        SaveStateEveryNSteps = SaveStateEveryNSteps,
    };

    internal void Validate()
    {
        if (string.IsNullOrWhiteSpace(BackboneDirectory))
            throw new ArgumentException("BackboneDirectory is required: a RoBERTa checkpoint directory (config.json, model.safetensors or pytorch_model.bin, vocab.json, merges.txt).");
        if (string.IsNullOrWhiteSpace(Sentence1ColumnName)) throw new ArgumentException("Sentence1ColumnName is required.");
        if (string.IsNullOrWhiteSpace(LabelColumnName)) throw new ArgumentException("LabelColumnName is required.");
        if (!Enum.IsDefined(Device) || !Enum.IsDefined(Precision) || !Enum.IsDefined(ValidationMetric))
            throw new ArgumentException($"Device, Precision and ValidationMetric must be values of their enums, got {Device}, {Precision} and {ValidationMetric}");
        if (EarlyStoppingPatience > 0 && ValidationSet is null)
            throw new ArgumentException("EarlyStoppingPatience needs a ValidationSet to score each epoch");
        if (MaxSequenceLength < 8) throw new ArgumentException($"MaxSequenceLength must be at least 8, got {MaxSequenceLength}");
        if (MaxEpochs == 0 && !StartsTrained)
            throw new ArgumentException("MaxEpochs must be positive (0, no training, only for a model that starts trained: UseCheckpointHead or InitialPeftAdapter)");
        if (InitialPeftAdapterDirectory is not null && UseCheckpointHead)
            throw new ArgumentException("InitialPeftAdapter and UseCheckpointHead both give the head: set one of them");
        (MaxEpochs == 0 ? ToTrainingSettings() with { MaxEpochs = 1 } : ToTrainingSettings()).Validate();
    }
}
