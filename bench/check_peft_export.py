#!/usr/bin/env python3
"""Loads what `MlNetPeft.Bench peft-export --out DIR` wrote with the PyTorch reference (bench/reference.py, equal to
transformers + peft on the HF fixture): each method's PEFT LoRA adapter through its PEFT loader, and its merged plain
checkpoint through its HF weight loader; compares the logits with ours.

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
    ours = torch.tensor(json.load(open(os.path.join(a.dir, method, "logits.json"))))
    for form in ("adapter", "merged"):
        path = os.path.join(a.dir, method, form)
        if not os.path.isdir(path):
            continue
        if form == "adapter":  # the fixture's backbone with the PEFT adapter (and its head) on top
            model = R.load_backbone(R.RobertaForSequenceClassification(config, 3), os.path.join(a.fixture, "tiny-roberta"))
            R.load_peft_lora(model, path)
            cfg = json.load(open(os.path.join(path, "adapter_config.json")))
            what = {"r": cfg["r"], "lora_alpha": cfg["lora_alpha"]}
        else:  # a plain checkpoint: backbone and head from its model.safetensors alone
            model = R.load_backbone(R.RobertaForSequenceClassification(config, 3), path)
            what = {}
        model.eval()
        with torch.no_grad():
            error = (model(ids, mask) - ours).abs().max().item()
        print(json.dumps({"method": method, "form": form, **what, "max_abs_logit_error": error}))
        ok &= error < 1e-5
sys.exit(0 if ok else 1)
