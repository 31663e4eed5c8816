using MlNetPeft.Bench;
using static TorchSharp.torch;

namespace MlNetPeft.Tests.Bench;

/// <summary>The speed benchmark's smoke configuration: it runs, and what it reports is consistent.</summary>
[TestClass]
public sealed class SpeedBenchmarkTests
{
    [TestMethod]
    [DataRow("msplora")]
    [DataRow("lorasquared")]
    [DataRow("full")]
    public void SmokeConfigurationRuns(string method)
    {
        var run = SpeedBenchmark.Measure("tiny", method, batch: 4, seq: 16, steps: 2, CPU, ScalarType.Float32, peak: 1e11);
        Assert.IsGreaterThan(0.0, run.TrainSamplesPerSecond);
        Assert.IsGreaterThan(0.0, run.InferSamplesPerSecond);
        Assert.AreEqual(run.TrainSamplesPerSecond * 16, run.TrainTokensPerSecond, 1e-6 * run.TrainTokensPerSecond);
        Assert.IsGreaterThan(0.0, run.TrainPeakMemoryGiB);
        Assert.IsTrue(run.TrainFractionOfPeak is > 0 and < 10);
    }

    [TestMethod]
    [DataRow("lora", 1)]
    [DataRow("full", 2)] // fp32 masters, their gradients accumulated over the batch's two halves
    public void BfloatBackboneTrainsOnCpu(string method, int accumulation)
    {
        var run = SpeedBenchmark.Measure("tiny", method, batch: 4, seq: 16, steps: 1, CPU, ScalarType.BFloat16, peak: 1e11,
            accumulation: accumulation);
        Assert.AreEqual("BFloat16", run.Precision);
        Assert.AreEqual(accumulation, run.Accumulation);
        Assert.IsGreaterThan(0.0, run.TrainSamplesPerSecond);
    }

    [TestMethod]
    public void CheckpointedTrainingRuns()
    {
        var run = SpeedBenchmark.Measure("tiny", "msplora", batch: 4, seq: 16, steps: 1, CPU, ScalarType.Float32, peak: 1e11, checkpointing: true);
        Assert.IsTrue(run.GradientCheckpointing);
        Assert.IsGreaterThan(0.0, run.TrainSamplesPerSecond);
    }

    /// <summary>--adapter-dropout reaches the model's adapters (the speed table's runs have none) and the record; full
    /// fine-tuning has no adapters to drop for.</summary>
    [TestMethod]
    public void AdapterDropoutIsSetAndRecorded()
    {
        using (var model = SpeedBenchmark.RandomModel("tiny", "msplora", adapterDropout: 0.05))
            Assert.AreEqual(0.05, model.Config.Dropout);
        using (var model = SpeedBenchmark.RandomModel("tiny", "msplora"))
            Assert.AreEqual(0.0, model.Config.Dropout);
        var run = SpeedBenchmark.Measure("tiny", "msplora", batch: 4, seq: 16, steps: 1, CPU, ScalarType.Float32, peak: 1e11, adapterDropout: 0.05);
        Assert.AreEqual(0.05, run.AdapterDropout);
        Assert.IsGreaterThan(0.0, run.TrainSamplesPerSecond);
        Assert.IsNull(SpeedBenchmark.Measure("tiny", "full", batch: 4, seq: 16, steps: 1, CPU, ScalarType.Float32, peak: 1e11, adapterDropout: 0.05).AdapterDropout);
    }

    [TestMethod]
    public void FirstStepsRunOnBatchesOfChangingLength()
    {
        var output = new StringWriter();
        var console = Console.Out;
        Console.SetOut(output);
        try { Assert.AreEqual(0, FirstStepsBenchmark.Run(BenchArgs.Parse(["first-steps", "--shape", "tiny", "--steps", "3", "--batch", "4", "--seq", "16", "--device", "cpu"]))); }
        finally { Console.SetOut(console); }
        StringAssert.Contains(output.ToString(), "same lengths again: ");
    }

