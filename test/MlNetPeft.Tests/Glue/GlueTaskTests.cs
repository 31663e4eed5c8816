using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetPeft.Glue;

namespace MlNetPeft.Tests.Glue;

/// <summary>Every GLUE file in data/glue reads with ML.NET's text loader to its official row count.</summary>
[TestClass]
public sealed class GlueTaskTests
{
    private static string GlueDir => Path.Combine(TestData.RepoRoot, "data", "glue");

    public static IEnumerable<object[]> Splits =>
    [
        ["sst2", "train", 67_349], ["sst2", "dev", 872],
        ["mrpc", "train", 3_668], ["mrpc", "dev", 408],
        ["cola", "train", 8_551], ["cola", "dev", 1_043],
        ["stsb", "train", 5_749], ["stsb", "dev", 1_500],
        ["rte", "train", 2_490], ["rte", "dev", 277],
        ["qnli", "train", 4_370], ["qnli", "dev", 1_093], // QNLI dev.tsv (5,463 rows) split 80/20
    ];

    [TestMethod]
    [DynamicData(nameof(Splits))]
    public void ReadsTheOfficialRowCount(string task, string split, int rows)
    {
        var ml = new MLContext();
        var glue = GlueTask.Get(task);
        var data = glue.Load(ml, GlueDir, split);
        var first = data.GetColumn<ReadOnlyMemory<char>>("Sentence1").ToList();
        Assert.HasCount(rows, first);
        Assert.IsTrue(first.All(s => !s.Span.IsWhiteSpace()), "no empty first sentence");
        if (glue.IsPair) Assert.IsTrue(data.GetColumn<ReadOnlyMemory<char>>("Sentence2").All(s => !s.Span.IsWhiteSpace()));
        if (glue.IsRegression)
        {
            var scores = data.GetColumn<float>("Label").ToList();
            Assert.IsTrue(scores.All(s => s is >= 0 and <= 5), "STS-B scores run from 0 to 5");
        }
        else
        {
            var labels = data.GetColumn<ReadOnlyMemory<char>>("Label").Select(l => l.ToString()).Distinct().Order().ToArray();
            CollectionAssert.AreEqual(task is "rte" or "qnli" ? new[] { "entailment", "not_entailment" } : new[] { "0", "1" }, labels);
        }
    }

    [TestMethod]
    public void QuotesAreTextNotDelimiters()
    {
        var ml = new MLContext();
        var first = GlueTask.Mrpc.Load(ml, GlueDir, "train").GetColumn<ReadOnlyMemory<char>>("Sentence1").First().ToString();
        Assert.AreEqual("Amrozi accused his brother , whom he called \" the witness \" , of deliberately distorting his evidence .", first);
    }

    [TestMethod]
    public void UnknownTaskAndMissingFileAreNamed()
    {
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentException>(() => GlueTask.Get("mnli")).Message, "mnli");
        var e = Assert.ThrowsExactly<FileNotFoundException>(() => GlueTask.Rte.Load(new MLContext(), "/nonexistent", "train"));
        StringAssert.Contains(e.Message, "RTE");
    }
}
