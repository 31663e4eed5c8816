using static TorchSharp.torch;

namespace MlNetPeft.Backbone;

/// <summary>Adding a low-rank product to a projection's output.</summary>
internal static class LowRank
{
    /// <summary>y + alpha·h·up over the last dimension, as one addmm (the add and the scaling ride in the GEMM: on a
    /// GPU every op is a launch and an autograd node, and a training step there is bound by their count).</summary>
    public static Tensor AddTo(Tensor y, Tensor h, Tensor up, float alpha = 1) => y.dim() == 2
        ? y.addmm(h, up, 1, alpha)
        : y.view(-1, y.shape[^1]).addmm(h.reshape(-1, h.shape[^1]), up, 1, alpha).view(y.shape);
}
