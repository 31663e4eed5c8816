using System.Diagnostics;
using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetPeft.Bench;

/// <summary>
/// Peak memory since it was made or last reset: the process's peak working set on CPU (Linux resets it through
/// /proc/self/clear_refs, so each run of one process reads its own); on CUDA, the device memory in use as NVML
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
        if (device.type != DeviceType.CUDA)
        {
            Reset();
            return;
        }
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

    /// <summary>Starts a new peak from the memory in use now.</summary>
    public void Reset()
    {
        if (_device.type == DeviceType.CUDA)
        {
            Interlocked.Exchange(ref _gpuPeakBytes, 0);
            if (_sampler is not null) Sample();
        }
        else if (OperatingSystem.IsLinux())
        {
            // The library keeps glibc from returning freed memory (CpuAllocator), so an earlier run's peak would
            // stay resident and count again: hand what is free back first.
            GC.Collect();
            GC.WaitForPendingFinalizers();
            malloc_trim(0);
            try { File.WriteAllText("/proc/self/clear_refs", "5"); } // 5: reset the peak resident set size
            catch (IOException) { } // older kernels: the peak stays the process's own
            catch (UnauthorizedAccessException) { }
        }
    }

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

    [DllImport("libc")]
    private static extern int malloc_trim(nuint pad);

    [DllImport("libnvidia-ml.so.1")]
    private static extern int nvmlInit_v2();

    [DllImport("libnvidia-ml.so.1")]
    private static extern int nvmlDeviceGetHandleByIndex_v2(uint index, out IntPtr device);

    [DllImport("libnvidia-ml.so.1")]
    private static extern int nvmlDeviceGetMemoryInfo(IntPtr device, out NvmlMemory memory);
}
