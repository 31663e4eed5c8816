using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Data.IO;
using Microsoft.ML.Runtime;
using MlNetPeft.Adapters;
using MlNetPeft.Backbone;
using MlNetPeft.MlNet;
using MlNetPeft.Training;
using TorchSharp;
using static TorchSharp.torch;

[assembly: LoadableClass(typeof(PeftTextTransformer), null, typeof(SignatureLoadModel),
    PeftTextTransformer.UserName, PeftTextTransformer.LoaderSignature)]
[assembly: LoadableClass(typeof(IRowMapper), typeof(PeftTextTransformer), null, typeof(SignatureLoadRowMapper),
    PeftTextTransformer.UserName, PeftTextTransformer.LoaderSignature)]

namespace MlNetPeft.MlNet;

/// <summary>
/// A fine-tuned RoBERTa text model (any adapter method) as an ML.NET transformer: reads the sentence column(s)
/// and adds Score (class probabilities, the regression value, or a binary model's log-odds of true), a binary model's
/// Probability, and, for classification, PredictedLabel. Saved with
/// <c>mlContext.Model.Save</c>; the zip holds adapters, head, tokenizer files, the backbone config and the
/// SHA-256 of the backbone weights (or the weights themselves with EmbedBackbone).
/// </summary>
public sealed partial class PeftTextTransformer : RowToRowTransformerBase, ITransformer, IDisposable
{
    internal const string UserName = "MlNetPeft text transformer";
    internal const string LoaderSignature = "MLNETPEFTTEXT";
    private const string AdapterStream = "Adapters.safetensors";
    private const string AddedTokensStream = "AddedTokens.json";
    // The embedded backbone is its file's bytes (so its SHA-256 is the recorded one) under its format's name.
    private const string BackboneStream = "Backbone.safetensors", PickledBackboneStream = "Backbone.bin";
    private const string InfoChecksum = "model info"; // the header's JSON, checksummed beside the streams
    private const string LabelValuesChecksum = "label values"; // the rest of the model's own stream: the class names
    private const int ScoringBatchSize = 32;

    private readonly PeftModelInfo _info;
    private readonly PeftModel _model;
    private readonly RobertaTokenizer _tokenizer;
    private readonly KeyValues? _labelValues;
    private readonly EmbeddedBackbone? _embeddedBackbone;
    private readonly SharedBackbone? _sharedBackbone;
    private readonly object _lifetime = new();
    private int _uses; // scoring, saving or exporting under way (see Use)
    private bool _disposed;

    internal PeftTextTransformer(IHostEnvironment env, PeftModelInfo info, PeftModel model, RobertaTokenizer tokenizer,
        KeyValues? labelValues, EmbeddedBackbone? embeddedBackbone, SharedBackbone? sharedBackbone = null)
        : base(Contracts.CheckRef(env, nameof(env)).Register(nameof(PeftTextTransformer)))
    {
        _info = info;
        _model = model;
        _tokenizer = tokenizer;
        _labelValues = labelValues;
        _embeddedBackbone = embeddedBackbone;
        _sharedBackbone = sharedBackbone;
        _model.Train(false);
        _model.Freeze();
        if (info.MergeAdapters && !model.SharesBackbone) _model.Merge(); // merging would change the other models' weights
        else _model.Adapters.KeepStacks(_model.BackboneDType);
    }

    /// <summary>Trainable parameters per adapter component and head.</summary>
    public ParameterReport Parameters
    {
        get
        {
            using var _ = Use();
            return _model.Report();
        }
    }

    /// <summary>Adapter method and its settings.</summary>
    public AdapterConfig Adapter => _info.Adapter;

    /// <summary>SHA-256 of the backbone weights this model was trained on.</summary>
    public string BackboneSha256 => _info.BackboneSha256;

