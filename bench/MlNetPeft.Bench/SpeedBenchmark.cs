using System.Diagnostics;
using System.Globalization;
using System.Runtime;
using System.Text.Json;
using MlNetPeft.Adapters;
using MlNetPeft.Adapters.Full;
using MlNetPeft.Adapters.Lora;
using MlNetPeft.Adapters.LoraSquared;
using MlNetPeft.Adapters.Msplora;
using MlNetPeft.Backbone;
using MlNetPeft.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MlNetPeft.Bench;

/// <summary>One training + inference throughput measurement.</summary>
internal sealed record SpeedRun(
    string Engine, string Shape, string Method, string Device, string Precision, int Batch, int Seq, int Threads, long Trainable,
    double TrainSamplesPerSecond, double InferSamplesPerSecond, double TrainTokensPerSecond, double TrainTflops, double InferTflops,
    double PeakTflops, double TrainFractionOfPeak, double InferFractionOfPeak, double PeakMemoryGiB,
    double? ReferenceTrainSamplesPerSecond, double? ReferenceInferSamplesPerSecond, int Accumulation, double TrainPeakMemoryGiB,
    bool GradientCheckpointing, double? AdapterDropout);

/// <summary>
/// Throughput of the training step (forward, backward, AdamW) and of merged inference on random inputs of a model
/// shape, against this machine's dense matmul peak and, with --reference, the PyTorch reference on the same shape.
/// </summary>
internal static class SpeedBenchmark
{
    private static readonly Dictionary<string, (int Layers, int Hidden, int Heads, int Ffn)> Shapes = new()
    {
        ["tiny"] = (4, 64, 4, 128), ["mini"] = (6, 256, 4, 1024), ["base"] = (12, 768, 12, 3072), ["large"] = (24, 1024, 16, 4096),
    };

    public static int Run(BenchArgs a)
    {
        var shapes = a.List("shape", "mini");
        var methods = a.List("method", "lora,msplora");
        int batch = a.Int("batch", 32), seq = a.Int("seq", 128), steps = a.Int("steps", 10), threads = a.Int("threads", 0);
        int accumulation = a.Int("accumulate", 1);
        double? adapterDropout = a.Flag("adapter-dropout") ? a.Double("adapter-dropout", 0) : null;
        if (accumulation < 1 || batch % accumulation != 0)
            throw new ArgumentException($"--accumulate must divide the batch ({batch}) into equal parts, got {accumulation}");
        if (threads > 0) set_num_threads(threads);
        var (device, precision) = DeviceAndPrecision(a);
        // The reference runs on the CPU only; checked now rather than after our first run.
        var referenceScript = a.Flag("reference") && device.type == DeviceType.CPU ? PythonReference.Script(a) : null;
        double peak = MatmulPeak(device, precision);
        Console.WriteLine($"{ComputeSelection.Describe(device)} {precision}, {get_num_threads()} threads: dense matmul peak {peak / 1e12:F3} TFLOP/s");

        var targets = a.Targets(); // null: each method's default; the reference has only those
        var runs = new List<SpeedRun>();
        foreach (var shape in shapes)
            foreach (var method in methods)
            {
                var run = Measure(shape, method, batch, seq, steps, device, precision, peak, a.Flag("phases"), accumulation, a.Flag("checkpoint"), targets,
                    a.Double("warm-up", 30), adapterDropout);
                if (referenceScript is not null && accumulation == 1 && !run.GradientCheckpointing && targets is null && method is "lora" or "msplora" or "full")
                {
                    var (train, infer) = Reference(referenceScript, shape, method, batch, seq, steps, get_num_threads(), adapterDropout ?? 0);
                    run = run with { ReferenceTrainSamplesPerSecond = train, ReferenceInferSamplesPerSecond = infer };
                }
                runs.Add(run);
                Console.WriteLine(Describe(run));
            }
        var outDir = a.Text("out", Path.Combine(BenchArgs.RepositoryRoot(), "bench", "results"));
        Directory.CreateDirectory(outDir);
        var file = Path.Combine(outDir, $"speed-{DateTime.UtcNow.ToString("yyyyMMdd-HHmmss", CultureInfo.InvariantCulture)}.json");
        File.WriteAllText(file, JsonSerializer.Serialize(runs, new JsonSerializerOptions { WriteIndented = true }));
        Console.WriteLine($"wrote {file}");
        return 0;
    }

    /// <summary>--device (auto: CUDA when there is one) and --precision (by default what the trainers' Auto picks: fp32 on
    /// the CPU, bf16 on CUDA or fp16 on a GPU without bf16 tensor cores).</summary>
    internal static (Device Device, ScalarType Precision) DeviceAndPrecision(BenchArgs a)
    {
        var device = a.Text("device", "auto") switch
        {
            "cpu" => CPU, "cuda" => CUDA, _ => cuda.is_available() ? CUDA : CPU,
        };
        return (device, ComputeSelection.SelectPrecision(a.Precision() ?? ComputePrecision.Auto, device));
    }

