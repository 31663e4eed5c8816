using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetPeft.MlNet;

namespace MlNetPeft.Tests.MlNet;

/// <summary>Transform scores rows in batches read ahead of the cursor; a PredictionEngine scores one at a time.
/// Both must give the same results, in the same order, with bad rows named as before.</summary>
[TestClass]
public sealed class BatchScoringTests
{
    // More rows than one read-ahead window (256), so the second window is partial.
    private const int Rows = BatchScoredDataView.ReadAhead + 44;

    private static (MLContext Ml, TransformerChain<ITransformer> Model) Fitted()
    {
        var ml = new MLContext(seed: 1);
        var (model, _) = PeftTrainerFixture.Fit(ml, ml.Data.LoadFromEnumerable(ToyText.Rows(40, seed: 1)), PeftTrainerFixture.Msplora(1));
        return (ml, (TransformerChain<ITransformer>)model);
    }

    [TestMethod]
    public void TransformGivesThePredictionEnginesScoresInOrder()
    {
        var (ml, model) = Fitted();
        var rows = ToyText.Rows(Rows, seed: 5);
        var scored = ml.Data.CreateEnumerable<ScoredRow>(model.Transform(ml.Data.LoadFromEnumerable(rows)), reuseRowObject: false).ToList();
        var engine = ml.Model.CreatePredictionEngine<ToyText.Row, ToyText.Prediction>(model);
        Assert.HasCount(rows.Count, scored);
        for (int i = 0; i < rows.Count; i++)
        {
            var single = engine.Predict(rows[i]);
            Assert.AreEqual(rows[i].Sentence1, scored[i].Sentence1, $"row {i}: pass-through column in order");
            Assert.AreEqual(single.PredictedLabel, scored[i].PredictedLabel, $"row {i}");
            for (int j = 0; j < single.Score.Length; j++)
                Assert.AreEqual(single.Score[j], scored[i].Score[j], 1e-5, $"row {i}, class {j}");
        }
    }

    [TestMethod]
    public void SequentialCursorsAreBatchedAndShuffledOnesAreNot()
    {
        var (ml, model) = Fitted();
        var peft = model.OfType<PeftTextTransformer>().Single();
        var data = ml.Data.LoadFromEnumerable(ToyText.Rows(10, seed: 6));
        var view = peft.Transform(ToyText.KeyLabel(ml).Fit(data).Transform(data));
        Assert.IsInstanceOfType<BatchScoredDataView>(view);
        using (var cursor = view.GetRowCursor([view.Schema["Score"]]))
            Assert.AreEqual(typeof(BatchScoredDataView), cursor.GetType().DeclaringType, "Score read in order: batched");
        using (var cursor = view.GetRowCursor([view.Schema["Sentence1"]]))
            Assert.AreNotEqual(typeof(BatchScoredDataView), cursor.GetType().DeclaringType, "no score read: the plain cursor");
        using (var cursor = view.GetRowCursor([view.Schema["Score"]], new Random(1)))
            Assert.AreNotEqual(typeof(BatchScoredDataView), cursor.GetType().DeclaringType, "shuffled: row by row");
        Assert.HasCount(1, view.GetRowCursorSet([view.Schema["Score"]], 4));
    }

    [TestMethod]
    public void AnEmptyTextInALaterBatchIsNamedWithItsRowAndColumn()
    {
        var (ml, model) = Fitted();
        var rows = ToyText.Rows(Rows, seed: 7);
        rows[270].Sentence1 = " ";
        var scored = model.Transform(ml.Data.LoadFromEnumerable(rows));
        // ML.NET's parallel cursors wrap what a worker throws; ours is the innermost exception.
        var e = Assert.Throws<Exception>(() => ml.Data.CreateEnumerable<ScoredRow>(scored, reuseRowObject: false).ToList()).GetBaseException();
        Assert.IsInstanceOfType<InvalidDataException>(e);
        StringAssert.Contains(e.Message, "row 270");
        StringAssert.Contains(e.Message, "'Sentence1'");
    }

    [TestMethod]
    public void ScoringLeavesNoTensorsAlive()
    {
        // A long-running service predicts for ever: every tensor a prediction makes must be freed when it returns, not left
        // to the garbage collector (TotalCount counts live tensor handles in the whole process, read-ahead thread too).
        var (ml, model) = Fitted();
        var rows = ToyText.Rows(Rows, seed: 9);
        void ScoreAll()
        {
            // A new engine per round, as services that create one per request do; it must not dispose the model.
            using var engine = ml.Model.CreatePredictionEngine<ToyText.Row, ToyText.Prediction>(model, new PredictionEngineOptions { OwnsTransformer = false });
            foreach (var row in rows.Take(40)) engine.Predict(row);
            Assert.HasCount(rows.Count, ml.Data.CreateEnumerable<ScoredRow>(model.Transform(ml.Data.LoadFromEnumerable(rows)), reuseRowObject: false).ToList());
        }
        ScoreAll(); // first use: caches on the device
        GC.Collect(); // earlier tests' garbage must not be finalized (and counted off) while we count
        GC.WaitForPendingFinalizers();
        long live = TorchSharp.torch.Tensor.TotalCount;
        for (int i = 0; i < 3; i++) ScoreAll();
        Assert.AreEqual(live, TorchSharp.torch.Tensor.TotalCount, "live tensors after three more rounds of scoring");
    }

