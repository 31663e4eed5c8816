using System.Runtime.InteropServices;

namespace MlNetPeft.Training;

/// <summary>
/// Keeps PyTorch's attention off cuDNN on the GPU, where cuDNN builds a plan for every new batch shape.
/// </summary>
/// <remarks>
/// On Hopper and newer GPUs with a recent cuDNN, libtorch tries cuDNN's fused attention first. cuDNN builds an
/// execution plan for every (batch, sequence length) it has not seen, reported at 0.4–0.5 s forward and as much
/// backward per new shape, and dynamic padding gives most batches a new length: the likely cause of the slow first
/// steps and first validation pass measured on an H100. Flash and memory-efficient attention need no plans. This is
/// <c>torch.backends.cuda.enable_cudnn_sdp(False)</c>, which TorchSharp 0.107 does not expose, called on libtorch's
/// context directly; applied once, on Linux, when a model is first placed on a CUDA device. Set
/// <c>MLNETPEFT_CUDNN_ATTENTION=1</c> to keep libtorch's choice.
/// </remarks>
internal static class CudaAttention
{
    private static int _applied;

    public static void AvoidCudnnPlans()
    {
        if (Interlocked.Exchange(ref _applied, 1) == 1) return;
        Apply(Environment.GetEnvironmentVariable("MLNETPEFT_CUDNN_ATTENTION"));
    }

    /// <summary>Turns cuDNN attention off unless <paramref name="keepCudnn"/> is "1"; false where libtorch's
    /// switch cannot be reached (not Linux, or a libtorch without that symbol), which leaves libtorch's choice.</summary>
    internal static bool Apply(string? keepCudnn)
    {
        if (keepCudnn == "1" || !OperatingSystem.IsLinux()) return false;
        try
        {
            SetSdpUseCudnn(GlobalContext(), false);
            return true;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return false;
        }
    }

    /// <summary>libtorch's cuDNN-attention switch (true unless turned off).</summary>
    internal static bool CudnnEnabled => UserEnabledCudnnSdp(GlobalContext());

    internal static void Enable(bool on) => SetSdpUseCudnn(GlobalContext(), on);

    // at::globalContext() and at::Context's setter/getter (Itanium C++ ABI: `this` is the first argument).
    [DllImport("libtorch_cpu", EntryPoint = "_ZN2at13globalContextEv")]
    private static extern IntPtr GlobalContext();

    [DllImport("libtorch_cpu", EntryPoint = "_ZN2at7Context14setSDPUseCuDNNEb")]
    private static extern void SetSdpUseCudnn(IntPtr context, [MarshalAs(UnmanagedType.U1)] bool enabled);

    [DllImport("libtorch_cpu", EntryPoint = "_ZNK2at7Context19userEnabledCuDNNSDPEv")]
    [return: MarshalAs(UnmanagedType.U1)]
    private static extern bool UserEnabledCudnnSdp(IntPtr context);
}