    /// <summary>
    /// Writes the adapters and head as a HF PEFT LoRA adapter (adapter_config.json and adapter_model.safetensors in
    /// <paramref name="directory"/>), for <c>PeftModel.from_pretrained</c> on the same backbone in Python. Every adapter
    /// method exports exactly as a LoRA (MSPLoRA's three levels as one rank-14 pair per projection, AdaLoRA's and LoRA²'s
    /// SVD form as one rank-r pair); full fine-tuning has no adapter and throws NotSupportedException.
    /// </summary>
    public void SavePeftAdapter(string directory) => SavePeftAdapter(directory, PeftAdapterFormat.Lora);

    /// <summary>
    /// Writes the adapters and head as a HF PEFT adapter of <paramref name="format"/>: a LoRA for every method (as
    /// <see cref="SavePeftAdapter(string)"/>), or, for an AdaLoRA model, a PEFT AdaLoRA adapter (its kept singular values,
    /// rank_pattern and the schedule it trained on); another method asked for AdaLoRA throws NotSupportedException.
    /// </summary>
    public void SavePeftAdapter(string directory, PeftAdapterFormat format)
    {
        using var _ = Use();
        switch (format)
        {
            case PeftAdapterFormat.Lora: Adapters.Lora.PeftLoraExport.Save(_model, directory, _info.BackbonePath); break;
            case PeftAdapterFormat.AdaLora: Adapters.LoraSquared.PeftAdaLoraExport.Save(_model, directory, _info.BackbonePath, _info.TrainingSteps); break;
            default: throw new ArgumentOutOfRangeException(nameof(format), format, "a PeftAdapterFormat: Lora or AdaLora");
        }
    }

    /// <summary>
    /// Writes the whole model as a HF checkpoint directory (config.json, model.safetensors, vocab.json, merges.txt, tokenizer.json) that
    /// <c>AutoModelForSequenceClassification.from_pretrained</c> loads without PEFT, and that MlNetPeft takes as a
    /// backbone: the adapters merged into the backbone's weights (PEFT's merge_and_unload), or the fully fine-tuned
    /// backbone, and the head; fp32, with the class names as id2label. A model running a bf16 backbone (CUDA) merged its
    /// adapters in bf16: load it on the CPU (LoadSettings.Device) for fp32-exact weights.
    /// </summary>
    public void SaveMergedCheckpoint(string directory)
    {
        using var _ = Use();
        if (SameDirectory(directory, _info.BackbonePath))
            throw new ArgumentException($"'{directory}' is the backbone directory this model was trained on: the merged " +
                "checkpoint would replace its weights, and the model zips that refer to them would no longer load. Choose " +
                "another directory.", nameof(directory));
        using var files = new StagedFiles(directory);
        files.Write("model.safetensors", file => MergedCheckpoint.Write(_model, file));
        var names = _info.Task == TaskKind.Regression ? ["LABEL_0"] : _info.Binary ? ["False", "True"]
            : _labelValues?.Names() ?? Enumerable.Range(0, _info.Outputs).Select(i => $"LABEL_{i}").ToList();
        var config = JsonNode.Parse(_info.Backbone.ToJson())!.AsObject();
        config["architectures"] = new JsonArray("RobertaForSequenceClassification");
        config["id2label"] = new JsonObject(names.Select((name, i) => KeyValuePair.Create($"{i}", (JsonNode?)name)));
        config["label2id"] = new JsonObject(names.Select((name, i) => KeyValuePair.Create(name, (JsonNode?)i)).DistinctBy(p => p.Key));
        config["problem_type"] = _info.Task == TaskKind.Regression ? "regression" : "single_label_classification";
        files.Write("config.json", System.Text.Encoding.UTF8.GetBytes(config.ToJsonString(new JsonSerializerOptions { WriteIndented = true })));
        files.Write("vocab.json", _tokenizer.VocabJson);
        files.Write("merges.txt", _tokenizer.MergesTxt);
        // transformers' AutoTokenizer reads this one first; it alone carries the added tokens and their flags.
        files.Write("tokenizer.json", _tokenizer.ToTokenizerJson());
        files.Commit();
    }

    private static bool SameDirectory(string a, string b) =>
        string.Equals(Path.TrimEndingDirectorySeparator(Path.GetFullPath(a)), Path.TrimEndingDirectorySeparator(Path.GetFullPath(b)),
            OperatingSystem.IsLinux() ? StringComparison.Ordinal : StringComparison.OrdinalIgnoreCase);

