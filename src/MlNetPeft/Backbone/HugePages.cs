using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetPeft.Backbone;

/// <summary>
/// Asks Linux to back a large CPU tensor that is about to be filled with transparent huge pages (2 MiB) rather than
/// 4 KiB ones, as libtorch's THP_MEM_ALLOC_ENABLE does for all of its allocations. Memory is given its pages on the
/// first write, a page fault each: for a model being loaded, whose parameters are allocated and not yet written, those
/// faults were a third of the load (a roberta-base LoRA zip, 2-core CPU, three loads in fresh processes: the first
/// 3.41–3.45 s, advised 2.74–2.97 s; the next ones 1.5–1.7 and 0.9 s, advised 0.9–1.1 and 0.4–0.7 s; the same
/// memory). Memory already written keeps its pages, so this only helps where it is first.
/// </summary>
internal static class HugePages
{
    private const int MadvHugePage = 14;
    private const long HugePage = 2 << 20;
    private static bool _unavailable = !OperatingSystem.IsLinux();

    /// <summary>Advises the whole 2 MiB pages inside <paramref name="tensor"/>'s memory, and says whether it did: not
    /// for a tensor under two of them, on another device or not contiguous, on another system, or where the kernel
    /// refuses (transparent huge pages set to "never", say).</summary>
    public static unsafe bool Advise(Tensor tensor)
    {
        if (_unavailable || tensor.device_type != DeviceType.CPU || !tensor.is_contiguous()) return false;
        long bytes = tensor.numel() * tensor.ElementSize;
        if (bytes < 2 * HugePage || bytes > int.MaxValue) return false; // the latter: no span reaches it
        fixed (byte* data = tensor.bytes)
        {
            long start = ((long)data + HugePage - 1) & ~(HugePage - 1), end = ((long)data + bytes) & ~(HugePage - 1);
            try { return end > start && MAdvise((nint)start, (nuint)(end - start), MadvHugePage) == 0; }
            catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
            {
                _unavailable = true; // not a libc that has it
                return false;
            }
        }
    }

    [DllImport("libc", EntryPoint = "madvise")]
    private static extern int MAdvise(nint address, nuint length, int advice);
}
