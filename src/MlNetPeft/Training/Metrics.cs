namespace MlNetPeft.Training;

/// <summary>Task metrics over predictions and gold values (GLUE's definitions).</summary>
public static class Metrics
{
    /// <summary>Fraction of exact matches.</summary>
    public static double Accuracy(IReadOnlyList<double> predicted, IReadOnlyList<double> gold)
    {
        CheckSameLength(predicted, gold);
        return predicted.Zip(gold).Count(p => p.First == p.Second) / (double)Math.Max(gold.Count, 1);
    }

    /// <summary>Pearson correlation coefficient (0 when either side is constant).</summary>
    public static double Pearson(IReadOnlyList<double> x, IReadOnlyList<double> y)
    {
        CheckSameLength(x, y);
        double mx = x.Average(), my = y.Average(), sxy = 0, sxx = 0, syy = 0;
        for (int i = 0; i < x.Count; i++)
        {
            double dx = x[i] - mx, dy = y[i] - my;
            sxy += dx * dy; sxx += dx * dx; syy += dy * dy;
        }
        return sxx == 0 || syy == 0 ? 0 : sxy / Math.Sqrt(sxx * syy);
    }

    private static void CheckSameLength(IReadOnlyList<double> a, IReadOnlyList<double> b)
    {
        if (a.Count != b.Count) throw new ArgumentException($"{a.Count} predictions for {b.Count} gold values");
    }
}
