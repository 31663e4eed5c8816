using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Serialization;
using MlNetPeft.Adapters;
using MlNetPeft.Backbone;
using static TorchSharp.torch;

namespace MlNetPeft.Training;

/// <summary>Where a training run is: what the loop needs, besides tensors, to go on exactly from there.</summary>
internal sealed class LoopPosition
{
    /// <summary>The epoch under way (1-based), or MaxEpochs + 1 when all have run.</summary>
    public int Epoch { get; set; } = 1;
    /// <summary>Optimizer steps done in <see cref="Epoch"/>.</summary>
    public int StepInEpoch { get; set; }
    /// <summary>Optimizer steps done in all.</summary>
    public int Step { get; set; }
    /// <summary>True once early stopping ended the run.</summary>
    public bool Stopped { get; set; }
    public double LastLoss { get; set; } = double.NaN;
    public int StepsSinceReport { get; set; }
    public int RowsSinceReport { get; set; }
    public double? Best { get; set; }
    public int? BestEpoch { get; set; }
    public int BadEpochs { get; set; }

    private static readonly JsonSerializerOptions Json = new() { NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals };

    public string ToJson() => JsonSerializer.Serialize(this, Json);

    public static LoopPosition FromJson(string json) =>
        JsonSerializer.Deserialize<LoopPosition>(json, Json) ?? throw new JsonException("empty position");
}

/// <summary>
/// A training run's whole state in one file of a directory (HF Trainer's save_steps and resume_from_checkpoint): the
/// trainable weights, AdamW's averages and step count, the method's hook state (AdaLoRA's importance scores), the
/// CPU random generator, the loop's position and its early-stopping record. A run that finds its file goes on from it
/// and ends where the uninterrupted run would have: the shuffles of the epochs done are drawn again, the steps of the
/// epoch under way skipped. The file is written whole and then renamed over the previous one, so a crash while saving
/// leaves the previous state. Its name is a hash of what the run is (settings, adapters, backbone, data, starting
/// weights), so the runs of a cross-validation, or of other settings, keep their own files side by side; a run with no
/// file of its own starts afresh and logs how the directory's latest state differs from it.
/// TorchSharp cannot read the CUDA generator's state, so each save reseeds it from the seed and step, and a resumed run
/// does the same. While a run trains, it holds a lock on its state (released when disposed, or when its process ends):
/// the same run started twice on one directory (a job retried while the first still runs) would write one file from
/// two processes, and a later resume could read their steps mixed.
/// </summary>
internal sealed class TrainingCheckpoint : IDisposable
{
    /// <summary>The state files' names: this, then a hash of the run's identity.</summary>
    public const string FilePrefix = "training-state-";
    private const string PositionKey = "position";

    private readonly int _every;
    private readonly int _seed;
    private readonly IReadOnlyDictionary<string, string> _identity;
    private readonly FileStream _lock; // held while the run trains

