using System.Diagnostics;
using MlNetPeft.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetPeft.Bench;

/// <summary>
/// The first steps of training on padded batches of changing length, as real text gives them (the speed command's
/// fixed shape hides per-shape costs in its warm-up): each step's batch is padded to a new random length with an
/// attention mask. Prints the time of each block of ten steps, then of the same lengths again. On a GPU, run it with
/// and without MLNETPEFT_CUDNN_ATTENTION=1 to see what cuDNN's per-shape attention plans cost.
/// </summary>
internal static class FirstStepsBenchmark
{
    public static int Run(BenchArgs a)
    {
        string shape = a.Text("shape", "mini"), method = a.Text("method", "lora");
        int batch = a.Int("batch", 32), steps = a.Int("steps", 30), maxLength = a.Int("seq", 128);
        var (device, precision) = SpeedBenchmark.DeviceAndPrecision(a);
        using var model = SpeedBenchmark.RandomModel(shape, method);
        var config = model.Network.Config;
        model.To(device, precision);
        model.Train();
        using var stepper = new TrainingStepper(model, new TrainingSettings { BatchSize = batch, LearningRate = 1e-4 }, TaskKind.Classification, 100_000);
        var random = new Random(1);
        var lengths = Enumerable.Range(0, steps).Select(_ => random.Next(maxLength / 8, maxLength + 1)).ToArray();
        Console.WriteLine($"{device.type} {precision}, {shape} {method} b{batch}, {lengths.Distinct().Count()} distinct lengths in {steps} steps, " +
            $"cuDNN attention {(CudaAttention.CudnnEnabled ? "on" : "off")}");
        foreach (var pass in new[] { "new lengths", "same lengths again" })
        {
            var times = new List<double>();
            foreach (var length in lengths)
            {
                using var scope = NewDisposeScope();
                var ids = randint(3, config.VocabSize, [batch, length]).to(device);
                // Rows padded from a random point on, as dynamic padding leaves them.
                var mask = arange(length).unsqueeze(0).lt(randint(length / 2, length + 1, [batch, 1])).to(ScalarType.Int64).to(device);
                var clock = Stopwatch.StartNew();
                stepper.Run(new Batch(ids, mask, randint(0, 2, [batch]).to(device), batch));
                SpeedBenchmark.Sync(device);
                times.Add(clock.Elapsed.TotalMilliseconds);
            }
            var blocks = times.Chunk(10).Select(b => $"{b.Sum() / 1000:F2}");
            Console.WriteLine($"  {pass}: {times.Sum() / 1000:F2} s ({string.Join(" + ", blocks)} s per 10 steps), slowest step {times.Max():F0} ms");
        }
        return 0;
    }
}
