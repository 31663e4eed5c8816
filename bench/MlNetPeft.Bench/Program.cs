// MlNetPeft benchmarks: GLUE quality and training/inference throughput (run with "help" for the options).
using MlNetPeft.Bench;

try
{
    var args0 = BenchArgs.Parse(args);
    return args0.Command switch
    {
        "quality" => QualityBenchmark.Run(args0),
        "speed" => SpeedBenchmark.Run(args0),
        "parity" => ParityCheck.Run(args0),
        "stacking" => StackingComparison.Run(args0),
        "peft-export" => PeftExportCheck.Run(args0),
        "latency" => LatencyBenchmark.Run(args0),
        "score" => LatencyBenchmark.Score(args0),
        "first-steps" => FirstStepsBenchmark.Run(args0),
        "resume" => ResumeCheck.Run(args0),
        "help" or "--help" or "-h" => Usage(Console.Out, 0),
        _ => throw new ArgumentException($"unknown command '{args0.Command}' (quality, speed, first-steps, latency, score, parity, stacking, peft-export, resume, help)"),
    };
}
catch (ArgumentException e)
{
    Console.Error.WriteLine(e.Message);
    return Usage(Console.Error, 2);
}

static int Usage(TextWriter to, int exitCode)
{
    to.WriteLine("""
        usage:
          quality --task sst2|mrpc|cola|qnli|rte|stsb|all --method lora,dora,loraplus,msplora,lorasquared,adalora,full
                  [--backbone DIR] [--seeds N] [--epochs E] [--max-train-rows K] [--lr X] [--batch B] [--max-len L]
                  [--accumulate K] [--checkpoint]   (each step's batch in K parts, gradients summed; blocks
                  recomputed in the backward: each less memory)
                  [--reference [--reference-seeds N]] [--out DIR]
          speed   --shape tiny,mini,base,large --method lora,dora,msplora,lorasquared,adalora,full [--batch 32] [--seq 128]
                  [--accumulate K] [--checkpoint] [--steps 10] [--device auto|cpu|cuda] [--precision fp32|bf16] [--threads N]
                  [--reference] [--warm-up 30] [--out DIR]   (--checkpoint: blocks recomputed in the backward: less memory;
                  --warm-up: at most this many seconds of untimed steps, ended sooner once .NET's JIT is quiet)
          first-steps [--shape mini] [--method lora] [--batch 32] [--seq 128] [--steps 30] [--device auto|cpu|cuda]
                  (training steps on padded batches of changing length: per-shape first-use costs)
          latency --model ZIP [--precision fp32|bf16] [--rows 400]   (one PredictionEngine, one sentence per call)
          score   --model ZIP --out FILE [--rows 300]   (SST-2 dev sentences and their scores, for check_python_scores.py)
          parity  [--fixture DIR] [--device auto|cpu]   (the HF fixture's logits, loss and gradients on this device, then every method's against PyTorch)
          stacking [--shape 12x64x4x128] [--method lora,msplora] [--batch 2] [--seq 16] [--steps 400] [--threads 1]
                  [--device cpu|cuda]   (training steps with and without stacked adapter factors, alternated)
          resume  [--shape mini] [--method lora,dora,msplora,adalora] [--device auto|cpu|cuda] [--precision fp32|bf16]
                  (a run interrupted and resumed from its training state against one straight through)
          peft-export [--method lora,dora,msplora,lorasquared,adalora] [--layers 1,3] [--out DIR]   (adapters as PEFT LoRA files with
                  their logits, for bench/check_peft_export.py; LoRA and DoRA also take --rank-pattern 'query=2;layer\.3\..*value=6'
                  and --alpha-pattern 'value=32', PEFT's rank_pattern and alpha_pattern)
        """);
    return exitCode;
}
