using System.Reflection;
using Microsoft.ML;
using Microsoft.ML.Runtime;
using MlNetPeft.MlNet;
using MlNetPeft.Tests.MlNet;

namespace MlNetPeft.Tests.Training;

/// <summary>Two Fits at once in one process, as a service training in the background might start them: the second
/// is started from the first's progress callback, so they surely overlap.</summary>
[TestClass]
public sealed class TrainingTurnsTests
{
    private const string Waiting = "Another training is running in this process";

    /// <summary>The tiny backbone with dropout on (0.1 everywhere), so that dropout masks, not only the initial
    /// weights, come from libtorch's generator.</summary>
    private static readonly Lazy<string> BackboneWithDropout = new(() =>
    {
        var dir = PeftTrainerFixture.CopyOfTinyBackbone();
        var config = Path.Combine(dir, "config.json");
        var text = File.ReadAllText(config);
        foreach (var key in new[] { "hidden_dropout_prob", "attention_probs_dropout_prob" })
        {
            text = text.Replace($"\"{key}\": 0.0", $"\"{key}\": 0.1");
            StringAssert.Contains(text, $"\"{key}\": 0.1");
        }
        File.WriteAllText(config, text);
        return dir;
    });

    private static MsploraOptions Options(int seed, bool checkpointing)
    {
        var options = PeftTrainerFixture.Msplora(3);
        options.BackboneDirectory = BackboneWithDropout.Value;
        options.Seed = seed;
        options.GradientCheckpointing = checkpointing;
        return options;
    }

    private static float[][] FitAndScore(MLContext ml, MsploraOptions options, Action? onFirstReport = null)
    {
        var data = ml.Data.LoadFromEnumerable(ToyText.Rows(64, seed: 3));
        bool first = true;
        var pipeline = ToyText.KeyLabel(ml).Append(PeftTrainerFixture.Classifier(ml, options));
        options.ProgressCallback = _ =>
        {
            if (first) onFirstReport?.Invoke();
            first = false;
        };
        return PeftTrainerFixture.Scores(pipeline.Fit(data), data, ml);
    }

    /// <summary>Each model is the one its seed gives alone, bit for bit, the checkpointed one included (run at once,
    /// the two drew from each other's generator sequence, and checkpointed blocks replayed with other dropout masks
    /// than their forward's, 4–10% off).</summary>
    [TestMethod]
    public void TrainingsStartedAtOnceTakeTurnsAndGiveTheModelsTheirSeedsGive()
    {
        var alone = (A: FitAndScore(new MLContext(1), Options(1, false)), B: FitAndScore(new MLContext(1), Options(2, true)));

        var mlB = new MLContext(1);
        var logB = PeftTrainerFixture.LogMessages(mlB, ChannelMessageKind.Info);
        float[][]? scoresB = null;
        var threadB = new Thread(() => scoresB = FitAndScore(mlB, Options(2, true)));
        var scoresA = FitAndScore(new MLContext(1), Options(1, false), onFirstReport: () =>
        {
            StartAndLetWait(threadB, logB);
        });
        Assert.IsTrue(threadB.Join(TimeSpan.FromMinutes(2)), "the second training ends");

        PeftTrainerFixture.AssertSameScores(alone.A, scoresA, "first training, ");
        PeftTrainerFixture.AssertSameScores(alone.B, scoresB!, "second (checkpointed) training, ");
        Assert.IsTrue(Said(logB, Waiting), "the second training waited, and said so");
    }

    /// <summary>A training waiting for its turn still stops when its MLContext is cancelled (an AutoML trial out of time).</summary>
    [TestMethod]
    public void AWaitingTrainingStopsWhenCancelled()
    {
        var mlB = new MLContext(1);
        var logB = PeftTrainerFixture.LogMessages(mlB, ChannelMessageKind.Info);
        Exception? thrown = null;
        var threadB = new Thread(() =>
        {
            try { FitAndScore(mlB, Options(2, false)); }
            catch (Exception e) { thrown = e; }
        });
        bool endedWhileFirstTrained = false;
        FitAndScore(new MLContext(1), Options(1, false), onFirstReport: () =>
        {
            StartAndLetWait(threadB, logB);
            typeof(MLContext).GetMethod("CancelExecution", BindingFlags.NonPublic | BindingFlags.Instance)!.Invoke(mlB, null);
            endedWhileFirstTrained = threadB.Join(TimeSpan.FromSeconds(20));
        });

        Assert.IsTrue(endedWhileFirstTrained, "the cancelled training stopped waiting");
        Assert.IsInstanceOfType<OperationCanceledException>(thrown);
    }

    /// <summary>Starts the second training (from the first's progress callback) and gives it time to find the turn taken.</summary>
    private static void StartAndLetWait(Thread second, List<string> secondLog)
    {
        second.Start();
        SpinWait.SpinUntil(() => Said(secondLog, Waiting), TimeSpan.FromSeconds(20));
    }

    private static bool Said(List<string> log, string text)
    {
        lock (log) return log.Any(m => m.Contains(text));
    }
}
