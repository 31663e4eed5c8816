using TorchSharp;
using static TorchSharp.torch;

namespace MlNetPeft.Backbone;

/// <summary>Copies HF checkpoint tensors into a <see cref="RobertaForSequenceClassification"/>.</summary>
internal static class CheckpointLoader
{
    /// <summary>
    /// Loads every <c>roberta.*</c> weight (a missing or mis-shaped one is an error naming the tensor and
    /// file) and, when <paramref name="loadHead"/>, the classifier (which must be there, with the model's classes).
    /// Keys saved from a bare RobertaModel (no <c>roberta.</c> prefix) are accepted too. F16/BF16 weights
    /// are converted to the model's dtype. Encoder weights that <paramref name="provided"/> says come from elsewhere (by
    /// name without "roberta." and shape: a <see cref="SharedBackbone"/>'s) are left unread.
    /// </summary>
    public static void Load(RobertaForSequenceClassification model, ITensorSource checkpoint, string source, bool loadHead,
        Func<string, long[], bool>? provided = null)
    {
        using var _ = no_grad();
        foreach (var (name, target) in model.state_dict())
        {
            bool isHead = name.StartsWith("classifier.", StringComparison.Ordinal);
            if (isHead && !loadHead) continue;
            if (!isHead && provided?.Invoke(name["roberta.".Length..], target.shape) == true) continue;
            HugePages.Advise(target); // before the first write to its memory (HugePages: the faults were a third of a load)
            if (checkpoint.TryReadInto(name, target) || (!isHead && checkpoint.TryReadInto(name["roberta.".Length..], target))) continue;
            using var tensor = checkpoint.Read(name) ?? (isHead ? null : checkpoint.Read(name["roberta.".Length..]));
            if (tensor is null)
                throw new InvalidDataException(isHead
                    ? $"{source}: missing tensor '{name}': the checkpoint has no classification head (not a RobertaForSequenceClassification)"
                    : $"{source}: missing tensor '{name}'");
            if (!tensor.shape.SequenceEqual(target.shape))
                throw new InvalidDataException($"{source}: tensor '{name}' has shape [{string.Join(",", tensor.shape)}], " +
                    (isHead ? "this data's head needs" : "the config needs") + $" [{string.Join(",", target.shape)}]");
            target.copy_(tensor);
        }
    }

    public static void Load(RobertaForSequenceClassification model, IReadOnlyDictionary<string, Tensor> checkpoint, string source, bool loadHead)
    {
        using var tensors = new TensorDictionary(checkpoint);
        Load(model, tensors, source, loadHead);
    }

    public static void Load(RobertaForSequenceClassification model, string weightsFile, bool loadHead)
    {
        using var tensors = TensorFile.Open(weightsFile);
        Load(model, tensors, weightsFile, loadHead);
    }
}
