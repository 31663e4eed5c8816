using TorchSharp;
using static TorchSharp.torch;

namespace MlNetPeft.Training;

/// <summary>A padded batch on the device. <see cref="Mask"/> is null when no row needed padding, <see cref="Weights"/>
/// when every row weighs 1.</summary>
internal sealed record Batch(Tensor Ids, Tensor? Mask, Tensor Labels, int Rows, RowWeights? Weights = null)
{
    /// <summary>The batch's share of a step's loss: its rows' total weight (its row count when unweighted).</summary>
    public double Weight => Weights?.Sum ?? Rows;
}

/// <summary>Per-row loss weights on the device, and their sum (on the host, so no step waits for the device).</summary>
internal sealed record RowWeights(Tensor Values, double Sum);

/// <summary>Groups examples into batches padded to their own longest row (dynamic padding).</summary>
internal static class Batcher
{
    /// <summary>Rows per batch, in order (no <paramref name="shuffle"/>) or shuffled. With <paramref name="lengths"/>,
    /// rows of similar length are batched together (sorted within random windows of 50 batches, batch order shuffled),
    /// so less compute goes into padding.</summary>
    public static IEnumerable<int[]> Order(int count, int batchSize, Random? shuffle, IReadOnlyList<int>? lengths = null)
    {
        var order = Enumerable.Range(0, count).ToArray();
        shuffle?.Shuffle(order);
        if (lengths is null)
        {
            for (int i = 0; i < count; i += batchSize) yield return order[i..Math.Min(i + batchSize, count)];
            yield break;
        }
        var batches = new List<int[]>();
        int window = batchSize * 50;
        for (int w = 0; w < count; w += window)
        {
            var sorted = order[w..Math.Min(w + window, count)].OrderByDescending(i => lengths[i]).ToArray();
            for (int i = 0; i < sorted.Length; i += batchSize) batches.Add(sorted[i..Math.Min(i + batchSize, sorted.Length)]);
        }
        var batchOrder = batches.ToArray();
        shuffle?.Shuffle(batchOrder);
        foreach (var batch in batchOrder) yield return batch;
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
        var idTensor = Upload(tensor(ids, [rows.Length, width]), device);
        var maskTensor = padded ? Upload(tensor(mask, [rows.Length, width]), device) : null;
        var labels = task == TaskKind.Regression
            ? Upload(tensor(rows.Select(r => examples[r].Label).ToArray()), device)
            : Upload(tensor(rows.Select(r => (long)examples[r].Label).ToArray()), device);
        RowWeights? weights = null;
        if (rows.Any(r => examples[r].Weight != 1))
        {
            var values = rows.Select(r => examples[r].Weight).ToArray();
            weights = new RowWeights(Upload(tensor(values), device), values.Sum(w => (double)w));
        }
        return new Batch(idTensor, maskTensor, labels, rows.Length, weights);
    }

    /// <summary>To the GPU through pinned memory without waiting (the copy overlaps the previous step); a no-op on CPU.</summary>
    private static Tensor Upload(Tensor host, Device device) =>
        device.type == DeviceType.CPU ? host : host.pin_memory().to(device, non_blocking: true);
}
