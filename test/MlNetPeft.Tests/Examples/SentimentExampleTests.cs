using MlNetPeft.Examples;

namespace MlNetPeft.Tests.Examples;

/// <summary>The README's main example, end to end on the shipped roberta-mini, with a small row cap.</summary>
[TestClass]
public sealed class SentimentExampleTests
{
    [TestMethod]
    public void RunsEndToEnd()
    {
        var dir = TestFolders.Create();
        var model = Path.Combine(dir, "sentiment.zip");
        var args = ExampleArgs.Parse(["--max-train-rows", "96", "--max-dev-rows", "64", "--epochs", "1", "--model", model,
            "--export", Path.Combine(dir, "python"), "--state", Path.Combine(dir, "state")], "sentiment", trainRows: 4000, epochs: 5);
        SentimentExample.Run(args);
        Assert.IsTrue(File.Exists(model));
        Assert.HasCount(1, Directory.GetFiles(Path.Combine(dir, "state"), MlNetPeft.Training.TrainingCheckpoint.FilePrefix + "*.safetensors"), "--state reaches the trainer");
        Assert.IsLessThan(2_000_000L, new FileInfo(model).Length);
        foreach (var file in new[] { "peft-adapter/adapter_config.json", "peft-adapter/adapter_model.safetensors",
                     "hf-checkpoint/config.json", "hf-checkpoint/model.safetensors", "hf-checkpoint/vocab.json", "hf-checkpoint/merges.txt" })
            Assert.IsTrue(File.Exists(Path.Combine(dir, "python", file)), file);
    }

    [TestMethod]
    public void PrecisionOptionParses()
    {
        ExampleArgs Parse(params string[] args) => ExampleArgs.Parse(args, "sentiment", trainRows: 10, epochs: 1);
        Assert.AreEqual(MlNetPeft.Training.ComputePrecision.Auto, Parse().Precision);
        Assert.AreEqual(MlNetPeft.Training.ComputePrecision.BFloat16, Parse("--precision", "bf16").Precision);
        Assert.AreEqual(MlNetPeft.Training.ComputePrecision.Float32, Parse("--precision", "fp32").Precision);
        Assert.AreEqual(MlNetPeft.Training.ComputePrecision.Float16, Parse("--precision", "fp16").Precision);
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentException>(() => Parse("--precision", "half")).Message, "fp32, bf16 or fp16, not 'half'");
    }

    [TestMethod]
    public void HelpAndBadOptionsAnswerWithoutRunning()
    {
        int runs = 0;
        int Run(params string[] args) => ExampleArgs.Run(args, "sentiment", trainRows: 10, epochs: 1, _ => { runs++; return true; });
        var error = Console.Error;
        var captured = new StringWriter();
        Console.SetError(captured);
        try
        {
            Assert.AreEqual(0, Run("--help"));
            Assert.AreEqual(2, Run("--epochs", "three"));
            Assert.AreEqual(2, Run("--bogus"));
            Assert.AreEqual(2, Run("--model"));
            Assert.AreEqual(2, Run("--model", "/no/such/folder/model.zip"));
        }
        finally { Console.SetError(error); }
        Assert.AreEqual(0, runs, "nothing trains on --help or a bad option");
        foreach (var message in new[] { "--epochs takes a number, not 'three'", "unknown option --bogus", "--model needs a value", "--max-train-rows N",
                     "the folder /no/such/folder does not exist" })
            StringAssert.Contains(captured.ToString(), message);
        Assert.AreEqual(0, Run("--epochs", "2"));
        Assert.AreEqual(1, runs);
    }
}
