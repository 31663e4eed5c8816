using static TorchSharp.torch;

namespace MlNetPeft.Adapters;

/// <summary>
/// Adapter dropout for LoRA pairs run as one (MSPLoRA's global, mid and layer pairs of a projection): each pair draws
/// its own mask, as separate PEFT adapters do and the MSPLoRA authors' code does. The input is dropped once as P copies
/// side by side [.., P·in], and each pair's A rows keep only their own copy's block of a block-diagonal
/// down-projection [Σr, P·in], so one dropout and one GEMM still give every pair's rank-space activations (on a GPU,
/// where a training step is bound by the number of ops, not a dropout and a GEMM per pair).
/// </summary>
internal sealed class PairDropout : IDisposable
{
    private readonly DeviceConstant _blocks; // [Σr, P, 1]: 1 where a row of the stacked A's belongs to pair p
    private readonly int _pairs;

    public PairDropout(IReadOnlyList<int> ranks)
    {
        _pairs = ranks.Count;
        int rows = ranks.Sum();
        var blocks = new float[rows * _pairs];
        int row = 0;
        for (int p = 0; p < _pairs; p++)
            for (int r = 0; r < ranks[p]; r++, row++) blocks[row * _pairs + p] = 1;
        _blocks = new DeviceConstant(blocks, [rows, _pairs, 1]);
    }

    /// <summary>Stacked A's [.., Σr, in] laid out block-diagonally, [.., Σr, P·in].</summary>
    public Tensor BlockDiagonal(Tensor down) => down.unsqueeze(-2).mul(_blocks.On(down.device, down.dtype)).flatten(-2);

    /// <summary>P copies of <paramref name="x"/> [.., in], each dropped with a mask of its own, side by side [.., P·in].</summary>
    public Tensor DroppedCopies(Tensor x, Func<Tensor, Tensor> dropout)
    {
        var shape = x.shape.ToArray();
        // Expanded, not repeated: the dropout's output is the first copy made (the input is read P times).
        return dropout(x.unsqueeze(-2).expand([.. shape[..^1], _pairs, shape[^1]])).flatten(-2);
    }

    public void Dispose() => _blocks.Dispose();
}
