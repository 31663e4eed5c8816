using MlNetPeft.Training;

namespace MlNetPeft.Tests.Training;

[TestClass]
public sealed class MetricsTests
{
    // predicted vs gold: tp = 3, tn = 2, fp = 1, fn = 2.
    private static readonly double[] Predicted = [1, 1, 1, 1, 0, 0, 0, 0];
    private static readonly double[] Gold = [1, 1, 1, 0, 1, 1, 0, 0];

    [TestMethod]
    public void AccuracyF1AndMatthews()
    {
        Assert.AreEqual(5.0 / 8, Metrics.Accuracy(Predicted, Gold), 1e-12);
        Assert.AreEqual(2.0 * 3 / (2 * 3 + 1 + 2), Metrics.F1(Predicted, Gold), 1e-12);
        Assert.AreEqual((3.0 * 2 - 1 * 2) / Math.Sqrt(4.0 * 5 * 3 * 4), Metrics.MatthewsCorrelation(Predicted, Gold), 1e-12);
        Assert.AreEqual(0.0, Metrics.MatthewsCorrelation([1, 1, 1], [1, 0, 1]), 1e-12, "undefined (one class predicted) is 0");
        Assert.AreEqual(0.0, Metrics.F1([0, 0], [1, 0]), 1e-12);
    }

    [TestMethod]
    public void MatthewsOfMoreClassesIsTheMulticlassForm()
    {
        // gold 0,1,2,0,1,2 against 0,2,1,0,0,2: s = 6, c = 3, t = (2,2,2), p = (3,1,2) → (3·6 − 12) / √((36 − 14)(36 − 12)).
        double[] gold = [0, 1, 2, 0, 1, 2], predicted = [0, 2, 1, 0, 0, 2];
        Assert.AreEqual(6 / Math.Sqrt(22 * 24), Metrics.MatthewsCorrelation(predicted, gold), 1e-12);
        // The same statistic as the correlation of the one-hot rows, summed over classes.
        double OneHotCovariance(double[] a, double[] b) => Enumerable.Range(0, 3).Sum(k =>
        {
            var x = a.Select(v => v == k ? 1.0 : 0).ToArray();
            var y = b.Select(v => v == k ? 1.0 : 0).ToArray();
            return x.Zip(y).Sum(q => (q.First - x.Average()) * (q.Second - y.Average()));
        });
        double expected = OneHotCovariance(predicted, gold) / Math.Sqrt(OneHotCovariance(predicted, predicted) * OneHotCovariance(gold, gold));
        Assert.AreEqual(expected, Metrics.MatthewsCorrelation(predicted, gold), 1e-12);
        Assert.AreEqual(1.0, Metrics.MatthewsCorrelation(gold, gold), 1e-12);
    }

    [TestMethod]
    public void PearsonAndSpearman()
    {
        // x = 1..5, y = 2,4,5,4,5: Σdxdy = 6, Σdx² = 10, Σdy² = 6 → r = 6/√60.
        Assert.AreEqual(6 / Math.Sqrt(60), Metrics.Pearson([1, 2, 3, 4, 5], [2, 4, 5, 4, 5]), 1e-12);
        Assert.AreEqual(0.0, Metrics.Pearson([1, 1, 1], [1, 2, 3]), 1e-12);
        // Monotone but not linear: Spearman 1, Pearson below 1.
        Assert.AreEqual(1.0, Metrics.Spearman([1, 2, 3, 4], [1, 10, 100, 1000]), 1e-12);
        // Ties share their mean rank: y ranks 1, 2.5, 2.5, 4 against x ranks 1..4 → r = 4.5 / √(5·4.5).
        Assert.AreEqual(4.5 / Math.Sqrt(5 * 4.5), Metrics.Spearman([1, 2, 3, 4], [0, 7, 7, 9]), 1e-12);
    }

    [TestMethod]
    public void ComputeDispatchesOnTheMetric()
    {
        Assert.AreEqual(Metrics.F1(Predicted, Gold), Metrics.Compute(ValidationMetric.F1, Predicted, Gold, TaskKind.Classification));
        Assert.AreEqual(Metrics.Accuracy(Predicted, Gold), Metrics.Compute(ValidationMetric.Default, Predicted, Gold, TaskKind.Classification));
        Assert.AreEqual(Metrics.Pearson(Predicted, Gold), Metrics.Compute(ValidationMetric.Default, Predicted, Gold, TaskKind.Regression));
    }

    [TestMethod]
    public void LossIsTheMeanCrossEntropyOrSquaredError()
    {
        float[][] probabilities = [[0.7f, 0.2f, 0.1f], [0.25f, 0.25f, 0.5f]];
        double expected = -(Math.Log(0.7f) + Math.Log(0.25f)) / 2;
        Assert.AreEqual(expected, Metrics.Loss(probabilities, [0, 1], TaskKind.Classification), 1e-12);
        Assert.AreEqual((0.25 + 4) / 2, Metrics.Loss([[1.5f], [0f]], [1, 2], TaskKind.Regression), 1e-12);
        Assert.IsFalse(Metrics.HigherIsBetter(ValidationMetric.Loss));
        Assert.IsTrue(Metrics.HigherIsBetter(ValidationMetric.Accuracy));
    }
}
