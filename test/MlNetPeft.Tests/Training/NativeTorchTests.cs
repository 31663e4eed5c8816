using MlNetPeft.Training;
using static TorchSharp.torch;

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

    /// <summary>
    /// TorchSharp 0.107 does not keep a Scalar argument alive through its native call, so a collection started by
    /// another thread could free `add_(1e-8)`'s scalars (and the alpha TorchSharp adds) while libtorch read them: 37
    /// failures in 363,000 calls here before the build patched TorchSharp.dll (build/TorchSharpKeepAlive.targets). With
    /// a thread collecting all along, every call must now succeed and add what the same calls add without it.
    /// </summary>
    [TestMethod]
    public void ScalarArgumentsOutliveTheirNativeCalls()
    {
        Assert.IsTrue(typeof(TorchSharp.torch).Assembly.GetManifestResourceNames().Contains("MlNetPeft.KeepAliveArguments"),
            "the build patched this program's TorchSharp.dll");
        var sum = zeros(4);
        bool stop = false;
        var collector = new Thread(() => { while (!Volatile.Read(ref stop)) { GC.Collect(); GC.WaitForPendingFinalizers(); } });
        collector.Start();
        int calls = 0;
        var failures = new List<string>();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        try
        {
            while (clock.Elapsed.TotalSeconds < 3)
            {
                try { sum.add_(1e-8); calls++; }
                catch (System.Runtime.InteropServices.ExternalException e) { failures.Add(e.Message.Split('\n')[0]); }
            }
        }
        finally
        {
            Volatile.Write(ref stop, true);
            collector.Join();
        }
        Assert.IsEmpty(failures, $"{failures.Count} of {calls + failures.Count} calls failed, first: {failures.FirstOrDefault()}");
        var quiet = zeros(4);
        for (int i = 0; i < calls; i++) quiet.add_(1e-8);
        Assert.IsTrue(sum.equal(quiet).all().item<bool>(), $"{calls} additions: {sum[0].item<float>()} against {quiet[0].item<float>()}");
    }

    [TestMethod]
    public void OtherFailuresAreNotRelabelled()
    {
        var other = new InvalidDataException("other");
        Assert.AreSame(other, Assert.ThrowsExactly<InvalidDataException>(() => NativeTorch.EnsureLoaded(() => throw other)));
    }
}
