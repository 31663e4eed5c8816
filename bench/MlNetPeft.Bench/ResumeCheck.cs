using MlNetPeft.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace MlNetPeft.Bench;

/// <summary>
/// Resuming on any device: trains a random model of a shape on random rows (dropout on) once straight through and once
/// interrupted after a mid-epoch save and resumed from its TrainingStateDirectory, and prints the largest difference
/// between the two runs' trained weights. On the CPU it is 0 (the tests check that); on CUDA, whose random generator
/// the save reseeds, it shows whether the dropout masks line up (kernels that add in a varying order leave rounding
/// differences; different masks leave differences of the size of a training step).
/// </summary>
internal static class ResumeCheck
{
    private sealed class Interrupted : Exception;

    public static int Run(BenchArgs a)
    {
        string shape = a.Text("shape", "mini");
        int batch = a.Int("batch", 8), rows = a.Int("rows", 96), seq = a.Int("seq", 32);
        var (device, precision) = SpeedBenchmark.DeviceAndPrecision(a);
        var random = new Random(3);
        var config = SpeedBenchmark.ConfigFor(shape);
        var examples = Enumerable.Range(0, rows)
            .Select(i => new Example(Enumerable.Range(0, random.Next(4, seq)).Select(_ => random.Next(3, config.VocabSize)).ToArray(), i % 2, i))
            .ToList();
        int stepsPerEpoch = (rows + batch - 1) / batch, stopAfter = stepsPerEpoch + stepsPerEpoch / 2 + 1;
        bool ok = true;
        foreach (var method in a.List("method", "lora,dora,msplora,adalora"))
        {
            Dictionary<string, Tensor> Train(string? directory, int? stop)
            {
                using var model = SpeedBenchmark.RandomModel(shape, method, adapterDropout: 0.1);
                model.To(device, precision);
                var settings = new TrainingSettings
                {
                    BatchSize = batch, MaxEpochs = 3, LearningRate = 1e-3, LogEveryNSteps = 1, StateDirectory = directory,
                    SaveStateEveryNSteps = directory is null ? 0 : stepsPerEpoch / 2,
                    Progress = p => { if (p.Step == stop) throw new Interrupted(); },
                };
                manual_seed(11);
                cuda.manual_seed_all(11);
                new TrainingLoop(model, settings, TaskKind.Classification, padId: 1, _ => { }).Run(examples, null);
                return model.TrainableState();
            }
            var directory = Directory.CreateTempSubdirectory("mlnetpeft-resume-").FullName;
            try
            {
                var whole = Train(null, null);
                try { Train(directory, stopAfter); } catch (Interrupted) { }
                var resumed = Train(directory, null);
                double largest = whole.Keys.Max(k => (whole[k] - resumed[k]).abs().max().item<float>());
                double moved = whole.Keys.Max(k => whole[k].abs().max().item<float>());
                Console.WriteLine($"{method,-8} {device.type} {precision}, {shape}: interrupted after step {stopAfter} of {3 * stepsPerEpoch}, " +
                    $"resumed; largest weight difference from the straight run {largest:G3} (largest weight {moved:G3})");
                ok &= device.type != DeviceType.CPU || largest == 0;
            }
            finally { Directory.Delete(directory, recursive: true); }
        }
        return ok ? 0 : 1;
    }
}