    /// <summary>A two-class model of the shape with random backbone weights and the method's adapters (on
    /// <paramref name="targets"/>, else its default ones), on the CPU in fp32; the same every call (seeded).</summary>
    internal static PeftModel RandomModel(string shape, string method, string[]? targets = null, double? adapterDropout = null)
    {
        manual_seed(0);
        var config = ConfigFor(shape);
        using var donor = new RobertaForSequenceClassification(config, 2);
        var adapters = MethodConfig(method);
        if (targets is not null) adapters = adapters with { Targets = targets };
        if (adapterDropout is { } dropout && !adapters.TrainsBackbone) adapters = adapters with { Dropout = dropout };
        return PeftModel.Create(config, 2, adapters, donor.state_dict(), "random " + shape);
    }

    internal static RobertaConfig ConfigFor(string shape)
    {
        // A named shape, or layers x hidden x heads x intermediate (e.g. 12x64x4x128: base's op count at tiny width).
        var dims = shape.Split('x');
        if (!Shapes.TryGetValue(shape, out var s))
            s = dims.Length == 4 && dims.All(d => int.TryParse(d, out _))
                ? (int.Parse(dims[0]), int.Parse(dims[1]), int.Parse(dims[2]), int.Parse(dims[3]))
                : throw new ArgumentException($"unknown shape '{shape}' ({string.Join(", ", Shapes.Keys)}, or LxHxAxI)");
        return new RobertaConfig
        {
            NumHiddenLayers = s.Layers, HiddenSize = s.Hidden, NumAttentionHeads = s.Heads, IntermediateSize = s.Ffn,
            VocabSize = 50265, MaxPositionEmbeddings = 514, LayerNormEps = 1e-5,
        };
    }

    /// <summary>The method as the reference runs it: rank 8 (MSPLoRA 8/4/2) on query and value, no adapter dropout.</summary>
    internal static AdapterConfig MethodConfig(string method) => method switch
    {
        "lora" => new LoraConfig { Dropout = 0 },
        "dora" => new LoraConfig { Dropout = 0, UseDora = true },
        "lorabias" => new LoraConfig { Dropout = 0, Bias = LoraBias.All }, // PEFT's bias "all"
        "msplora" => new MsploraConfig { Dropout = 0 },
        "lorasquared" => new SvdConfig { Variant = SvdVariant.LoraSquared },
        "adalora" => new SvdConfig { Variant = SvdVariant.AdaLora, InitialRank = 12, TargetRank = 8, OrthogonalityWeight = 0.5 },
        "full" => new FullFineTuningConfig(),
        _ => throw new ArgumentException($"unknown method '{method}'"),
    };

