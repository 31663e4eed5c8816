using Microsoft.ML.Runtime;
using MlNetPeft.Training;
using static TorchSharp.torch;

namespace MlNetPeft.MlNet;

/// <summary>ML.NET's GPU settings (<c>MLContext.GpuDeviceId</c>, <c>MLContext.FallbackToCpu</c>), which its own
/// TorchSharp and ONNX components follow, applied to MlNetPeft's device choice.</summary>
internal static class MlContextGpu
{
    public static Device SelectDevice(IHostEnvironment env, ComputeDevice choice) =>
        env is IHostEnvironmentInternal settings
            ? ComputeSelection.SelectDevice(choice, settings.GpuDeviceId, settings.FallbackToCpu)
            : ComputeSelection.SelectDevice(choice);
}
