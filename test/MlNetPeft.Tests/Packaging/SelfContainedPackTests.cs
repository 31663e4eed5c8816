namespace MlNetPeft.Tests.Packaging;

/// <summary>
/// The bench as ../shared/gpu/pack.sh publishes it for the GPU machine, which has no .NET: self-contained with the
/// framework trimmed (bench/MlNetPeft.Bench/MlNetPeft.Bench.csproj). Trimming can remove what reflection needs at run
/// time, so the published program itself must load the HF fixture and pass its parity check.
/// </summary>
[TestClass]
public sealed class SelfContainedPackTests
{
    [TestMethod]
    public void TrimmedSelfContainedBenchPassesTheParityCheck()
    {
        var dir = TestFolders.Create("mlnetpeft-selfcontained");
        ChildProcess.Run("dotnet", TestData.RepoRoot, "publish", "bench/MlNetPeft.Bench/MlNetPeft.Bench.csproj", "-c", "Release",
            "-r", "linux-x64", "--self-contained", "true", "-o", dir);

        // Without libtorch (the GPU machine brings its own), untrimmed it is about 91 MB; trimmed about 41 MB.
        var managed = new DirectoryInfo(dir).EnumerateFiles()
            .Where(f => !f.Name.StartsWith("libtorch") && !f.Name.StartsWith("libc10") && !f.Name.StartsWith("libgomp"))
            .Sum(f => f.Length);
        Assert.IsLessThan(50_000_000L, managed, $"published bench without libtorch is {managed:N0} bytes: not trimmed?");

        var output = ChildProcess.Run(Path.Combine(dir, "MlNetPeft.Bench"), dir, "parity", "--fixture", TestData.Fixtures);
        StringAssert.Contains(output, "CPU Float32 lora (transformers + peft): logits");
        StringAssert.Contains(output, "CPU Float32 with dropout:");
        Assert.DoesNotContain("FAIL", output);
        Directory.Delete(dir, recursive: true);
    }
}
