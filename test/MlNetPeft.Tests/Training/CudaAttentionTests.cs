using MlNetPeft.Training;

namespace MlNetPeft.Tests.Training;

/// <summary>The switch that keeps attention off cuDNN reaches libtorch's own flag (what
/// torch.backends.cuda.enable_cudnn_sdp sets); its effect needs a GPU, the plumbing does not.</summary>
[TestClass]
public sealed class CudaAttentionTests
{
    [TestMethod]
    public void TurnsLibtorchsCudnnAttentionFlagOffUnlessAskedToKeepIt()
    {
        using var loaded = TorchSharp.torch.zeros(1); // libtorch loaded
        bool before = CudaAttention.CudnnEnabled;
        try
        {
            CudaAttention.Enable(true);
            Assert.IsFalse(CudaAttention.Apply("1"), "MLNETPEFT_CUDNN_ATTENTION=1 keeps libtorch's choice");
            Assert.IsTrue(CudaAttention.CudnnEnabled);
            Assert.IsTrue(CudaAttention.Apply(null));
            Assert.IsFalse(CudaAttention.CudnnEnabled, "cuDNN attention off");
        }
        finally
        {
            CudaAttention.Enable(before);
        }
    }
}