    internal PeftModelInfo Info => _info;
    internal KeyValues? LabelValues => _labelValues;

    /// <summary>A copy (CPU, fp32) of the trained weights, as the zip saves them.</summary>
    internal Dictionary<string, Tensor> TrainableState()
    {
        using var _ = Use();
        return _model.TrainableState();
    }
    internal PeftModel Model => _model;
    internal RobertaTokenizer Tokenizer => _tokenizer;

    private const uint VersionWithChecksums = 0x00010002, VersionWithLabelChecksum = 0x00010003;

    private static VersionInfo GetVersionInfo() => new(
        modelSignature: "PEFTTEXT",
        verWrittenCur: VersionWithLabelChecksum, // 0x00010002: no checksum of the label values; 0x00010001: no Checksums.json
        verReadableCur: 0x00010001, // the stream is new, not the format: older readers read it as before
        verWeCanReadBack: 0x00010001,
        loaderSignature: LoaderSignature,
        loaderAssemblyName: typeof(PeftTextTransformer).Assembly.FullName);

    // Binary format: string model-info JSON; bool has-label-values (+ type and values);
    // streams Adapters.safetensors, vocab.json, merges.txt, AddedTokens.json (absent in zips before it: RoBERTa's
    // special tokens), Backbone.safetensors (or .bin) when embedded, and Checksums.json (absent in zips before it).
    public override void SaveModel(ModelSaveContext ctx)
    {
        using var _ = Use();
        ctx.CheckAtModel();
        ctx.SetVersionInfo(GetVersionInfo());
        var info = _info.ToJson();
        ctx.SaveNonEmptyString(info);
        var checksums = new ZipChecksums();
        checksums.AddText(InfoChecksum, info);
        using (var labels = new MemoryStream()) // the bytes BinaryWriter.Write(bool) and the values' own writer give
        {
            labels.WriteByte(_labelValues is null ? (byte)0 : (byte)1);
            _labelValues?.Save(Host, labels);
            var bytes = labels.ToArray();
            ctx.Writer.Write(bytes);
            checksums.AddBytes(LabelValuesChecksum, bytes);
        }
        using (NewDisposeScope()) // in fp32, as trained: no copy of a full fine-tuning's 0.5 GB in memory
        {
            var state = _model.TrainableStateTensors();
            // Stored, not deflated: a full fine-tuning's are all of the backbone's weights.
            checksums.SaveStream(ctx, AdapterStream, s => SafeTensors.Write(s, state, dtype: ScalarType.Float32), stored: true);
        }
        checksums.SaveStream(ctx, "vocab.json", s => s.Write(_tokenizer.VocabJson));
        checksums.SaveStream(ctx, "merges.txt", s => s.Write(_tokenizer.MergesTxt));
        checksums.SaveStream(ctx, AddedTokensStream, s => s.Write(_tokenizer.AddedTokensJson()));
        // Checked on reading against the info's backbone SHA-256 (the info itself is checksummed); listed, so that a
        // zip that lost it is refused rather than sent looking for the backbone directory.
        if (_embeddedBackbone is { } embedded)
        {
            StoredZipEntry.Write(ctx, StreamOf(embedded), embedded.WriteTo);
            checksums.AddHash(StreamOf(embedded), embedded.Sha256);
        }
        checksums.Save(ctx);
    }

