using Microsoft.ML;
using MlNetPeft.Bench;
using MlNetPeft.Tests.MlNet;

namespace MlNetPeft.Tests.Bench;

[TestClass]
public sealed class LatencyBenchmarkTests
{
    [TestMethod]
    public void TimesAndScoresSentencesOneAtATimeFromASavedZip()
    {
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(ToyText.Rows(20, seed: 1));
        var zip = Path.Combine(TestFolders.Create("latency"), "model.zip");
        ml.Model.Save(PeftTrainerFixture.Fit(ml, data, PeftTrainerFixture.Lora(1)).Model, data.Schema, zip);
        var output = new StringWriter();
        var console = Console.Out;
        Console.SetOut(output);
        // Two engines over the one model on two threads; --threads as it is, since it holds for the whole process.
        string threads = TorchSharp.torch.get_num_threads().ToString(System.Globalization.CultureInfo.InvariantCulture);
        try { Assert.AreEqual(0, LatencyBenchmark.Run(BenchArgs.Parse(["latency", "--model", zip, "--rows", "5", "--warm-up", "2", "--parallel", "2", "--threads", threads]))); }
        finally { Console.SetOut(console); }
        StringAssert.Contains(output.ToString(), $"5 single-sentence predictions on 2 thread(s), {threads} libtorch thread(s) per operation: p50 ");
        StringAssert.Contains(output.ToString(), " sentences/s");

        output.GetStringBuilder().Clear();
        Console.SetOut(output);
        try { Assert.AreEqual(0, LatencyBenchmark.Run(BenchArgs.Parse(["latency", "--model", zip, "--transform", "--rows", "40", "--passes", "2"]))); }
        finally { Console.SetOut(console); }
        StringAssert.Contains(output.ToString(), "40 sentences through Transform");
        StringAssert.Matches(output.ToString(), new System.Text.RegularExpressions.Regex(@"pass 1 \d+, pass 2 \d+ rows/s"));

        var scores = Path.Combine(Path.GetDirectoryName(zip)!, "scores.json");
        Console.SetOut(TextWriter.Null);
        try { Assert.AreEqual(0, LatencyBenchmark.Score(BenchArgs.Parse(["score", "--model", zip, "--out", scores, "--rows", "4"]))); }
        finally { Console.SetOut(console); }
        using var json = System.Text.Json.JsonDocument.Parse(File.ReadAllText(scores));
        Assert.AreEqual(4, json.RootElement.GetArrayLength());
        Assert.AreEqual(3, json.RootElement[0].GetProperty("score").GetArrayLength(), "three class probabilities");
    }

    [TestMethod]
    public void TimesCuttingDocumentsAgainstEncodingThemWhole()
    {
        var output = new StringWriter();
        var console = Console.Out;
        Console.SetOut(output);
        try { Assert.AreEqual(0, TokenizerBenchmark.Run(BenchArgs.Parse(["tokenize", "--chars", "200,3000", "--max-len", "64", "--rows", "25"]))); }
        finally { Console.SetOut(console); }
        var lines = output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.HasCount(2, lines, output.ToString());
        StringAssert.Contains(lines[1], "3000 characters: whole text ");
        StringAssert.Contains(lines[1], ", cut to 64 ");
    }
}
