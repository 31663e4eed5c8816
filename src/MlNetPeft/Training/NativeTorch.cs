using System.Runtime.CompilerServices;
using TorchSharp;

namespace MlNetPeft.Training;

/// <summary>
/// Loads libtorch, TorchSharp's native library, at the points where MlNetPeft first needs it (training and
/// <c>Model.Load</c>), so that a setup problem is one error that names the fix rather than a TypeInitializationException
/// from deep inside TorchSharp (the most reported problem with ML.NET's own TorchSharp trainers).
/// </summary>
internal static class NativeTorch
{
    public static void EnsureLoaded() => EnsureLoaded(() => RuntimeHelpers.RunClassConstructor(typeof(torch).TypeHandle));

    /// <summary>Runs <paramref name="load"/> and turns TorchSharp's failure into the error users can act on.</summary>
    internal static void EnsureLoaded(Action load)
    {
        try { load(); }
        catch (TypeInitializationException e)
        {
            var cause = (e.InnerException ?? e).Message.Split('\n')[0].Trim().TrimEnd('.');
            throw new InvalidOperationException(
                $"MlNetPeft could not load libtorch, TorchSharp's native library ({cause}). The application must reference " +
                "one native backend package of TorchSharp's version: TorchSharp-cpu, or TorchSharp-cuda-linux for an NVIDIA GPU. " +
                "If it does, and this is Debian 12 or another Linux whose libstdc++ predates GCC 13, TorchSharp's " +
                "libLibTorchSharp.so was not patched: build through the MlNetPeft NuGet package, whose build targets patch it, " +
                "or import MlNetPeft's build/TorchSharpNativeFix.targets in a project that references its source.", e);
        }
    }
}
