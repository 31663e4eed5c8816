namespace MlNetPeft.Training;

/// <summary>Which validation score picks the best epoch (and drives early stopping).</summary>
public enum ValidationMetric
{
    /// <summary>Accuracy for classification, Pearson r for regression.</summary>
    Default,
    /// <summary>Fraction of exact matches.</summary>
    Accuracy,
    /// <summary>Matthews correlation (CoLA's metric; with more than two classes its multiclass form).</summary>
    MatthewsCorrelation,
    /// <summary>F1 of class 1 (MRPC).</summary>
    F1,
    /// <summary>Pearson correlation (STS-B).</summary>
    Pearson,
    /// <summary>Spearman rank correlation.</summary>
    Spearman,
    /// <summary>The task's loss on the validation rows (cross-entropy, or mean squared error): lower is better, as HF's
    /// default metric_for_best_model.</summary>
    Loss,
}

/// <summary>Task metrics over predictions and gold values, as GLUE defines them.</summary>
public static class Metrics
{
    /// <summary>Why <paramref name="metric"/> cannot score a task of <paramref name="classes"/> classes (1 for
    /// regression), or null when it can: the exact-match accuracy of real values, a correlation of class indices, or a
    /// two-class score over more classes would pick the best epoch by noise.</summary>
    public static string? Mismatch(ValidationMetric metric, TaskKind task, int classes) => (metric, task) switch
    {
        (ValidationMetric.Accuracy or ValidationMetric.MatthewsCorrelation or ValidationMetric.F1, TaskKind.Regression) =>
            $"ValidationMetric {metric} is for classification; for regression use Pearson, Spearman or Loss",
        (ValidationMetric.Pearson or ValidationMetric.Spearman, TaskKind.Classification) =>
            $"ValidationMetric {metric} is for regression; for classification use Accuracy, MatthewsCorrelation, F1 (two classes) or Loss",
        (ValidationMetric.F1, _) when classes > 2 =>
            $"ValidationMetric F1 scores two classes (the second one positive), but the label has {classes}; use Accuracy, MatthewsCorrelation or Loss",
        _ => null,
    };

    /// <summary>Whether a larger value of <paramref name="metric"/> is better (all but the loss).</summary>
    public static bool HigherIsBetter(ValidationMetric metric) => metric != ValidationMetric.Loss;

    /// <summary>Mean cross-entropy of class probabilities (one row per example) against the gold class indices, or for
    /// regression (one value per row) the mean squared error.</summary>
    public static double Loss(IReadOnlyList<float[]> outputs, IReadOnlyList<double> gold, TaskKind task)
    {
        if (outputs.Count != gold.Count) throw new ArgumentException($"{outputs.Count} outputs against {gold.Count} gold values");
        return outputs.Zip(gold).Average(p => task == TaskKind.Regression
            ? (p.First[0] - p.Second) * (p.First[0] - p.Second)
            : -Math.Log(Math.Max(p.First[(int)p.Second], float.Epsilon)));
    }

    public static double Compute(ValidationMetric metric, IReadOnlyList<double> predicted, IReadOnlyList<double> gold, TaskKind task) => metric switch
    {
        ValidationMetric.Accuracy => Accuracy(predicted, gold),
        ValidationMetric.MatthewsCorrelation => MatthewsCorrelation(predicted, gold),
        ValidationMetric.F1 => F1(predicted, gold),
        ValidationMetric.Pearson => Pearson(predicted, gold),
        ValidationMetric.Spearman => Spearman(predicted, gold),
        _ => task == TaskKind.Regression ? Pearson(predicted, gold) : Accuracy(predicted, gold),
    };

    /// <summary>Fraction of exact matches.</summary>
    public static double Accuracy(IReadOnlyList<double> predicted, IReadOnlyList<double> gold)
    {
        CheckSameLength(predicted, gold);
        return predicted.Zip(gold).Count(p => p.First == p.Second) / (double)Math.Max(gold.Count, 1);
    }

    /// <summary>Matthews correlation coefficient (0 when undefined). For two classes the usual (tp·tn − fp·fn) / √…; for
    /// more, its multiclass form (Gorodkin's R_K, as scikit-learn's matthews_corrcoef):
    /// (c·s − Σ p_k·t_k) / √((s² − Σ p_k²)(s² − Σ t_k²)), with s rows, c of them right, p_k predicted and t_k true of class k.</summary>
    public static double MatthewsCorrelation(IReadOnlyList<double> predicted, IReadOnlyList<double> gold)
    {
        CheckSameLength(predicted, gold);
        double s = gold.Count, correct = predicted.Zip(gold).Count(p => p.First == p.Second);
        var p = predicted.GroupBy(v => v).ToDictionary(g => g.Key, g => (double)g.Count());
        var t = gold.GroupBy(v => v).ToDictionary(g => g.Key, g => (double)g.Count());
        double agreement = t.Sum(k => k.Value * p.GetValueOrDefault(k.Key));
        double d = (s * s - p.Values.Sum(n => n * n)) * (s * s - t.Values.Sum(n => n * n));
        return d == 0 ? 0 : (correct * s - agreement) / Math.Sqrt(d);
    }

    /// <summary>F1 score of class 1 (0 when there are no true positives).</summary>
    public static double F1(IReadOnlyList<double> predicted, IReadOnlyList<double> gold)
    {
        var (tp, _, fp, fn) = Confusion(predicted, gold);
        return tp == 0 ? 0 : 2 * tp / (2 * tp + fp + fn);
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

    /// <summary>Spearman rank correlation: Pearson of the ranks, ties sharing their average rank.</summary>
    public static double Spearman(IReadOnlyList<double> x, IReadOnlyList<double> y)
    {
        CheckSameLength(x, y);
        return Pearson(Ranks(x), Ranks(y));
    }

    private static double[] Ranks(IReadOnlyList<double> values)
    {
        var order = Enumerable.Range(0, values.Count).OrderBy(i => values[i]).ToArray();
        var ranks = new double[values.Count];
        for (int start = 0; start < order.Length;)
        {
            int end = start;
            while (end + 1 < order.Length && values[order[end + 1]] == values[order[start]]) end++;
            for (int k = start; k <= end; k++) ranks[order[k]] = (start + end) / 2.0 + 1;
            start = end + 1;
        }
        return ranks;
    }

    private static (double Tp, double Tn, double Fp, double Fn) Confusion(IReadOnlyList<double> predicted, IReadOnlyList<double> gold)
    {
        CheckSameLength(predicted, gold);
        double tp = 0, tn = 0, fp = 0, fn = 0;
        for (int i = 0; i < gold.Count; i++)
        {
            bool p = predicted[i] == 1, g = gold[i] == 1;
            if (p && g) tp++; else if (!p && !g) tn++; else if (p) fp++; else fn++;
        }
        return (tp, tn, fp, fn);
    }

    private static void CheckSameLength(IReadOnlyList<double> a, IReadOnlyList<double> b)
    {
        if (a.Count != b.Count) throw new ArgumentException($"{a.Count} predictions for {b.Count} gold values");
    }
}
