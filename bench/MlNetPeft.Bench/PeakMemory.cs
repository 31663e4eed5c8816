using System.Diagnostics;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetPeft.Bench;

/// <summary>
/// Peak memory while it lives: the process's peak working set on CPU; on CUDA, the GPU memory nvidia-smi reports,
/// sampled every 50 ms (TorchSharp exposes no allocator statistics).
/// </summary>
internal sealed class PeakMemory : IDisposable
{
    private readonly Device _device;
    private readonly Timer? _sampler;
    private long _gpuPeakMiB;

    public PeakMemory(Device device)
    {
        _device = device;
        if (device.type == DeviceType.CUDA) _sampler = new Timer(_ => Sample(), null, 0, 50);
    }

    public double PeakGiB => _device.type == DeviceType.CUDA
        ? Interlocked.Read(ref _gpuPeakMiB) / 1024.0
        : Process.GetCurrentProcess().PeakWorkingSet64 / (double)(1L << 30);

    private void Sample()
    {
        try
        {
            using var p = Process.Start(new ProcessStartInfo("nvidia-smi", "--query-gpu=memory.used --format=csv,noheader,nounits")
                { RedirectStandardOutput = true });
            if (p is null) return;
            var text = p.StandardOutput.ReadToEnd();
            p.WaitForExit();
            if (long.TryParse(text.Split('\n')[0].Trim(), out var mib))
            {
                long seen;
                while (mib > (seen = Interlocked.Read(ref _gpuPeakMiB)) && Interlocked.CompareExchange(ref _gpuPeakMiB, mib, seen) != seen) { }
            }
        }
        catch (System.ComponentModel.Win32Exception) { } // no nvidia-smi: report 0
    }

    public void Dispose() => _sampler?.Dispose();
}
