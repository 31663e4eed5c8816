#!/usr/bin/env python3
"""Writes MSPLoRA adapters for hf-parity/tiny-roberta and what the PyTorch reference computes with them.

bench/reference.py's MSPLoRA (`inject(model, "msplora")`, equal to transformers on the fixture to 1e-8) wires the
pairs as the authors' code does: for query and value, one rank-8 global pair shared by all 4 layers, one rank-4 pair
per contiguous group of layers (3 groups: layers 0-1, 2, 3, as min(int(i·3/4), 2)), one rank-2 pair per layer, each
scaled by alpha / its rank (alpha 16). Its factors get random values here (B nonzero, so the update is not zero), the
head random values too; then the parity inputs are scored, the cross-entropy on the parity labels is taken, and
autograd gives each factor's gradient: a shared pair's gradient sums over the layers that use it.

Writes weights.safetensors (our state names: adapters.query_global.lora_A, ..., classifier.*) and expected.json
(logits, loss, gradient norms by state name). Run from the repository root with PyTorch
(apt-get install -y python3-torch libopenblas0-openmp python3-regex):
    /usr/bin/python3 test/MlNetPeft.Tests/Fixtures/reference-msplora/make.py
"""
import json, os, sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, *[".."] * 4))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import reference as ref  # noqa: E402

PARITY = os.path.join(HERE, "..", "hf-parity")


def main():
    c = json.load(open(os.path.join(PARITY, "tiny-roberta", "config.json")))
    d = json.load(open(os.path.join(PARITY, "parity.json")))
    model = ref.load_backbone(ref.RobertaForSequenceClassification(c, 3), os.path.join(PARITY, "tiny-roberta"))
    ref.inject(model, "msplora", targets=("query", "value"), r=8, alpha=16, dropout=0.0, groups=3, levels=3)
    g = torch.Generator().manual_seed(11)
    names = {}  # the reference's LowRank module -> our component name
    layers = model.roberta.encoder.layer
    for i, layer in enumerate(layers):
        for t in ("query", "value"):
            glob, mid, own = getattr(layer.attention.self, t).parts
            group = min(int(i * 3 / len(layers)), 2)
            for part, name in ((glob, f"{t}_global"), (mid, f"{t}_mid1_group{group}"), (own, f"{t}_layer{i}")):
                assert names.setdefault(part, name) == name, "one module per component"
    assert len(names) == 2 * (1 + 3 + 4)
    with torch.no_grad():
        for part in names:
            part.A.copy_(torch.randn(part.A.shape, generator=g) * 0.2)
            part.B.copy_(torch.randn(part.B.shape, generator=g) * 0.2)
        for p in model.classifier.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    model.eval()  # the fixture has no dropout; this fixes the reference's own dropout modules off too
    logits = model(torch.tensor(d["input_ids"]), torch.tensor(d["attention_mask"]))
    loss = F.cross_entropy(logits, torch.tensor(d["labels"]))
    loss.backward()

    weights, norms = {}, {}
    for part, name in names.items():
        for ours, p in ((f"adapters.{name}.lora_A", part.A), (f"adapters.{name}.lora_B", part.B)):
            weights[ours], norms[ours] = p.detach().clone(), p.grad.norm().item()
    for n, p in model.classifier.named_parameters():
        weights[f"classifier.{n}"], norms[f"classifier.{n}"] = p.detach().clone(), p.grad.norm().item()
    ref.save_safetensors(weights, os.path.join(HERE, "weights.safetensors"))
    with open(os.path.join(HERE, "expected.json"), "w") as f:
        json.dump({"torch": torch.__version__, "logits": logits.tolist(), "loss": loss.item(), "grad_norms": norms}, f, indent=1)
    print("loss", loss.item(), "logits", logits.tolist())


if __name__ == "__main__":
    main()
