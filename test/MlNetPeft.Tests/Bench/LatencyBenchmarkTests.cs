using Microsoft.ML;
using MlNetPeft.Bench;
using MlNetPeft.Tests.MlNet;

namespace MlNetPeft.Tests.Bench;

[TestClass]
public sealed class LatencyBenchmarkTests
{
    [TestMethod]
    public void ScoresSentencesOneAtATimeFromASavedZip()
    {
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(ToyText.Rows(20, seed: 1));
        var zip = Path.Combine(Directory.CreateTempSubdirectory("latency").FullName, "model.zip");
        ml.Model.Save(PeftTrainerFixture.Fit(ml, data, PeftTrainerFixture.Lora(1)).Model, data.Schema, zip);
        var output = new StringWriter();
        var console = Console.Out;
        Console.SetOut(output);
        try { Assert.AreEqual(0, LatencyBenchmark.Run(BenchArgs.Parse(["latency", "--model", zip, "--rows", "5", "--warm-up", "2"]))); }
        finally { Console.SetOut(console); }
        StringAssert.Contains(output.ToString(), "5 single-sentence predictions, p50 ");
    }
}