    // Factory for SignatureLoadModel.
    private static PeftTextTransformer Create(IHostEnvironment env, ModelLoadContext ctx)
    {
        Contracts.CheckValue(env, nameof(env));
        ctx.CheckAtModel(GetVersionInfo());
        NativeTorch.EnsureLoaded();
        var device = MlContextGpu.SelectDevice(env, LoadSettings.Device); // before anything is built: it may refuse
        // A zip written with checksums that has none lost them (its entry's name damaged, say): not read unchecked.
        var checksums = ZipChecksums.Read(StoredZipEntry.ReadAllOrNull(ctx, ZipChecksums.StreamName), required: ctx.Header.ModelVerWritten >= VersionWithChecksums);
        var infoJson = ctx.LoadNonEmptyString();
        checksums?.VerifyText(InfoChecksum, infoJson);
        var info = PeftModelInfo.FromJson(infoJson);
        if (checksums is not null && ctx.Header.ModelVerWritten >= VersionWithLabelChecksum) VerifyLabelValues(ctx, checksums);
        var labelValues = ctx.Reader.ReadBoolean() ? KeyValues.Load(env, ctx.Reader.BaseStream) : null;
        byte[]? Read(string name)
        {
            var bytes = StoredZipEntry.ReadAllOrNull(ctx, name);
            if (bytes is not null) checksums?.Verify(name, bytes);
            else checksums?.VerifyAbsent(name); // AddedTokens.json lost (a damaged entry name) read as none added
            return bytes;
        }
        var adapters = Read(AdapterStream) ?? throw new InvalidDataException($"model zip lacks {AdapterStream}");
        var tokenizer = new RobertaTokenizer(
            Read("vocab.json") ?? throw new InvalidDataException("model zip lacks vocab.json"),
            Read("merges.txt") ?? throw new InvalidDataException("model zip lacks merges.txt"), "model zip",
            Read(AddedTokensStream) is { } added ? RobertaTokenizer.ReadAddedTokens(added, "model zip " + AddedTokensStream) : null);
        var precision = ComputeSelection.SelectPrecision(LoadSettings.Precision, device);
        if (ComputeSelection.SlowPrecisionWarning(device, precision) is { } slow)
        {
            using var ch = env.Start("Load");
            ch.Warning(MessageSensitivity.None, slow);
        }
        // A full fine-tuning's backbone is its own.
        var shared = LoadSettings.ShareBackbone && !info.Adapter.TrainsBackbone ? SharedBackbone.Join(info.BackboneSha256, device, precision) : null;
        EmbeddedBackbone? embedded = null;
        try
        {
            using var loading = shared?.Loading();
            embedded = EmbeddedBackboneOf(ctx, info.BackboneSha256, shared);
            if (embedded is null)
                foreach (var name in new[] { BackboneStream, PickledBackboneStream }) checksums?.VerifyAbsent(name);
            var model = LoadModel(info, adapters, embedded, shared);
            model.To(device, precision, keepMasters: false); // predicts only
            if (shared is not null)
            {
                model.Freeze();
                model.ShareBackbone(shared);
            }
            return new PeftTextTransformer(env, info, model, tokenizer, labelValues, embedded, shared);
        }
        catch
        {
            embedded?.Dispose(); // its temporary file
            shared?.Leave();
            throw;
        }
    }