    [TestMethod]
    public void EnginesOnSeveralThreadsShareOneModel()
    {
        // A web service: one model, one PredictionEngine per thread, requests in parallel.
        var (ml, model) = Fitted();
        var rows = ToyText.Rows(60, seed: 11);
        var expected = ml.Data.CreateEnumerable<ScoredRow>(model.Transform(ml.Data.LoadFromEnumerable(rows)), reuseRowObject: false).ToList();
        var scores = new float[4][][];
        var errors = new Exception?[scores.Length];
        var threads = Enumerable.Range(0, scores.Length).Select(t => new Thread(() =>
        {
            try
            {
                using var engine = ml.Model.CreatePredictionEngine<ToyText.Row, ToyText.Prediction>(model, new PredictionEngineOptions { OwnsTransformer = false });
                // Each thread starts at another row, so different inputs run at the same time.
                scores[t] = Enumerable.Range(0, rows.Count).Select(i => engine.Predict(rows[(i + 15 * t) % rows.Count]).Score).ToArray();
            }
            catch (Exception e) { errors[t] = e; }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        Assert.IsTrue(errors.All(e => e is null), string.Join("\n", errors.Where(e => e is not null)));
        for (int t = 0; t < scores.Length; t++)
            for (int i = 0; i < rows.Count; i++)
            {
                int row = (i + 15 * t) % rows.Count;
                for (int j = 0; j < expected[row].Score.Length; j++)
                    Assert.AreEqual(expected[row].Score[j], scores[t][i][j], 1e-5, $"thread {t}, row {row}, class {j}");
            }
    }

    /// <summary>A service swapping model versions disposes the old model while requests may still score with it (as
    /// Microsoft.Extensions.ML's pool does on a reload): calls under way finish with the model's scores, later ones
    /// throw ObjectDisposedException. Freed under a running forward pass, the weights corrupted the native heap and the
    /// process ended ("free(): corrupted unsorted chunks"), in each of three runs of this test.</summary>
    [TestMethod]
    public void AModelDisposedWhileThreadsScoreWithItWaitsForThem()
    {
        var (ml, model) = Fitted();
        var zip = Path.Combine(TestFolders.Create("dispose-while-scoring"), "model.zip");
        ml.Model.Save(model, null, zip);
        var row = ToyText.Rows(1, seed: 3)[0];
        int finished = 0, refused = 0;
        var errors = new System.Collections.Concurrent.ConcurrentBag<Exception>();
        for (int round = 0; round < 20; round++)
        {
            var loaded = new MLContext().Model.Load(zip, out _);
            var options = new PredictionEngineOptions { OwnsTransformer = false };
            var expected = ml.Model.CreatePredictionEngine<ToyText.Row, ToyText.Prediction>(loaded, options).Predict(row).Score;
            using var started = new CountdownEvent(4);
            var threads = Enumerable.Range(0, 4).Select(_ => new Thread(() =>
            {
                var engine = ml.Model.CreatePredictionEngine<ToyText.Row, ToyText.Prediction>(loaded, options);
                started.Signal();
                while (true)
                {
                    try
                    {
                        if (engine.Predict(row).Score.SequenceEqual(expected)) Interlocked.Increment(ref finished);
                        else errors.Add(new AssertFailedException("other scores than the model's"));
                    }
                    catch (ObjectDisposedException) { Interlocked.Increment(ref refused); return; }
                    catch (Exception e) { errors.Add(e); return; }
                }
            })).ToList();
            threads.ForEach(t => t.Start());
            started.Wait();
            Thread.Sleep(5);
            ((IDisposable)loaded).Dispose();
            threads.ForEach(t => t.Join());
        }
        Assert.IsEmpty(errors, string.Join("\n", errors));
        Assert.AreEqual(80, refused, "every thread's next call after the disposal");
        Assert.IsGreaterThan(0, finished);
    }

    [TestMethod]
    public void AModelDisposedWithItsPredictionEngineSaysHowToKeepIt()
    {
        var (ml, model) = Fitted();
        var row = ToyText.Rows(1, seed: 3)[0];
        var first = ml.Model.CreatePredictionEngine<ToyText.Row, ToyText.Prediction>(model);
        var second = ml.Model.CreatePredictionEngine<ToyText.Row, ToyText.Prediction>(model);
        first.Predict(row);
        first.Dispose(); // ML.NET's default: the engine owns the model, and disposes it
        foreach (var use in new Action[]
        {
            () => second.Predict(row),
            () => ml.Model.CreatePredictionEngine<ToyText.Row, ToyText.Prediction>(model),
            () => model.Transform(ml.Data.LoadFromEnumerable(new[] { row })),
        })
            StringAssert.Contains(Assert.ThrowsExactly<ObjectDisposedException>(use).Message, "OwnsTransformer = false");
    }

    private sealed class ScoredRow
    {
        public string Sentence1 { get; set; } = "";
        public float[] Score { get; set; } = [];
        public string PredictedLabel { get; set; } = "";
    }
}
