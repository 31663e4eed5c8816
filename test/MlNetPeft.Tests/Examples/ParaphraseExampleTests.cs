using MlNetPeft.Examples;

namespace MlNetPeft.Tests.Examples;

/// <summary>The MRPC example (sentence pairs, a Boolean label, the binary trainer) on roberta-mini, a few rows.</summary>
[TestClass]
public sealed class ParaphraseExampleTests
{
    [TestMethod]
    public void RunsEndToEnd()
    {
        var model = Path.Combine(Directory.CreateTempSubdirectory().FullName, "paraphrase.zip");
        var args = ExampleArgs.Parse(["--max-train-rows", "64", "--max-dev-rows", "48", "--epochs", "1", "--model", model],
            "paraphrase", trainRows: 2000, epochs: 3);
        ParaphraseExample.Run(args);
        Assert.IsTrue(File.Exists(model));
        var ml = new Microsoft.ML.MLContext();
        var input = ml.Data.LoadFromEnumerable(new[] { new ParaphraseExample.Pair { Sentence1 = "a", Sentence2 = "b" } });
        var schema = ml.Model.Load(model, out _).GetOutputSchema(input.Schema);
        Assert.AreEqual(Microsoft.ML.Data.BooleanDataViewType.Instance, schema["PredictedLabel"].Type);
    }
}