    /// <summary>Builds the model on the CPU: the backbone's weights (those <paramref name="shared"/> lacks) from the
    /// embedded file, the backbone directory or, fully fine-tuned, the zip's state; then the zip's trained weights, one
    /// tensor at a time into its parameter (a full fine-tuning's are all of the backbone's, and no copy of them all then
    /// sits beside the model).</summary>
    private static PeftModel LoadModel(PeftModelInfo info, byte[] stateBytes, EmbeddedBackbone? embedded, SharedBackbone? shared)
    {
        const string stateSource = "model zip " + AdapterStream;
        using var state = TensorFile.Open(new MemoryStream(stateBytes, writable: false), isPickled: false, stateSource, ownsFile: true);
        ITensorSource? backbone = null;
        string source = stateSource;
        if (embedded is not null && !info.Adapter.TrainsBackbone) backbone = embedded.OpenWeights(source = "model zip (embedded backbone)");
        else if (!info.Adapter.TrainsBackbone) // fully fine-tuned, the zip's state holds every backbone weight
        {
            var dir = BackboneLocator.Find(info.BackbonePath, info.BackboneSha256);
            (backbone, source) = (dir.OpenWeights(), dir.WeightsFile);
        }
        PeftModel model;
        using (backbone)
        using (RandomInit.Skipped()) // every parameter is loaded next: from the backbone, then from the zip's state
            model = PeftModel.Create(info.Backbone, info.Outputs, info.Adapter, backbone ?? state, source, shared: shared);
        try
        {
            model.LoadTrainableState(state, stateSource);
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>Checks the class names (PredictedLabel's values) before they are parsed: one damaged byte in them
    /// otherwise loaded and predicted a misspelled class. They fill the rest of the model's blob in its stream.</summary>
    private static void VerifyLabelValues(ModelLoadContext ctx, ZipChecksums checksums)
    {
        var stream = ctx.Reader.BaseStream;
        long start = stream.Position, end = ctx.FpMin + ctx.Header.FpModel + ctx.Header.CbModel;
        if (end < start || end > stream.Length)
            throw new InvalidDataException("model zip: the transformer's stream is damaged (its header's model size does not fit)");
        var bytes = new byte[end - start];
        stream.ReadExactly(bytes);
        checksums.Verify(LabelValuesChecksum, bytes);
        stream.Position = start;
    }

    // Factory for SignatureLoadRowMapper.
    private static IRowMapper Create(IHostEnvironment env, ModelLoadContext ctx, DataViewSchema inputSchema) =>
        Create(env, ctx).MakeRowMapper(inputSchema);

    private static string StreamOf(EmbeddedBackbone embedded) => embedded.IsPickled ? PickledBackboneStream : BackboneStream;

    /// <summary>The zip's embedded backbone, if it has one, checked to have the SHA-256 the model trained on: the file
    /// the models sharing <paramref name="shared"/> hold already (its SHA-256 is the copy's, so the entry is not copied
    /// out again), or the entry read.</summary>
    private static EmbeddedBackbone? EmbeddedBackboneOf(ModelLoadContext ctx, string sha256, SharedBackbone? shared)
    {
        if (shared?.Kept<EmbeddedBackbone>() is { } held && StoredZipEntry.FindOrNull(ctx, StreamOf(held)) is not null) return held.Hold();
        var embedded = ReadEmbeddedBackbone(ctx, BackboneStream, isPickled: false) ?? ReadEmbeddedBackbone(ctx, PickledBackboneStream, isPickled: true);
        if (embedded is null) return null;
        if (embedded.Sha256 != sha256)
        {
            embedded.Dispose();
            throw new InvalidDataException($"model zip {StreamOf(embedded)} (the embedded backbone) " +
                "does not have the SHA-256 the model was trained on: the zip is damaged (a copy or download that changed or lost bytes); " +
                "copy it again from where it was saved");
        }
        if (shared is not null && shared.Kept<EmbeddedBackbone>() is null) shared.Keep(embedded.Hold());
        return embedded;
    }

    private static EmbeddedBackbone? ReadEmbeddedBackbone(ModelLoadContext ctx, string name, bool isPickled)
    {
        try
        {
            using var entry = StoredZipEntry.FindOrNull(ctx, name)?.Open();
            return entry is null ? null : EmbeddedBackbone.Read(entry, isPickled);
        }
        catch (Exception e) when (e is InvalidDataException or EndOfStreamException) // a deflated entry (older zips) damaged
        {
            throw StoredZipEntry.Damaged(name, e);
        }
    }

    public override IRowMapper MakeRowMapper(DataViewSchema schema)
    {
        ThrowIfDisposed();
        return new Mapper(this, schema);
    }

    /// <summary>
    /// Adds Score (and PredictedLabel) to <paramref name="input"/>. Reading the result in order (Evaluate,
    /// CreateEnumerable, saving to a file) scores its rows in batches; a PredictionEngine scores one row at a time.
    /// </summary>
    public new IDataView Transform(IDataView input)
    {
        ThrowIfDisposed();
        return new BatchScoredDataView(this, input, base.Transform(input));
    }

    IDataView ITransformer.Transform(IDataView input) => Transform(input);

    /// <summary>Model outputs for tokenized inputs, scored in batches: class probabilities (softmax, as ML.NET's
    /// multiclass Score is, so Evaluate's log-loss is right), a binary model's two logits, or one regression value per row.</summary>
    internal float[][] Predict(IReadOnlyList<int[]> rows)
    {
        using var _ = Use();
        return BatchScorer.Outputs(_model, rows.Select((ids, i) => new Example(ids, 0, i)).ToList(), ScoringBatchSize, _tokenizer.PadId,
            _info.Task, logits: _info.Binary);
    }

    /// <summary>The getter of output column <paramref name="output"/> (in <see cref="PeftModelInfo.OutputColumnNames"/>
    /// order) over the current row's model outputs.</summary>
    internal Delegate OutputGetter(int output, Func<float[]> outputs)
    {
        if (output == 0 && _info.Task == TaskKind.Regression) return (ValueGetter<float>)((ref float dst) => dst = outputs()[0]);
        if (_info.Binary) return BinaryGetter(output, outputs);
        if (output == 0)
            return (ValueGetter<VBuffer<float>>)((ref VBuffer<float> dst) =>
            {
                var values = outputs();
                var editor = VBufferEditor.Create(ref dst, values.Length);
                values.CopyTo(editor.Values);
                dst = editor.Commit();
            });
        return (ValueGetter<uint>)((ref uint dst) =>
        {
            var values = outputs();
            int best = 0;
            for (int i = 1; i < values.Length; i++) if (values[i] > values[best]) best = i;
            dst = (uint)best + 1; // keys are 1-based; 0 means missing
        });
    }

    /// <summary>A binary model's columns from its two logits: Score is the log-odds of true (their difference, finite
    /// however confident the model is), Probability σ(Score) (the softmax probability of true), and PredictedLabel
    /// Score &gt; 0, as ML.NET's binary classifiers decide.</summary>
    internal static Delegate BinaryGetter(int output, Func<float[]> logits) => output switch
    {
        0 => (ValueGetter<float>)((ref float dst) => dst = LogOdds(logits())),
        1 => (ValueGetter<float>)((ref float dst) => dst = (float)(1 / (1 + Math.Exp(-(double)LogOdds(logits()))))),
        _ => (ValueGetter<bool>)((ref bool dst) => dst = LogOdds(logits()) > 0),
    };

    private static float LogOdds(float[] logits) => logits[1] - logits[0];

    /// <summary>Frees the TorchSharp model (CPU or GPU memory) now rather than at garbage collection, or, while other
    /// threads score with it or save it, when the last of them is done; later uses throw ObjectDisposedException. ML.NET
    /// disposes it too when a pipeline holding it is disposed, and when a PredictionEngine made with default options is.</summary>
    public void Dispose()
    {
        lock (_lifetime)
        {
            if (_disposed) return;
            _disposed = true;
            if (_uses == 0) Free();
        }
    }

    /// <summary>Holds the weights for one use (a scoring call, a save, an export) until it is disposed: a model disposed
    /// meanwhile, as a service swapping model versions does while requests still score with the old one, frees them
    /// when its last use ends. Freed under a running forward pass, they corrupted the native heap and ended the process.</summary>
    private WeightsInUse Use()
    {
        lock (_lifetime)
        {
            ThrowIfDisposed();
            _uses++;
        }
        return new WeightsInUse(this);
    }

    private readonly struct WeightsInUse(PeftTextTransformer owner) : IDisposable
    {
        public void Dispose()
        {
            lock (owner._lifetime)
                if (--owner._uses == 0 && owner._disposed) owner.Free();
        }
    }

    private void Free()
    {
        _model.Dispose();
        _sharedBackbone?.Leave();
        _embeddedBackbone?.Dispose();
    }

    private void ThrowIfDisposed()
    {
        if (_disposed)
            throw new ObjectDisposedException(nameof(PeftTextTransformer),
                "This model was disposed, and its TorchSharp weights freed. A PredictionEngine disposes its model when it "
                + "is disposed; to create and dispose engines while keeping the model, create them with "
                + "new PredictionEngineOptions { OwnsTransformer = false }, or keep one engine per thread.");
    }
}