    internal static SpeedRun Measure(string shape, string method, int batch, int seq, int steps, Device device, ScalarType precision, double peak,
        bool phases = false, int accumulation = 1, bool checkpointing = false, string[]? targets = null, double maxWarmUpSeconds = 30,
        double? adapterDropout = null)
    {
        using var model = RandomModel(shape, method, targets, adapterDropout);
        var config = model.Network.Config;
        model.To(device, precision);
        var ids = randint(3, config.VocabSize, [batch, seq]).to(device).DetachFromDisposeScope();
        var labels = randint(0, 2, [batch]).to(device).DetachFromDisposeScope();
        var data = new Batch(ids, null, labels, batch);
        // Gradient accumulation: the step's rows in K equal parts, one forward and backward each.
        int part = batch / accumulation;
        List<Batch> stepBatches = accumulation == 1 ? [data] : Enumerable.Range(0, accumulation)
            .Select(i => new Batch(ids.narrow(0, i * part, part), null, labels.narrow(0, i * part, part), part)).ToList();
        using var memory = new PeakMemory(device);

        // Training: the training loop's own step (hooks, clipping, AdamW, schedule) on a fixed batch. The schedule
        // is long enough that warm-up and timed steps all fall inside it.
        using var stepper = new TrainingStepper(model, new TrainingSettings { BatchSize = batch, LearningRate = 1e-4, GradientCheckpointing = checkpointing }, TaskKind.Classification, steps + 100_000);
        model.Train();
        WarmUp(() => stepper.Run(stepBatches), device, $"{shape} {method}: training", maxWarmUpSeconds);
        var clock = Stopwatch.StartNew();
        for (int i = 0; i < steps; i++)
        {
            using (NewDisposeScope()) stepper.Run(stepBatches);
            Console.Error.Write($"\r  {shape} {method}: training step {i + 1}/{steps}   ");
        }
        Sync(device);
        double train = clock.Elapsed.TotalSeconds;
        double trainMemory = memory.PeakGiB;
        if (phases) PrintPhases(model, stepper, data, device, steps);
        if (stepper.LossScaler is { } scaler) // a skipped step does no AdamW update
            Console.WriteLine($"  fp16 loss scaling: {stepper.SkippedSteps} steps skipped (warm-up included), scale {scaler.Scale:G}");

        // Inference: adapters merged, no autograd at all.
        model.Train(false);
        model.Merge();
        double infer;
        using (inference_mode())
        {
            WarmUp(() => model.Forward(ids, null), device, $"{shape} {method}: inference", maxWarmUpSeconds);
            clock.Restart();
            for (int i = 0; i < steps; i++)
            {
                using var scope = NewDisposeScope();
                model.Forward(ids, null);
                Console.Error.Write($"\r  {shape} {method}: inference step {i + 1}/{steps}   ");
            }
            Sync(device);
            infer = clock.Elapsed.TotalSeconds;
        }
        Console.Error.Write("\r" + new string(' ', 60) + "\r");

        var flops = Flops.For(config, model, method, batch, seq);
        double trainFlops = flops.Train * steps / train, inferFlops = flops.Forward * steps / infer;
        return new SpeedRun("MlNetPeft (TorchSharp 0.107, libtorch 2.10)", shape, method, device.type.ToString(), precision.ToString(), batch, seq,
            get_num_threads(), model.TrainableCount, batch * steps / train, batch * steps / infer, (double)batch * seq * steps / train,
            trainFlops / 1e12, inferFlops / 1e12, peak / 1e12, trainFlops / peak, inferFlops / peak,
            Math.Max(memory.PeakGiB, trainMemory), null, null, accumulation, trainMemory, checkpointing, model.Config.TrainsBackbone ? null : adapterDropout); // Linux updates its peak lazily
    }

    /// <summary>Where a training step's time goes: forward+loss, +backward, +optimizer, each timed to the return of
    /// the host's calls (enqueue) and to the device's completion (sync), in ms per step, with .NET allocations. The
    /// whole step's process CPU time is steadier than its wall time on a shared machine (it leaves out time stolen by
    /// other guests): at one thread and a tiny width it tracks what a GPU step costs its host.</summary>
    private static void PrintPhases(PeftModel model, TrainingStepper stepper, Batch data, Device device, int steps)
    {
        (double Host, double Total, double Cpu) Time(Action step)
        {
            Sync(device);
            var cpu = Process.GetCurrentProcess().TotalProcessorTime;
            var clock = Stopwatch.StartNew();
            double host = 0;
            for (int i = 0; i < steps; i++)
            {
                using var scope = NewDisposeScope();
                var start = clock.Elapsed.TotalMilliseconds;
                step();
                host += clock.Elapsed.TotalMilliseconds - start;
                Sync(device);
            }
            return (host / steps, clock.Elapsed.TotalMilliseconds / steps, (Process.GetCurrentProcess().TotalProcessorTime - cpu).TotalMilliseconds / steps);
        }
        Tensor Loss() => nn.functional.cross_entropy(model.Forward(data.Ids, data.Mask), data.Labels);
        long bytes = GC.GetTotalAllocatedBytes(), gen0 = GC.CollectionCount(0), gen2 = GC.CollectionCount(2);
        var forward = Time(() => Loss());
        var backward = Time(() => Loss().backward());
        var whole = Time(() => stepper.Run(data));
        Console.WriteLine($"  phases (ms/step, host enqueue / with sync): forward+loss {forward.Host:F2} / {forward.Total:F2}, " +
            $"+backward {backward.Host:F2} / {backward.Total:F2}, whole step {whole.Host:F2} / {whole.Total:F2} (process CPU time {whole.Cpu:F2}; " +
            $"clipping, AdamW and schedule {whole.Host - backward.Host:F2} by difference); " +
            $".NET {(GC.GetTotalAllocatedBytes() - bytes) / (3.0 * steps) / 1024:F0} KiB allocated per step, " +
            $"{GC.CollectionCount(0) - gen0} gen0 / {GC.CollectionCount(2) - gen2} gen2 collections");
    }

