// MlNetPeft benchmarks: GLUE quality and training/inference throughput (run with "help" for the options).
using MlNetPeft.Bench;

try
{
    if (args is ["help" or "--help" or "-h", ..]) return Usage(Console.Out, 0);
    var (run, parsed) = BenchCommands.Check(args);
    return run(parsed);
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
          quality --task sst2|mrpc|cola|qnli|rte|stsb|all --method lora,dora,loraplus,lorabias,msplora,lorasquared,adalora,full
                  [--backbone DIR] [--seeds N [--first-seed S]] [--epochs E] [--max-train-rows K] [--lr X] [--batch B] [--max-len L]
                  [--accumulate K] [--checkpoint]   (each step's batch in K parts, gradients summed; blocks
                  recomputed in the backward: each less memory)
                  [--precision fp32|bf16|fp16] [--reference [--reference-seeds N]] [--out DIR]
          speed   --shape tiny,mini,base,large --method lora,dora,lorabias,msplora,lorasquared,adalora,full [--batch 32] [--seq 128]
                  [--accumulate K] [--checkpoint] [--steps 10] [--device auto|cpu|cuda] [--precision fp32|bf16|fp16] [--threads N]
                  [--reference [--reference-script FILE]] [--warm-up 30] [--phases] [--targets all|LIST] [--adapter-dropout P] [--out DIR]
                  (--checkpoint: blocks recomputed in the backward: less memory; --warm-up: at most this many seconds of
                  untimed steps, ended sooner once .NET's JIT is quiet; --adapter-dropout: on both sides, default none,
                  while training's default is 0.05)
          first-steps [--shape mini] [--method lora] [--batch 32] [--seq 128] [--steps 30] [--device auto|cpu|cuda]
                  (training steps on padded batches of changing length: per-shape first-use costs)
          latency --model ZIP [--precision fp32|bf16|fp16] [--rows 400] [--parallel 1] [--threads N] [--share]   (PredictionEngines, one
          sentence per call, on --parallel threads over one model; --threads: libtorch's threads per operation;
          --share: loaded with LoadSettings.ShareBackbone, its adapters unmerged)
          latency --model ZIP --transform [--rows all] [--passes 3]   (the sentences through model.Transform, batched, per pass)
          score   --model ZIP --out FILE [--rows 300]   (SST-2 dev sentences and their scores, for check_python_scores.py)
          zip-memory [--shape base | --backbone DIR] [--embed] [--full] [--loads 3] [--rows 64] [--share 0] [--work DIR]   (time and CPU memory
                  of a short Fit, Model.Save, a merged export and Model.Load rounds, on a random backbone of the shape or
                  the checkpoint directory given; --embed: the backbone in the zip; --full: full fine-tuning, not LoRA;
                  --share N: N models held, each with its own backbone, then with LoadSettings.ShareBackbone)
          tokenize [--backbone DIR] [--chars 300,1300,5000,20000] [--max-len 128,512] [--rows 300]
                  (one model input from documents of SST-2 sentences, cut, against encoding the whole document)
          parity  [--fixture DIR] [--device auto|cpu]   (every method's logits, loss and gradients against PyTorch on this device)
          stacking [--shape 12x64x4x128] [--method lora,msplora] [--batch 2] [--seq 16] [--steps 400] [--threads 1]
                  [--device cpu|cuda]   (training steps with and without stacked adapter factors, alternated)
          resume  [--shape mini] [--method lora,dora,lorabias,msplora,adalora] [--device auto|cpu|cuda] [--precision fp32|bf16|fp16]
                  (a run interrupted and resumed from its training state against one straight through)
          peft-export [--method lora,dora,lorabias,msplora,lorasquared,adalora] [--layers 1,3] [--out DIR]   (adapters as PEFT LoRA files,
                  AdaLoRA also as PEFT AdaLoRA files, with their logits, for bench/check_peft_export.py; LoRA and DoRA also take --rank-pattern 'query=2;layer\.3\..*value=6'
                  and --alpha-pattern 'value=32', PEFT's rank_pattern and alpha_pattern)
        """);
    return exitCode;
}
