using TorchSharp;
using static TorchSharp.torch;

namespace MlNetPeft.Training;

/// <summary>A padded batch on the device. <see cref="Mask"/> is null when no row needed padding.</summary>
internal sealed record Batch(Tensor Ids, Tensor? Mask, Tensor Labels, int Rows);

/// <summary>Groups examples into batches padded to their own longest row (dynamic padding).</summary>
internal static class Batcher
{
    public static IEnumerable<int[]> Order(int count, int batchSize, Random? shuffle)
    {
        var order = Enumerable.Range(0, count).ToArray();
        shuffle?.Shuffle(order);
        for (int i = 0; i < count; i += batchSize) yield return order[i..Math.Min(i + batchSize, count)];
    }

    /// <summary>Builds the tensors of one batch (call inside a dispose scope).</summary>
    public static Batch Make(IReadOnlyList<Example> examples, int[] rows, int padId, Device device, TaskKind task)
    {
        int width = rows.Max(r => examples[r].Ids.Length);
        var ids = new long[rows.Length * width];
        var mask = new long[rows.Length * width];
        bool padded = false;
        for (int i = 0; i < rows.Length; i++)
        {
            var row = examples[rows[i]].Ids;
            for (int j = 0; j < width; j++)
            {
                bool real = j < row.Length;
                ids[i * width + j] = real ? row[j] : padId;
                mask[i * width + j] = real ? 1 : 0;
                padded |= !real;
            }
        }
        var idTensor = tensor(ids, [rows.Length, width]).to(device);
        var maskTensor = padded ? tensor(mask, [rows.Length, width]).to(device) : null;
        var labels = task == TaskKind.Regression
            ? tensor(rows.Select(r => examples[r].Label).ToArray()).to(device)
            : tensor(rows.Select(r => (long)examples[r].Label).ToArray()).to(device);
        return new Batch(idTensor, maskTensor, labels, rows.Length);
    }
}
