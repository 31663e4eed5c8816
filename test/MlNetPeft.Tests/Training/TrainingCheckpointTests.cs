using MlNetPeft.Adapters;
using MlNetPeft.Adapters.Full;
using MlNetPeft.Adapters.Lora;
using MlNetPeft.Adapters.LoraSquared;
using MlNetPeft.Adapters.Msplora;
using MlNetPeft.Tests.Adapters;
using MlNetPeft.Training;
using static TorchSharp.torch;

namespace MlNetPeft.Tests.Training;

[TestClass]
public sealed class TrainingCheckpointTests
{
    /// <summary>Thrown from the progress callback to stop a run the way a crash or a cancellation would.</summary>
    private sealed class Interrupted : Exception;

    private static readonly List<Example> TrainRows = Rows(30, seed: 3);
    private static readonly List<Example> ValidationRows = Rows(9, seed: 4);

    private static List<Example> Rows(int count, int seed)
    {
        var random = new Random(seed); // rows of different lengths, so batches are padded differently
        return Enumerable.Range(0, count)
            .Select(i => new Example(Enumerable.Range(0, random.Next(3, 13)).Select(_ => random.Next(3, 100)).ToArray(), i % 3, i))
            .ToList();
    }

    // 30 rows in batches of 4, two batches a step: 4 steps an epoch, 12 in all. In fp16 the loss scale starts so high
    // that the first steps overflow and are skipped, before the state saved after step 6 and the stop after step 7.
    private static TrainingSettings Settings(string? directory) => new()
    {
        BatchSize = 4, GradientAccumulationSteps = 2, MaxEpochs = 3, LearningRate = 1e-2, LogEveryNSteps = 1,
        StateDirectory = directory, SaveStateEveryNSteps = directory is null ? 0 : 3, InitialLossScale = Math.Pow(2, 27),
    };

    public static IEnumerable<object[]> Methods =>
    [
        [new LoraConfig { Dropout = 0.1 }, ScalarType.Float32],
        [new MsploraConfig { Dropout = 0.1, GroupCount = 2 }, ScalarType.Float32],
        [new SvdConfig { Variant = SvdVariant.AdaLora, Dropout = 0.1, MaskInterval = 1, InitialRank = 4, TargetRank = 2 }, ScalarType.Float32], // importance scores, pruning
        [new FullFineTuningConfig(), ScalarType.Float32],
        [new FullFineTuningConfig(), ScalarType.BFloat16], // a bf16 compute copy of fp32 masters
        [new LoraConfig { Dropout = 0.1 }, ScalarType.BFloat16],
        [new LoraConfig { Dropout = 0.1, UseDora = true }, ScalarType.Float32], // DoRA's magnitudes
        [new LoraConfig { Dropout = 0.1 }, ScalarType.Float16], // the loss scale and the skipped steps
        [new SvdConfig { Variant = SvdVariant.AdaLora, Dropout = 0.1, MaskInterval = 1, InitialRank = 4, TargetRank = 2 }, ScalarType.Float16], // hooks wait on skips
        [new FullFineTuningConfig(), ScalarType.Float16],
    ];

    private sealed record Run(Dictionary<string, Tensor> Weights, TrainingResult Result, List<int> StepsReported, List<string> Log);

    /// <summary>Trains the tiny model (dropout on: the random generator matters) from seed 7; with
    /// <paramref name="stopAfter"/>, the run is interrupted once that step has been reported.</summary>
    private static Run Train(AdapterConfig adapters, TrainingSettings settings, int? stopAfter = null,
        IReadOnlyList<Example>? train = null, ScalarType dtype = ScalarType.Float32)
    {
        manual_seed(7);
        using var model = AdapterTests.Tiny(adapters, backboneDropout: 0.1);
        if (dtype != ScalarType.Float32) model.To(CPU, dtype);
        var steps = new List<int>();
        var log = new List<string>();
        settings = settings with
        {
            Progress = p =>
            {
                if (p.ValidationMetric is not null) return;
                steps.Add(p.Step);
                if (p.Step == stopAfter) throw new Interrupted();
            },
        };
        var result = new TrainingLoop(model, settings, TaskKind.Classification, padId: 1, log.Add)
            .Run(train ?? TrainRows, ValidationRows);
        return new Run(model.TrainableState(), result, steps, log);
    }

    /// <summary>A new empty directory, deleted with everything in it on Dispose.</summary>
    private sealed class ScratchDirectory : IDisposable
    {
        public string Path { get; } = TestFolders.Create("mlnetpeft-state-");
        public void Dispose() => Directory.Delete(Path, recursive: true);
    }

