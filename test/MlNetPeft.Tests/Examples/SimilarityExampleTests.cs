using MlNetPeft.Examples;

namespace MlNetPeft.Tests.Examples;

/// <summary>The STS-B example (sentence pairs, a Single label, the regression trainer) on roberta-mini, a few rows.</summary>
[TestClass]
public sealed class SimilarityExampleTests
{
    [TestMethod]
    public void RunsEndToEnd()
    {
        var model = Path.Combine(Directory.CreateTempSubdirectory().FullName, "similarity.zip");
        var args = ExampleArgs.Parse(["--max-train-rows", "64", "--max-dev-rows", "48", "--epochs", "1", "--model", model],
            "similarity", trainRows: 2000, epochs: 3);
        SimilarityExample.Run(args);
        var ml = new Microsoft.ML.MLContext();
        var input = ml.Data.LoadFromEnumerable(new[] { new SimilarityExample.Pair { Sentence1 = "a", Sentence2 = "b" } });
        var loaded = ml.Model.Load(model, out _);
        Assert.AreEqual(Microsoft.ML.Data.NumberDataViewType.Single, loaded.GetOutputSchema(input.Schema)["Score"].Type);
        var score = ml.Data.CreateEnumerable<SimilarityExample.Prediction>(loaded.Transform(input), reuseRowObject: false).Single().Score;
        Assert.IsTrue(float.IsFinite(score), $"score {score}");
    }
}
