using MlNetPeft.Bench;

namespace MlNetPeft.Tests.Bench;

[TestClass]
public sealed class ZipMemoryBenchmarkTests
{
    /// <summary>On the tiny shape with the backbone embedded: every stage reports its time and memory, the zip holds the
    /// backbone, and the scratch folder is gone afterwards.</summary>
    [TestMethod]
    public void ReportsEachStageAndCleansUp()
    {
        var work = Path.Combine(TestFolders.Create("zip-memory"), "work");
        var text = Run("--shape", "tiny", "--embed", "--loads", "2", "--rows", "16", "--work", work);
        foreach (var stage in new[] { "Fit", "Model.Save", "SaveMergedCheckpoint", "Model.Load 1", "Model.Save of a loaded model", "Model.Load 2" })
            StringAssert.Matches(text, new System.Text.RegularExpressions.Regex($@"(?m)^{System.Text.RegularExpressions.Regex.Escape(stage)}: [\d.]+ s, peak [+-][\d.]+ GiB, resident after [\d.]+ GiB$"), stage);
        StringAssert.Contains(text, "embedded in the zip");
        var zipMegabytes = double.Parse(System.Text.RegularExpressions.Regex.Match(text, @"zip ([\d.]+) MB").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        var backboneMegabytes = double.Parse(System.Text.RegularExpressions.Regex.Match(text, @"random weights: model.safetensors ([\d.]+) MB").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        Assert.IsGreaterThan(0.5 * backboneMegabytes, zipMegabytes, "the zip holds the backbone");
        Assert.IsFalse(Directory.Exists(work));
    }

    /// <summary>With --backbone, that directory is measured and left in place; with --full, the zip holds every weight.</summary>
    [TestMethod]
    public void MeasuresTheBackboneDirectoryGiven()
    {
        var text = Run("--backbone", TestData.TinyBackbone, "--full", "--loads", "1", "--rows", "16");
        StringAssert.StartsWith(text, $"{TestData.TinyBackbone}: model.safetensors ");
        StringAssert.Contains(text, "fully fine-tuned");
        StringAssert.Contains(text, "Model.Load 1: ");
        var zipBytes = double.Parse(System.Text.RegularExpressions.Regex.Match(text, @"zip ([\d.]+) MB").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) * 1e6;
        Assert.IsGreaterThan(0.5 * new FileInfo(Path.Combine(TestData.TinyBackbone, "model.safetensors")).Length, zipBytes, "the zip holds the weights");
        Assert.IsTrue(File.Exists(Path.Combine(TestData.TinyBackbone, "model.safetensors")));
    }

    private static string Run(params string[] args)
    {
        var output = new StringWriter();
        var console = Console.Out;
        Console.SetOut(output);
        try { Assert.AreEqual(0, ZipMemoryBenchmark.Run(BenchArgs.Parse(["zip-memory", .. args]))); }
        finally { Console.SetOut(console); }
        return output.ToString();
    }
}
