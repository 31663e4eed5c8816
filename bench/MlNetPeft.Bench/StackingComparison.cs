using System.Diagnostics;
using MlNetPeft.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetPeft.Bench;

/// <summary>
/// The training step with and without stacking the adapter factors (Adapters/StackedLowRank), two identical models
/// stepped alternately in one process so that both see the same machine state: medians of per-step wall time and
/// the mean process CPU time. On one thread and a tiny width (the default 12x64x4x128, batch 2, sequence 16) a step is
/// mostly per-op host overhead, which is what bounds a GPU step.
/// </summary>
internal static class StackingComparison
{
    public static int Run(BenchArgs a)
    {
        set_num_threads(a.Int("threads", 1));
        string shape = a.Text("shape", "12x64x4x128");
        int batch = a.Int("batch", 2), seq = a.Int("seq", 16), steps = a.Int("steps", 400);
        var config = SpeedBenchmark.ConfigFor(shape);
        var device = a.Text("device", "cpu") == "cuda" ? CUDA : CPU;
        var precision = device.type == DeviceType.CUDA ? ScalarType.BFloat16 : ScalarType.Float32;
        foreach (var method in a.List("method", "lora,msplora"))
        {
            var runs = new[] { false, true }.Select(stacking =>
            {
                var model = SpeedBenchmark.RandomModel(shape, method); // seeded: the two are the same model
                model.To(device, precision);
                model.Adapters.StackingEnabled = stacking;
                model.Train();
                var stepper = new TrainingStepper(model, new TrainingSettings { BatchSize = batch, LearningRate = 1e-4 }, TaskKind.Classification, 1_000_000);
                return (Stacking: stacking, Model: model, Stepper: stepper, Wall: new List<double>(), Cpu: new List<double>());
            }).ToArray();
            var data = new Batch(randint(3, config.VocabSize, [batch, seq]).to(device), null, randint(0, 2, [batch]).to(device), batch);
            for (int step = -Math.Max(5, steps / 10); step < steps; step++) // negative steps warm up
                foreach (var run in runs)
                {
                    var cpu = Process.GetCurrentProcess().TotalProcessorTime;
                    var clock = Stopwatch.StartNew();
                    using (NewDisposeScope()) run.Stepper.Run(data);
                    SpeedBenchmark.Sync(device);
                    if (step < 0) continue;
                    run.Wall.Add(clock.Elapsed.TotalMilliseconds);
                    run.Cpu.Add((Process.GetCurrentProcess().TotalProcessorTime - cpu).TotalMilliseconds);
                }
            foreach (var run in runs)
            {
                run.Wall.Sort();
                Console.WriteLine($"{shape} {method,-8} {device.type} b{batch} s{seq} stacking {(run.Stacking ? "on " : "off")}: median step {run.Wall[steps / 2]:F3} ms, " +
                    $"process CPU {run.Cpu.Average():F3} ms/step");
                run.Stepper.Dispose();
                run.Model.Dispose();
            }
        }
        return 0;
    }
}
