#!/usr/bin/env python3
"""GPU reference for the speed benchmark: HF transformers RobertaForSequenceClassification + PEFT LoRA.

The stack users compare against, as issue 6 describes it: random-init RoBERTa of a shape, LoRA r=8 alpha 16 on
query,value (no adapter dropout) or full fine-tuning, bf16 autocast, AdamW, gradient clipping at 1.0 and a linear
schedule (as MlNetPeft's training step does), batch 32, sequence 128. Inference: adapters merged
(merge_and_unload), eval mode, inference_mode, bf16 autocast. Prints one JSON line per run.

    python3 bench/peft_reference.py --shape base,large --method lora,full --steps 50
Needs a CUDA GPU with torch, transformers and peft (the project's GPU machines have them).
"""
import argparse
import json
import threading
import time

import torch
import torch.nn.functional as F
import transformers
from transformers import RobertaConfig, RobertaForSequenceClassification

SHAPES = {"tiny": (4, 64, 4, 128), "mini": (6, 256, 4, 1024), "base": (12, 768, 12, 3072), "large": (24, 1024, 16, 4096)}


class GpuMemorySampler:
    """Peak device memory in use as nvidia-smi counts it (context included), sampled every 50 ms."""

    def __init__(self):
        import pynvml
        pynvml.nvmlInit()
        self._nvml, self._handle = pynvml, pynvml.nvmlDeviceGetHandleByIndex(0)
        self.peak, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used)
            time.sleep(0.05)

    def stop(self):
        self._stop.set()
        self._thread.join()
        return self.peak / 2**30


def build(shape, method):
    layers, hidden, heads, ffn = SHAPES[shape]
    config = RobertaConfig(vocab_size=50265, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                           intermediate_size=ffn, max_position_embeddings=514, type_vocab_size=1, pad_token_id=1,
                           layer_norm_eps=1e-5, num_labels=2)
    model = RobertaForSequenceClassification(config).cuda()
    if method == "lora":
        from peft import LoraConfig, get_peft_model
        model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=16, lora_dropout=0.0,
                                                 target_modules=["query", "value"]))
    return model


def run(shape, method, batch, seq, steps):
    torch.manual_seed(0)
    model = build(shape, method)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    total = steps + 5
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: max(0.0, (total - s) / total))
    x = torch.randint(3, 50265, (batch, seq), device="cuda")
    x[:, 0], x[:, -1] = 0, 2
    mask, y = torch.ones_like(x), torch.randint(0, 2, (batch,), device="cuda")
    torch.cuda.reset_peak_memory_stats()
    sampler = GpuMemorySampler()

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = F.cross_entropy(model(input_ids=x, attention_mask=mask).logits.float(), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)

    model.train()
    for _ in range(5):
        step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    train = time.perf_counter() - t0
    train_peak = torch.cuda.max_memory_allocated() / 2**30

    if method == "lora":
        model = model.merge_and_unload()
    model.eval()
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
        for _ in range(3):
            model(input_ids=x, attention_mask=mask)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(steps):
            model(input_ids=x, attention_mask=mask)
        torch.cuda.synchronize()
        infer = time.perf_counter() - t0
    smi_peak = sampler.stop()
    import peft
    return {"engine": f"pytorch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}",
            "device": torch.cuda.get_device_name(), "shape": shape, "method": method, "batch": batch, "seq": seq,
            "steps": steps, "trainable": trainable, "train_samples_per_s": batch * steps / train,
            "infer_samples_per_s": batch * steps / infer, "train_peak_allocated_gib": train_peak,
            "peak_used_gib_nvidia_smi": smi_peak}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", default="base")
    ap.add_argument("--method", default="lora", help="lora, full (comma-separated)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--steps", type=int, default=50)
    a = ap.parse_args()
    for shape in a.shape.split(","):
        for method in a.method.split(","):
            print(json.dumps(run(shape, method, a.batch, a.seq, a.steps)), flush=True)
            torch.cuda.empty_cache()
