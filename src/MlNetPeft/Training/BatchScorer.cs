using MlNetPeft.Adapters;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetPeft.Training;

/// <summary>
/// Model outputs for many rows: rows of similar length batched together (longest first), one forward pass per
/// batch, results in the rows' own order. Class probabilities (softmax), the raw logits, or the regression value per row.
/// </summary>
internal static class BatchScorer
{
    /// <summary>Call with the model in evaluation mode (dropout off). <paramref name="logits"/>: a classifier's raw
    /// logits rather than its probabilities.</summary>
    public static float[][] Outputs(PeftModel model, IReadOnlyList<Example> rows, int batchSize, int padId, TaskKind task, bool logits = false)
    {
        var result = new float[rows.Count][];
        using var _ = inference_mode();
        var lengths = rows.Select(e => e.Ids.Length).ToArray();
        foreach (var batchRows in Batcher.Order(rows.Count, batchSize, null, lengths))
        {
            using var scope = NewDisposeScope();
            var batch = Batcher.Make(rows, batchRows, padId, model.Device, task);
            var output = model.Forward(batch.Ids, batch.Mask);
            if (task == TaskKind.Classification && !logits) output = output.softmax(-1);
            var values = output.cpu().data<float>().ToArray();
            int width = (int)output.shape[1];
            for (int i = 0; i < batchRows.Length; i++) result[batchRows[i]] = values[(i * width)..((i + 1) * width)];
        }
        return result;
    }
}