    private static float LargestDifference(Dictionary<string, Tensor> a, Dictionary<string, Tensor> b)
    {
        CollectionAssert.AreEquivalent(a.Keys.ToList(), b.Keys.ToList());
        return a.Keys.Max(k => (a[k] - b[k]).abs().max().item<float>());
    }

    [TestMethod]
    [DynamicData(nameof(Methods))]
    public void AResumedRunEndsWithTheWeightsOfAnUninterruptedOne(AdapterConfig adapters, ScalarType dtype)
    {
        var whole = Train(adapters, Settings(null), dtype: dtype);
        if (dtype == ScalarType.Float16)
        {
            var scaling = whole.Log.Single(l => l.StartsWith("fp16 loss scaling: ", StringComparison.Ordinal));
            Assert.IsGreaterThan(0, int.Parse(scaling.Split(' ')[3]), scaling); // "fp16 loss scaling: N of 12 steps skipped ..."
        }
        using var scratch = new ScratchDirectory();
        var directory = scratch.Path;
        // Saved after steps 3 (mid-epoch), 4 (epoch end) and 6 (mid-epoch 2); stopped after step 7.
        Assert.ThrowsExactly<Interrupted>(() => Train(adapters, Settings(directory), stopAfter: 7, dtype: dtype));
        var resumed = Train(adapters, Settings(directory), dtype: dtype);

        CollectionAssert.AreEqual(new[] { 7, 8, 9, 10, 11, 12 }, resumed.StepsReported, "goes on after the last saved step");
        Assert.AreEqual(whole.Result, resumed.Result);
        Assert.AreEqual(0f, LargestDifference(whole.Weights, resumed.Weights), "bit for bit");

        // The state of a finished run gives its result again, without training.
        var again = Train(adapters, Settings(directory), dtype: dtype);
        Assert.IsEmpty(again.StepsReported);
        Assert.AreEqual(whole.Result, again.Result);
        Assert.AreEqual(0f, LargestDifference(whole.Weights, again.Weights));
    }

    [TestMethod]
    public void EarlyStoppingAndTheBestEpochSurviveAResume()
    {
        // Patience 1: the run stops after the first epoch that does not beat the best, and returns the best epoch's
        // weights, which the resumed run must have kept from the saved state.
        var adapters = new LoraConfig { Dropout = 0.1 };
        TrainingSettings Patient(string? directory) => Settings(directory) with { MaxEpochs = 8, EarlyStoppingPatience = 1, LearningRate = 5e-2 };
        var whole = Train(adapters, Patient(null));
        Assert.IsLessThan(8, whole.Result.Epochs, "stopped early");
        Assert.AreNotEqual(whole.Result.Epochs, whole.Result.BestEpoch, "restored an earlier epoch");
        using var scratch = new ScratchDirectory();
        var directory = scratch.Path;
        int stop = 4 * whole.Result.Epochs - 1; // within the last epoch, after the best one was saved
        Assert.ThrowsExactly<Interrupted>(() => Train(adapters, Patient(directory), stopAfter: stop));
        var resumed = Train(adapters, Patient(directory));
        Assert.AreEqual(whole.Result, resumed.Result);
        Assert.AreEqual(0f, LargestDifference(whole.Weights, resumed.Weights));
    }

    private static string[] StateFiles(string directory) =>
        Directory.GetFiles(directory, TrainingCheckpoint.FilePrefix + "*.safetensors").Order().ToArray();

    private static LoraConfig LoraWithDropout => new() { Dropout = 0.1 };

    /// <summary>Runs LoRA (with dropout) in <paramref name="directory"/>, interrupted after step 5; returns its state
    /// file, saved after step 4.</summary>
    private static string InterruptedRunState(string directory)
    {
        Assert.ThrowsExactly<Interrupted>(() => Train(LoraWithDropout, Settings(directory), stopAfter: 5));
        return StateFiles(directory).Single();
    }