    [TestMethod]
    public void CommandLineRunsAndWritesJson()
    {
        var dir = TestFolders.Create();
        var code = SpeedBenchmark.Run(BenchArgs.Parse(["speed", "--shape", "tiny", "--method", "lora", "--batch", "2", "--seq", "8", "--steps", "1", "--out", dir]));
        Assert.AreEqual(0, code);
        Assert.HasCount(1, Directory.GetFiles(dir, "speed-*.json"));
    }

    [TestMethod]
    public void ParityCommandPassesOnTheCpu()
    {
        Assert.AreEqual(0, ParityCheck.Run(BenchArgs.Parse(["parity", "--device", "cpu"])));
    }

    [TestMethod]
    public void StackingComparisonRuns()
    {
        Assert.AreEqual(0, StackingComparison.Run(BenchArgs.Parse(["stacking", "--shape", "tiny", "--steps", "2"])));
    }

    [TestMethod]
    public void ShapeCanBeGivenAsDimensions()
    {
        var config = SpeedBenchmark.ConfigFor("12x64x4x128");
        Assert.AreEqual((12, 64, 4, 128), (config.NumHiddenLayers, config.HiddenSize, config.NumAttentionHeads, config.IntermediateSize));
        Assert.ThrowsExactly<ArgumentException>(() => SpeedBenchmark.ConfigFor("12x64"));
    }

    /// <summary>A misspelt or foreign option, or a number or precision that does not parse, stops the program before it runs (exit 2,
    /// the option named), rather than leaving a default in force for a long run.</summary>
    [TestMethod]
    [DataRow("--step 3", "speed takes no option --step")]
    [DataRow("--steps three", "--steps takes a number, not 'three'")]
    [DataRow("--fixture dir", "speed takes no option --fixture")]
    [DataRow("--precision half", "--precision takes fp32, bf16 or fp16, not 'half'")]
    [DataRow("--reference --reference-script /nonexistent/reference.py", "the PyTorch reference /nonexistent/reference.py does not exist")]
    public void OptionsACommandDoesNotTakeAreRefused(string options, string message) =>
        StringAssert.Contains(RefusedSpeedRun(options), message);

    /// <summary>Without PyTorch for /usr/bin/python3, --reference stops before our first run, not after it.</summary>
    [TestMethod]
    public void AReferenceWithoutPyTorchIsRefusedBeforeRunning()
    {
        var shadow = TestFolders.Create("no-torch");
        File.WriteAllText(Path.Combine(shadow, "torch.py"), "raise ImportError('no torch here')\n");
        var pythonPath = Environment.GetEnvironmentVariable("PYTHONPATH");
        Environment.SetEnvironmentVariable("PYTHONPATH", shadow); // the child python imports this torch first
        var output = Console.Out;
        var printed = new StringWriter();
        Console.SetOut(printed);
        try { StringAssert.StartsWith(RefusedSpeedRun("--reference --batch 2 --seq 8 --steps 1 --warm-up 1"), "--reference needs "); }
        finally
        {
            Console.SetOut(output);
            Environment.SetEnvironmentVariable("PYTHONPATH", pythonPath);
            Directory.Delete(shadow, true);
        }
        Assert.DoesNotContain("samples/s", printed.ToString(), "our run went first");
    }

    /// <summary>Runs the bench's speed command on the tiny shape with <paramref name="options"/>, expecting it to refuse
    /// them (exit 2); returns what it wrote to stderr.</summary>
    private static string RefusedSpeedRun(string options)
    {
        var main = typeof(BenchArgs).Assembly.EntryPoint!;
        var error = Console.Error;
        var captured = new StringWriter();
        Console.SetError(captured);
        try
        {
            var code = main.Invoke(null, [new[] { "speed", "--shape", "tiny" }.Concat(options.Split(' ')).ToArray()]);
            Assert.AreEqual(2, code, captured.ToString());
        }
        finally { Console.SetError(error); }
        return captured.ToString();
    }
}
