using MlNetPeft.Adapters;
using MlNetPeft.Backbone;

namespace MlNetPeft.Bench;

/// <summary>
/// Matmul FLOPs of one batch as MlNetPeft computes it. Forward: 2·(4H² + 2·H·I) per token per layer for the dense
/// layers plus 4·T·H per token per layer for attention (QKᵀ and AV); the last layer computes only key and value for
/// every token and the rest for the &lt;s&gt; token alone (the head reads nothing else). Adapters' own matmuls are
/// counted for every token (a slight over-count in the last layer); the head is negligible. Full fine-tuning
/// training counts 3× the forward (the usual 6·params·tokens); adapter training counts the forward, the backward
/// through the frozen backbone for activation gradients only (1× the forward), and 3× the adapters' matmuls.
/// </summary>
internal static class Flops
{
    public static (double Forward, double Train) For(RobertaConfig c, PeftModel model, string method, int batch, int seq)
    {
        double tokens = (double)batch * seq;
        double dense = 2.0 * (4.0 * c.HiddenSize * c.HiddenSize + 2.0 * c.HiddenSize * c.IntermediateSize);
        double attention = 4.0 * seq * c.HiddenSize;
        double keyValue = 2.0 * 2.0 * c.HiddenSize * c.HiddenSize;
        double lastLayer = tokens * keyValue + batch * (dense - keyValue + attention);
        double backbone = tokens * (c.NumHiddenLayers - 1) * (dense + attention) + lastLayer;
        double adapters = tokens * 2.0 * model.Adapters.Wrapped.Sum(w => w.Linear.Updates.Sum(AdapterMatmulWeights));
        double forward = backbone;
        double train = method == "full" ? 3 * backbone : 2 * backbone + 3 * adapters;
        return (forward, train);
    }

    /// <summary>Weights an update multiplies per token (its factors' sizes), shared factors counted at each use.</summary>
    private static double AdapterMatmulWeights(IWeightDelta update) =>
        ((TorchSharp.torch.nn.Module)update).parameters().Where(p => p.dim() == 2).Sum(p => (double)p.numel());
}