    /// <summary>Runs of other settings, adapters or data keep their own state files in one directory (a
    /// cross-validation's folds, say): a run without one trains from the start and logs how the latest state there
    /// differs from it, and each run still resumes from its own.</summary>
    [TestMethod]
    public void OtherRunsKeepTheirOwnStatesAndTheirDifferencesAreLogged()
    {
        var adapters = LoraWithDropout;
        using var scratch = new ScratchDirectory();
        var directory = scratch.Path;
        var first = InterruptedRunState(directory);

        var rate = Train(adapters, Settings(directory) with { LearningRate = 2e-2 });
        Assert.AreEqual(1, rate.StepsReported[0], "another learning rate trains from the start");
        Assert.IsTrue(rate.Log.Any(m => m.Contains("LearningRate was 0.01, is 0.02") && m.Contains(Path.GetFileName(first))), string.Join("\n", rate.Log));
        var data = Train(adapters, Settings(directory), train: TrainRows.Skip(1).ToList());
        Assert.AreEqual(1, data.StepsReported[0]);
        Assert.IsTrue(data.Log.Any(m => m.Contains("the training data differ")), string.Join("\n", data.Log));
        var method = Train(new LoraConfig { Dropout = 0.1, Rank = 4 }, Settings(directory));
        Assert.IsTrue(method.Log.Any(m => m.Contains("the adapters differ")), string.Join("\n", method.Log));
        Assert.HasCount(4, StateFiles(directory), "one state file per run");

        var resumed = Train(adapters, Settings(directory));
        Assert.AreEqual(5, resumed.StepsReported[0], "the first run goes on from its own state (saved after step 4)");

        File.WriteAllBytes(first, [1, 2, 3]);
        StringAssert.Contains(Assert.ThrowsExactly<InvalidDataException>(() => Train(adapters, Settings(directory))).Message, first);
    }

    /// <summary>A disk that fills up while the state is written (here the file being written is /dev/full, whose every
    /// write fails with ENOSPC): the error names the file and says the last state is intact; the partial file is gone,
    /// so the space it took is given back; and the same run, once there is room, goes on from that last state.</summary>
    [TestMethod]
    public void AFullDiskWhileSavingKeepsTheLastStateAndLeavesNoPartialFile()
    {
        if (!File.Exists("/dev/full")) Assert.Inconclusive("needs /dev/full (Linux)");
        var adapters = LoraWithDropout;
        var whole = Train(adapters, Settings(null));
        using var scratch = new ScratchDirectory();
        var directory = scratch.Path;
        var state = InterruptedRunState(directory);
        var saved = File.ReadAllBytes(state);

        var partial = state + ".tmp";
        File.CreateSymbolicLink(partial, "/dev/full");
        var error = Assert.ThrowsExactly<IOException>(() => Train(adapters, Settings(directory)));
        StringAssert.Contains(error.Message, partial);
        StringAssert.Contains(error.Message, $"'{state}', is intact");
        Assert.IsFalse(File.Exists(partial) || new FileInfo(partial).LinkTarget is not null, "the partial file is deleted");
        CollectionAssert.AreEqual(saved, File.ReadAllBytes(state));

        var resumed = Train(adapters, Settings(directory));
        Assert.AreEqual(5, resumed.StepsReported[0], "goes on after step 4, the last state saved");
        Assert.AreEqual(0f, LargestDifference(whole.Weights, resumed.Weights));
    }

    /// <summary>The same run started twice on one directory (a retried job while the first still runs): the second
    /// is refused, naming the directory, rather than both writing one state file. Another run in that directory (other
    /// settings) is not held up, and the lock goes when its run ends, interrupted or not.</summary>
    [TestMethod]
    public void TheSameRunTwiceAtOnceOnOneDirectoryIsRefused()
    {
        var adapters = LoraWithDropout;
        using var scratch = new ScratchDirectory();
        var directory = scratch.Path;
        var lockFile = InterruptedRunState(directory) + ".lock";

        // What the run under way holds (.NET locks a FileShare.None file with flock on Unix, per open file); the
        // interrupted run released it, or this would throw.
        using (new FileStream(lockFile, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None))
        {
            var error = Assert.ThrowsExactly<IOException>(() => Train(adapters, Settings(directory)));
            StringAssert.Contains(error.Message, $"'{directory}'");
            StringAssert.Contains(error.Message, "another TrainingStateDirectory");
            var other = Train(adapters, Settings(directory) with { LearningRate = 2e-2 });
            Assert.AreEqual(1, other.StepsReported[0], "another run trains beside it");
        }
        var resumed = Train(adapters, Settings(directory));
        Assert.AreEqual(5, resumed.StepsReported[0], "the refused run changed nothing: the state saved after step 4 is resumed");
        using (new FileStream(lockFile, FileMode.Open, FileAccess.ReadWrite, FileShare.None)) { } // released again
    }

    [TestMethod]
    public void SaveStepsNeedADirectory()
    {
        var error = Assert.ThrowsExactly<ArgumentException>(() => (Settings(null) with { SaveStateEveryNSteps = 5 }).Validate());
        StringAssert.Contains(error.Message, "TrainingStateDirectory");
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentException>(() => (Settings("x") with { SaveStateEveryNSteps = -1 }).Validate()).Message, "SaveStateEveryNSteps");
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentException>(() => (Settings(" ") with { SaveStateEveryNSteps = 0 }).Validate()).Message, "TrainingStateDirectory");
    }
}
