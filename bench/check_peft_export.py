#!/usr/bin/env python3
"""Loads the PEFT LoRA adapters written by `MlNetPeft.Bench peft-export --out DIR` with the PyTorch reference's PEFT
loader (bench/reference.py, equal to transformers + peft on the HF fixture) and compares its logits with ours.

    /usr/bin/python3 bench/check_peft_export.py DIR [--fixture test/MlNetPeft.Tests/Fixtures/hf-parity]
"""
import argparse, json, os, sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference as R  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("dir")
ap.add_argument("--fixture", default=os.path.join(R.HERE, "..", "test", "MlNetPeft.Tests", "Fixtures", "hf-parity"))
a = ap.parse_args()
config = json.load(open(os.path.join(a.fixture, "tiny-roberta", "config.json")))
parity = json.load(open(os.path.join(a.fixture, "parity.json")))
ids, mask = torch.tensor(parity["input_ids"]), torch.tensor(parity["attention_mask"])
ok = True
for method in sorted(os.listdir(a.dir)):
    adapter = os.path.join(a.dir, method)
    model = R.load_backbone(R.RobertaForSequenceClassification(config, 3), os.path.join(a.fixture, "tiny-roberta"))
    R.load_peft_lora(model, adapter)
    model.eval()
    ours = torch.tensor(json.load(open(os.path.join(adapter, "logits.json"))))
    with torch.no_grad():
        error = (model(ids, mask) - ours).abs().max().item()
    cfg = json.load(open(os.path.join(adapter, "adapter_config.json")))
    print(json.dumps({"method": method, "r": cfg["r"], "lora_alpha": cfg["lora_alpha"], "max_abs_logit_error": error}))
    ok &= error < 1e-5
sys.exit(0 if ok else 1)
