using Microsoft.ML;
using Microsoft.ML.Data;
using MlNetPeft.Examples;

namespace MlNetPeft.Tests.Examples;

/// <summary>The two sentence-pair examples on roberta-mini, a few rows each: MRPC through the binary trainer, STS-B
/// through the regression trainer. Each saved zip loads in a fresh context with its task's ML.NET columns.</summary>
[TestClass]
public sealed class PairExampleTests
{
    [TestMethod]
    public void ParaphraseRunsEndToEnd()
    {
        var (ml, model) = RunAndLoad("paraphrase", ParaphraseExample.Run);
        var input = ml.Data.LoadFromEnumerable(new[] { new ParaphraseExample.Pair { Sentence1 = "a", Sentence2 = "b" } });
        Assert.AreEqual(BooleanDataViewType.Instance, model.GetOutputSchema(input.Schema)["PredictedLabel"].Type);
        var p = ml.Data.CreateEnumerable<ParaphraseExample.Prediction>(model.Transform(input), reuseRowObject: false).Single();
        Assert.IsTrue(p.Probability is > 0 and < 1, $"probability {p.Probability}");
    }

    [TestMethod]
    public void SimilarityRunsEndToEnd()
    {
        var (ml, model) = RunAndLoad("similarity", SimilarityExample.Run);
        var input = ml.Data.LoadFromEnumerable(new[] { new SimilarityExample.Pair { Sentence1 = "a", Sentence2 = "b" } });
        Assert.AreEqual(NumberDataViewType.Single, model.GetOutputSchema(input.Schema)["Score"].Type);
        var score = ml.Data.CreateEnumerable<SimilarityExample.Prediction>(model.Transform(input), reuseRowObject: false).Single().Score;
        Assert.IsTrue(float.IsFinite(score), $"score {score}");
    }

    /// <summary>Runs an example on 64 training and 48 dev rows for one epoch and loads the zip it saved.</summary>
    private static (MLContext Ml, ITransformer Model) RunAndLoad(string name, Func<ExampleArgs, bool> run)
    {
        var zip = Path.Combine(TestFolders.Create(), name + ".zip");
        run(ExampleArgs.Parse(["--max-train-rows", "64", "--max-dev-rows", "48", "--epochs", "1", "--model", zip], name, trainRows: 2000, epochs: 3));
        var ml = new MLContext();
        return (ml, ml.Model.Load(zip, out _));
    }
}