    /// <summary>
    /// Runs <paramref name="step"/> until .NET's JIT has gone quiet, so that the timed steps run the optimised code a
    /// long training run runs, on a warm allocator. Tiered compilation recompiles a method in the background once it
    /// has been called 30 times, and with dynamic PGO twice, so a method called once per step is final only after
    /// some 60 steps. A fixed second of warm-up was not enough: measured 2026-12-06 (12x64x4x128, batch 2, sequence 16,
    /// CPU, 30 to 600 timed steps), the first run in a process still compiled 67–307 methods in its timed steps; with
    /// this warm-up 6–15, most of them finalizers on the finalizer thread. Stops after at least two steps and a
    /// second, once no method was compiled in the last 40 steps or 3 seconds (slow steps), or after
    /// <paramref name="maxSeconds"/>; then collects garbage.
    /// </summary>
    private static void WarmUp(Func<Tensor> step, Device device, string label, double maxSeconds)
    {
        var clock = Stopwatch.StartNew();
        long compiled = JitInfo.GetCompiledMethodCount();
        var quietSince = TimeSpan.Zero;
        for (int i = 0, quietSteps = 0; ; i++)
        {
            using (NewDisposeScope()) step();
            Console.Error.Write($"\r  {label}: warm-up step {i + 1}   ");
            if (JitInfo.GetCompiledMethodCount() is var now && now != compiled)
                (compiled, quietSince, quietSteps) = (now, clock.Elapsed, 0);
            else quietSteps++;
            bool quiet = quietSteps >= 40 || (clock.Elapsed - quietSince).TotalSeconds >= 3;
            if ((i >= 1 && clock.Elapsed.TotalSeconds >= 1 && quiet) || clock.Elapsed.TotalSeconds >= maxSeconds) break;
        }
        Sync(device);
        // Timed steps start with no garbage and no finalizers pending (TorchSharp's Scalars and pinned arrays are
        // finalized rather than disposed).
        GC.Collect();
        GC.WaitForPendingFinalizers();
    }

    internal static void Sync(Device device)
    {
        if (device.type == DeviceType.CUDA) cuda.synchronize();
    }

    /// <summary>FLOP/s of a large square matmul (fp32 on CPU, the chosen precision on GPU): the best of five timings,
    /// with the allocator set up as for training so that page faults of the result are not counted.</summary>
    internal static double MatmulPeak(Device device, ScalarType precision)
    {
        if (device.type == DeviceType.CPU) CpuAllocator.KeepFreedMemory();
        int n = device.type == DeviceType.CUDA ? 8192 : 2048, reps = device.type == DeviceType.CUDA ? 20 : 3;
        var dtype = device.type == DeviceType.CUDA ? precision : ScalarType.Float32;
        using var scope = NewDisposeScope();
        var x = randn([n, n], dtype: dtype, device: device);
        var y = randn([n, n], dtype: dtype, device: device);
        x.matmul(y).Dispose();
        double best = 0;
        for (int trial = 0; trial < 5; trial++)
        {
            Sync(device);
            var clock = Stopwatch.StartNew();
            for (int i = 0; i < reps; i++) x.matmul(y).Dispose();
            Sync(device);
            best = Math.Max(best, 2.0 * n * n * n * reps / clock.Elapsed.TotalSeconds);
        }
        return best;
    }

    private static (double Train, double Infer) Reference(string script, string shape, string method, int batch, int seq, int steps, int threads,
        double adapterDropout)
    {
        using var json = PythonReference.Run(script, ["bench", "--shape", shape, "--method", method, "--batch", $"{batch}", "--seq", $"{seq}",
            "--steps", $"{steps}", "--threads", $"{threads}", "--dropout", adapterDropout.ToString(CultureInfo.InvariantCulture)]);
        return (json.RootElement.GetProperty("train_samples_per_s").GetDouble(), json.RootElement.GetProperty("infer_samples_per_s").GetDouble());
    }

    private static string Describe(SpeedRun r) =>
        $"{r.Shape,-5} {r.Method,-11} {r.Device} {r.Precision} b{r.Batch}{(r.Accumulation > 1 ? $" in {r.Accumulation} parts" : "")} s{r.Seq}{(r.GradientCheckpointing ? " checkpointed" : "")}" +
        $"{(r.AdapterDropout is { } p ? $" adapter dropout {p}" : "")}: train {r.TrainSamplesPerSecond:F1} samples/s " +
        $"({100 * r.TrainFractionOfPeak:F0}% of peak), infer {r.InferSamplesPerSecond:F1} samples/s ({100 * r.InferFractionOfPeak:F0}% of peak), " +
        $"peak memory {r.PeakMemoryGiB:F2} GiB (training {r.TrainPeakMemoryGiB:F2})" +
        (r.ReferenceTrainSamplesPerSecond is { } t ? $"; PyTorch reference train {t:F1}/s (×{r.TrainSamplesPerSecond / t:F2}), infer {r.ReferenceInferSamplesPerSecond:F1}/s (×{r.InferSamplesPerSecond / r.ReferenceInferSamplesPerSecond:F2})" : "");
}
