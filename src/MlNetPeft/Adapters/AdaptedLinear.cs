using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetPeft.Adapters;

/// <summary>
/// A frozen Linear (kept as <c>base_layer</c>, as PEFT names it) plus a sum of updates. The updates are
/// owned by the method's <see cref="AdapterSet"/>, not registered here, because MSPLoRA shares one update
/// between many layers and each parameter must appear once in the optimizer and the saved state.
/// </summary>
internal sealed class AdaptedLinear : nn.Module<Tensor, Tensor>
{
    private readonly Linear base_layer;
    private readonly IReadOnlyList<IWeightDelta> _updates;
    private bool _merged;

    public AdaptedLinear(Linear baseLayer, IReadOnlyList<IWeightDelta> updates) : base(nameof(AdaptedLinear))
    {
        base_layer = baseLayer;
        _updates = updates;
        register_module(nameof(base_layer), base_layer);
    }

    public Linear BaseLayer => base_layer;
    public IReadOnlyList<IWeightDelta> Updates => _updates;
    public bool IsMerged => _merged;

    public override Tensor forward(Tensor x)
    {
        var y = base_layer.call(x);
        if (_merged) return y;
        foreach (var update in _updates) y = y.add(update.call(x));
        return y;
    }

    /// <summary>Folds every update into the base weight (inference only: the updates stop training).</summary>
    public void Merge()
    {
        if (_merged) return;
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var weight = base_layer.weight!;
        foreach (var update in _updates) weight.add_(update.DeltaWeight().to(weight.dtype));
        _merged = true;
    }
}
