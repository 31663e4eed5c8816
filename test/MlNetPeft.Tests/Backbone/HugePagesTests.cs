using MlNetPeft.Backbone;
using static TorchSharp.torch;

namespace MlNetPeft.Tests.Backbone;

[TestClass]
public sealed class HugePagesTests
{
    /// <summary>A large CPU tensor is advised (the 2 MiB-aligned range inside it, which madvise refuses if misaligned)
    /// where Linux offers transparent huge pages; small, strided and other tensors are left alone. Loading parity
    /// (RobertaParityTests and the save/load tests) shows the advised weights read as before.</summary>
    [TestMethod]
    public void ALargeTensorIsAdvisedAndOthersAreLeftAlone()
    {
        bool offered = OperatingSystem.IsLinux() && File.Exists("/sys/kernel/mm/transparent_hugepage/enabled")
            && !File.ReadAllText("/sys/kernel/mm/transparent_hugepage/enabled").Contains("[never]");
        using var large = empty(16L << 20); // 64 MiB of fp32
        Assert.AreEqual(offered, HugePages.Advise(large));
        large.fill_(1.5f);
        Assert.AreEqual(1.5f * (16L << 20), large.sum().item<float>());
        using var small = empty(1024);
        Assert.IsFalse(HugePages.Advise(small));
        using var strided = empty(4096, 4096).t();
        Assert.IsFalse(HugePages.Advise(strided));
    }
}
