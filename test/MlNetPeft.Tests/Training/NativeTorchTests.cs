using MlNetPeft.Training;

namespace MlNetPeft.Tests.Training;

[TestClass]
public sealed class NativeTorchTests
{
    [TestMethod]
    public void LoadedLibtorchPassesThrough() => NativeTorch.EnsureLoaded();

    [TestMethod]
    public void MissingBackendNamesThePackagesAndTheDebianFix()
    {
        // What TorchSharp 0.107 throws when the application has no backend package, or on Debian 12 unpatched.
        var torchSharp = new TypeInitializationException("TorchSharp.torch", new NotSupportedException(
            "This application or script uses TorchSharp but doesn't contain a reference to libtorch-cpu-linux-x64, Version=2.10.0.0.\n\nConsider ..."));
        var e = Assert.ThrowsExactly<InvalidOperationException>(() => NativeTorch.EnsureLoaded(() => throw torchSharp));
        foreach (var part in new[] { "doesn't contain a reference to libtorch-cpu-linux-x64", "TorchSharp-cpu", "TorchSharp-cuda-linux", "Debian 12", "TorchSharpNativeFix.targets" })
            StringAssert.Contains(e.Message, part);
        Assert.DoesNotContain("Consider", e.Message, "only the first line of TorchSharp's long message");
        Assert.AreSame(torchSharp, e.InnerException);
    }

    [TestMethod]
    public void OtherFailuresAreNotRelabelled()
    {
        var other = new InvalidDataException("other");
        Assert.AreSame(other, Assert.ThrowsExactly<InvalidDataException>(() => NativeTorch.EnsureLoaded(() => throw other)));
    }
}
