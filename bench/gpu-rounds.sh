#!/usr/bin/env bash
# On a GPU machine (no .NET SDK), from the repository root, after ../shared/gpu/pack.sh packed the bench into .gpu/:
#   bash bench/gpu-rounds.sh [rounds] [methods]     e.g. bash bench/gpu-rounds.sh 4 lora,msplora,full
# Device time is short (15 minutes a task, start-up included), so the decisive figures come first: the HF fixture on
# CUDA, then our speed run (roberta-base shape, b32 s128, one process per method and round) alternated with
# bench/peft_reference.py for the given number of rounds (fewer if the next would overrun the budget). Both engines are bound by the host issuing kernels at this
# batch, and the host drifts, so only interleaved ratios mean anything. Then, while GPU_BUDGET_S (default 480 s from
# the start of this script) leaves room, the side checks: stacked adapter factors, resume, fp16 training, trained
# biases, first steps on batches of changing length with and without cuDNN attention, gradient checkpointing, adapter
# dropout, LoRA², AdaLoRA and full fine-tuning once each. Output goes to stdout and, when $OUT is set (the device
# tool), to $OUT/rounds.txt and $OUT/ours.json.
set -uo pipefail
rounds=${1:-4}; methods=${2:-lora,msplora}; budget=${GPU_BUDGET_S:-480}; first_round=0
reference=lora; [[ ,$methods, == *,full,* ]] && reference=lora,full   # PEFT has LoRA and full fine-tuning
out=${OUT:-/tmp/gpu-rounds}; mkdir -p "$out"
exec > >(tee "$out/rounds.txt") 2>"$out/stderr.txt"
app=/tmp/gpu-app; rm -rf $app; mkdir -p $app; tar -xJf .gpu/app.tar.xz -C $app
lib=$(python3 -c "import torch,os;print(os.path.dirname(torch.__file__))")/lib
nv=$(python3 -c "import nvidia;print(nvidia.__path__[0])")
export LD_LIBRARY_PATH=$lib:$(ls -d "$nv"/*/lib | tr '\n' ':')${LD_LIBRARY_PATH:-}
export LD_PRELOAD=$lib/libtorch_cuda.so
bench="$app/$(cat $app/.entry)"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
$bench parity --fixture test/MlNetPeft.Tests/Fixtures/hf-parity
for r in $(seq 1 "$rounds"); do
  # A round after the first starts only if one more round as long as the first fits in the budget.
  if (( r > 1 && SECONDS + first_round > budget )); then echo "== rounds $r-$rounds skipped (${SECONDS}s of ${budget}s used)"; break; fi
  round_start=$SECONDS
  echo "== round $r (${SECONDS}s)"
  # One process per method: the CUDA caching allocator keeps what a run reserved, so a second run in the same
  # process would report the first one's memory as its own.
  for m in ${methods//,/ }; do
    timeout 150 $bench speed --shape base --method "$m" --steps 50 --warm-up 10 $([ "$r" = 1 ] && echo --phases) --out /tmp/gpu-rounds-json | grep -v wrote
  done
  timeout 180 python3 bench/peft_reference.py --shape base --method "$reference" --steps 50
  [ "$r" = 1 ] && first_round=$(( SECONDS - round_start ))
done
cat /tmp/gpu-rounds-json/*.json > "$out/ours.json"
# Runs one side check if at least $1 seconds of the budget are left.
side() { local need=$1; shift
  if (( SECONDS + need > budget )); then echo "-- skipped (${SECONDS}s of ${budget}s used): $*"; return; fi
  echo "-- $* (${SECONDS}s)"; "$@"; }
side 60 timeout 150 $bench stacking --device cuda --shape base --batch 32 --seq 128 --steps 60
side 60 timeout 300 $bench resume --device cuda --shape mini
# fp16 with dynamic loss scaling (what Auto picks on V100/T4-class GPUs): its CUDA path end to end, and its speed here.
side 40 timeout 150 $bench speed --shape base --method lora --precision fp16 --steps 50 --warm-up 10 --out /tmp/gpu-fp16-json
side 40 timeout 150 $bench resume --device cuda --shape mini --method lora --precision fp16
# LoRA with PEFT's bias "all": biases training as bf16 copies of fp32 masters on CUDA, interrupted and resumed.
side 40 timeout 150 $bench resume --device cuda --shape mini --method lorabias
# Padded batches of changing length: cuDNN attention's per-shape plans off (our default), then on.
side 60 timeout 300 $bench first-steps --device cuda --shape base --steps 30
side 60 env MLNETPEFT_CUDNN_ATTENTION=1 timeout 300 $bench first-steps --device cuda --shape base --steps 30
# Gradient checkpointing: memory and time with the blocks recomputed in the backward (one process each).
for c in "" --checkpoint; do
  side 40 timeout 150 $bench speed --shape base --method lora --seq 512 --steps 20 --warm-up 10 $c --out /tmp/gpu-checkpoint-json
done
# Adapter dropout (training's 0.05 default; the rounds above have none, as PEFT's script): what MSPLoRA's mask per
# pair (PairDropout: one dropout of three expanded copies, a block-diagonal down GEMM) costs against LoRA's one mask.
for m in lora msplora; do
  side 40 timeout 150 $bench speed --shape base --method $m --adapter-dropout 0.05 --steps 50 --warm-up 10 --out /tmp/gpu-dropout-json
done
# The other methods, one process each: the README's GPU figures for them predate the batched LoRA²/AdaLoRA hooks and
# full fine-tuning's bf16 compute copy.
for m in lorasquared adalora full; do
  side 40 timeout 150 $bench speed --shape base --method $m --steps 50 --warm-up 10 --out /tmp/gpu-methods-json
done
echo "done in ${SECONDS}s"