    /// <param name="directory">Created if need be.</param>
    /// <param name="saveEveryNSteps">Also save every this many steps (0: at the end of each epoch only).</param>
    /// <param name="seed">The run's seed (the CUDA generator is reseeded from it).</param>
    /// <param name="identity">What the run is, by name: it names the state file, and a file of that name with other values is refused.</param>
    public TrainingCheckpoint(string directory, int saveEveryNSteps, int seed, IReadOnlyDictionary<string, string> identity)
    {
        var key = string.Join("\n", identity.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => $"{kv.Key}={kv.Value}"));
        var hash = Convert.ToHexStringLower(SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(key)))[..16];
        Path = System.IO.Path.Combine(directory, $"{FilePrefix}{hash}.safetensors");
        _every = saveEveryNSteps;
        _seed = seed;
        _identity = identity;
        _lock = Lock(directory, Path + ".lock");
    }

    // How .NET reports a file locked by another: flock's EWOULDBLOCK on Linux and macOS, a sharing violation on Windows.
    private const int HeldOnLinux = 11, HeldOnMacOs = 35, HeldOnWindows = unchecked((int)0x80070020);

    /// <summary>Creates the directory and opens the run's lock file there for this process alone (.NET takes an flock
    /// on Unix for FileShare.None). Creating that file also shows the directory can hold the state: one that cannot is
    /// named before training rather than at the first save, an epoch later.</summary>
    private static FileStream Lock(string directory, string path)
    {
        try
        {
            Directory.CreateDirectory(directory);
            return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException e) when (e.HResult is HeldOnLinux or HeldOnMacOs or HeldOnWindows)
        {
            throw new IOException($"Another training of this same run is saving its state to '{directory}' " +
                $"('{path}' is locked): two runs saving one state would overwrite each other's. Let that one finish (this " +
                "one then returns its result) or give this one another TrainingStateDirectory.", e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"TrainingStateDirectory '{directory}' cannot hold the training state: {e.Message}", e);
        }
    }

    /// <summary>Releases the lock. The lock file stays: deleted, a process that had opened it just before could lock
    /// the deleted file while a third locked a new one of the same name, and both would train.</summary>
    public void Dispose() => _lock.Dispose();

    /// <summary>This run's state file.</summary>
    public string Path { get; }

    /// <summary>Whether the state is saved after <paramref name="step"/> (besides each epoch's end).</summary>
    public bool IsDueAfter(int step) => _every > 0 && step % _every == 0;

    /// <summary>The identity of a run: the settings that decide its result, the adapters, the backbone and the data.</summary>
    public static Dictionary<string, string> Identify(TrainingSettings s, AdapterConfig adapters,
        IReadOnlyList<Example> train, IReadOnlyList<Example>? validation)
    {
        static string Number(double x) => x.ToString("R", CultureInfo.InvariantCulture);
        var identity = new Dictionary<string, string>
        {
            ["BatchSize"] = s.BatchSize.ToString(CultureInfo.InvariantCulture),
            ["GradientAccumulationSteps"] = s.GradientAccumulationSteps.ToString(CultureInfo.InvariantCulture),
            ["MaxEpochs"] = s.MaxEpochs.ToString(CultureInfo.InvariantCulture),
            ["LearningRate"] = Number(s.LearningRate),
            ["HeadLearningRateRatio"] = Number(s.HeadLearningRateRatio),
            ["LoraPlusLearningRateRatio"] = Number(s.LoraPlusLearningRateRatio),
            ["WeightDecay"] = Number(s.WeightDecay),
            ["WarmupRatio"] = Number(s.WarmupRatio),
            ["GradientClipNorm"] = Number(s.GradientClipNorm),
            ["Seed"] = s.Seed.ToString(CultureInfo.InvariantCulture),
            ["EarlyStoppingPatience"] = s.EarlyStoppingPatience.ToString(CultureInfo.InvariantCulture),
            ["ValidationMetric"] = s.ValidationMetric.ToString(),
            ["GroupByLength"] = s.GroupByLength.ToString(),
            ["adapters"] = adapters.ToJson(),
            ["training data"] = Fingerprint(train),
            ["validation set"] = validation is null ? "none" : Fingerprint(validation),
        };
        foreach (var (name, value) in s.Identity ?? new Dictionary<string, string>()) identity[name] = value;
        return identity;
    }

    /// <summary>SHA-256 of the examples' token ids, labels and weights, in order.</summary>
    private static string Fingerprint(IReadOnlyList<Example> examples)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        Span<byte> scalars = stackalloc byte[12];
        foreach (var e in examples)
        {
            BitConverter.TryWriteBytes(scalars, e.Ids.Length);
            BitConverter.TryWriteBytes(scalars[4..], e.Label);
            BitConverter.TryWriteBytes(scalars[8..], e.Weight);
            hash.AppendData(scalars);
            hash.AppendData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(e.Ids.AsSpan()));
        }
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    /// <summary>Writes the state after the step (or epoch) <paramref name="position"/> describes.</summary>
    public void Save(LoopPosition position, PeftModel model, TrainingStepper stepper,
        IReadOnlyDictionary<string, Tensor>? best, Tensor runningLoss)
    {
        using (NewDisposeScope())
        {
            var tensors = model.TrainableStateTensors().ToDictionary(kv => "model." + kv.Key, kv => kv.Value); // written as they are, no copy
            foreach (var (name, tensor) in best ?? new Dictionary<string, Tensor>()) tensors["best." + name] = tensor;
            foreach (var (name, tensor) in stepper.State()) tensors["step." + name] = tensor;
            tensors["random.cpu"] = random.get_rng_state();
            tensors["loss.running"] = runningLoss;
            var metadata = new Dictionary<string, string>(_identity) { [PositionKey] = position.ToJson() };
            using var files = new StagedFiles(System.IO.Path.GetDirectoryName(Path)!);
            try { files.Write(System.IO.Path.GetFileName(Path), file => SafeTensors.Write(file, tensors, metadata)); }
            catch (IOException e)
            {
                throw new IOException(e.Message + " " + (File.Exists(Path)
                    ? $"The last complete state, '{Path}', is intact: the same Fit goes on from it."
                    : "No state of this run had been saved yet."), e.InnerException);
            }
            files.Commit();
        }
        ReseedCuda(position.Step);
    }

    /// <summary>Restores a saved state into the model, the stepper, the running loss and the CPU generator, and returns
    /// the loop's position; null (and nothing changed) when there is none. <paramref name="best"/> gets the best epoch's
    /// weights when the state has them.</summary>
    public LoopPosition? TryResume(PeftModel model, TrainingStepper stepper, Tensor runningLoss, out Dictionary<string, Tensor>? best,
        Action<string>? log = null)
    {
        best = null;
        if (!File.Exists(Path))
        {
            if (log is not null && LatestOtherState() is { } other)
                log($"No saved state of this run in {System.IO.Path.GetDirectoryName(Path)}; training from the start. The latest state there, " +
                    $"{System.IO.Path.GetFileName(other)}, is of another run ({string.Join("; ", Differences(SafeTensors.ReadMetadata(other)))}).");
            return null;
        }
        var tensors = SafeTensors.Load(Path, out var metadata);
        try
        {
            CheckIdentity(metadata);
            LoopPosition saved;
            try { saved = LoopPosition.FromJson(metadata[PositionKey]); }
            catch (Exception e) when (e is JsonException or KeyNotFoundException)
            {
                throw new InvalidDataException($"{Path}: the loop position is missing or unreadable ({e.Message})", e);
            }
            model.LoadTrainableState(WithPrefix(tensors, "model."), Path);
            stepper.LoadState(WithPrefix(tensors, "step."), saved.Step, Path);
            using (no_grad()) runningLoss.copy_(Required(tensors, "loss.running"));
            random.set_rng_state(Required(tensors, "random.cpu"));
            var bestState = WithPrefix(tensors, "best.");
            if (bestState.Count > 0)
            {
                best = bestState;
                foreach (var name in bestState.Keys) tensors.Remove("best." + name); // the caller owns them now
            }
            ReseedCuda(saved.Step);
            return saved;
        }
        finally
        {
            foreach (var t in tensors.Values) t.Dispose();
        }
    }

    /// <summary>The newest state file of another run in the directory, or null.</summary>
    private string? LatestOtherState()
    {
        var directory = System.IO.Path.GetDirectoryName(Path)!;
        if (!Directory.Exists(directory)) return null;
        return Directory.GetFiles(directory, FilePrefix + "*.safetensors").Where(f => f != Path)
            .OrderByDescending(File.GetLastWriteTimeUtc).FirstOrDefault();
    }

    /// <summary>A file of this run's name must hold this run's state (a hash collision or a file copied by hand).</summary>
    private void CheckIdentity(IReadOnlyDictionary<string, string> saved)
    {
        var differences = Differences(saved);
        if (differences.Count > 0)
            throw new InvalidOperationException(
                $"{Path} holds the state of another training run ({string.Join("; ", differences)}). Delete it, or set " +
                "another TrainingStateDirectory, to train from the start.");
    }

    /// <summary>How a saved run's identity differs from this one's, one phrase per setting.</summary>
    private List<string> Differences(IReadOnlyDictionary<string, string> saved)
    {
        var differences = new List<string>();
        foreach (var name in _identity.Keys.Union(saved.Keys.Where(k => k != PositionKey)))
        {
            saved.TryGetValue(name, out var then);
            _identity.TryGetValue(name, out var now);
            if (then == now) continue;
            differences.Add(name is "adapters" or "training data" or "validation set" or "backbone" or "starting weights"
                ? $"the {name} differ"
                : $"{name} was {then ?? "not set"}, is {now ?? "not set"}");
        }
        return differences;
    }

    private Tensor Required(IReadOnlyDictionary<string, Tensor> tensors, string name) =>
        tensors.TryGetValue(name, out var t) ? t : throw new InvalidDataException($"{Path}: tensor '{name}' is missing");

    /// <summary>The entries whose names start with <paramref name="prefix"/>, by the rest of their names.</summary>
    internal static Dictionary<string, Tensor> WithPrefix(IReadOnlyDictionary<string, Tensor> state, string prefix) =>
        state.Where(kv => kv.Key.StartsWith(prefix, StringComparison.Ordinal)).ToDictionary(kv => kv.Key[prefix.Length..], kv => kv.Value);

    /// <summary>Dropout on CUDA draws from the CUDA generator, whose state TorchSharp cannot read: a run that saves, and
    /// one that resumes, both set it from the seed and the step here.</summary>
    private void ReseedCuda(int step) => cuda.manual_seed_all(unchecked(_seed * 1_000_003L + step));
}
