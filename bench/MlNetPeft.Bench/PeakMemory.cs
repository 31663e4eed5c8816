using System.Diagnostics;
using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetPeft.Bench;

/// <summary>
/// Peak memory while it lives: the process's peak working set on CPU; on CUDA, the device memory in use as NVML
/// (nvidia-smi's library) reports it, context included, sampled every 50 ms in-process (TorchSharp exposes no
/// allocator statistics, and starting nvidia-smi that often would itself slow the run down).
/// </summary>
internal sealed class PeakMemory : IDisposable
{
    private readonly Device _device;
    private readonly Timer? _sampler;
    private readonly IntPtr _gpu;
    private long _gpuPeakBytes;

    public PeakMemory(Device device)
    {
        _device = device;
        if (device.type != DeviceType.CUDA) return;
        try
        {
            if (nvmlInit_v2() != 0 || nvmlDeviceGetHandleByIndex_v2((uint)Math.Max(0, (int)device.index), out _gpu) != 0) return;
        }
        catch (DllNotFoundException) { return; } // no NVML: report 0
        _sampler = new Timer(_ => Sample(), null, 0, 50);
    }

    public double PeakGiB => _device.type == DeviceType.CUDA
        ? Interlocked.Read(ref _gpuPeakBytes) / (double)(1L << 30)
        : Process.GetCurrentProcess().PeakWorkingSet64 / (double)(1L << 30);

    private void Sample()
    {
        if (nvmlDeviceGetMemoryInfo(_gpu, out var info) != 0) return;
        long used = (long)info.Used, seen;
        while (used > (seen = Interlocked.Read(ref _gpuPeakBytes)) && Interlocked.CompareExchange(ref _gpuPeakBytes, used, seen) != seen) { }
    }

    public void Dispose()
    {
        if (_sampler is null) return;
        using (var stopped = new ManualResetEvent(false))
            if (_sampler.Dispose(stopped)) stopped.WaitOne();
        Sample();
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct NvmlMemory
    {
        public ulong Total, Free, Used;
    }

    [DllImport("libnvidia-ml.so.1")]
    private static extern int nvmlInit_v2();

    [DllImport("libnvidia-ml.so.1")]
    private static extern int nvmlDeviceGetHandleByIndex_v2(uint index, out IntPtr device);

    [DllImport("libnvidia-ml.so.1")]
    private static extern int nvmlDeviceGetMemoryInfo(IntPtr device, out NvmlMemory memory);
}
