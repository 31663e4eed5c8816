namespace MlNetPeft.Training;

/// <summary>What the head predicts: class logits (cross-entropy) or one value (mean squared error).</summary>
public enum TaskKind
{
    /// <summary>Multiclass classification: one logit per class.</summary>
    Classification,

    /// <summary>Regression: a single output.</summary>
    Regression,
}
