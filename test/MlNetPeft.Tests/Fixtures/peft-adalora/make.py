#!/usr/bin/env python3
"""Writes a HF PEFT AdaLoRA adapter for hf-parity/tiny-roberta as peft 0.21 saves one after rank allocation, and the
logits PEFT gives with it on the parity fixture's inputs.

transformers and peft are not installable here, so this follows peft 0.21's code (src/peft/tuners/adalora/) step by
step on the PyTorch reference's RoBERTa (bench/reference.py, equal to transformers on the fixture to 1e-8):
- SVDLinear: lora_A (r×in), lora_E (r×1), lora_B (out×r), ranknum = float(init_r) (not saved);
  y = W0·x + (x @ (A*E).T @ B.T) * lora_alpha / (ranknum + 1e-5).
- Saving (AdaLoraModel._get_adapter_state_dict): rank_pattern keys lose the adapter name; each module's lora_A and
  lora_E keep the rows, lora_B the columns, whose rank_pattern entry is true (a module whose pattern is all true is
  saved as it is); ranknum is dropped. Keys are "base_model.model.<path>.lora_A" (ParameterDicts: no ".weight").
- Loading (resize_modules_by_rank_pattern): each module is rebuilt at its kept rank, and ranknum is copied back, so
  the scale stays lora_alpha / (init_r + 1e-5).
- modules_to_save: the head as "base_model.model.classifier.*" (as the LoRA fixture, made by peft 0.21, has it).

Writes tiny-adalora/{adapter_config.json, adapter_model.safetensors} and expected.json here.
Run from the repository root with PyTorch (apt-get install -y python3-torch libopenblas0-openmp python3-regex):
    /usr/bin/python3 test/MlNetPeft.Tests/Fixtures/peft-adalora/make.py
"""
import json, os, sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, *[".."] * 4))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import reference as ref  # noqa: E402

PARITY = os.path.join(HERE, "..", "hf-parity")
INIT_R, TARGET_R, ALPHA = 6, 3, 10
TARGETS = ["query", "value", "intermediate.dense"]


class SvdLinear(torch.nn.Module):
    """peft's SVDLinear, one adapter, no dropout (inference)."""

    def __init__(self, base, r, alpha):
        super().__init__()
        self.base, self.alpha = base, alpha
        self.lora_A = torch.nn.Parameter(torch.zeros(r, base.in_features))
        self.lora_E = torch.nn.Parameter(torch.zeros(r, 1))
        self.lora_B = torch.nn.Parameter(torch.zeros(base.out_features, r))
        self.ranknum = float(r)

    def resize(self, rank):  # update_layer at the kept rank, ranknum copied back
        ranknum = self.ranknum
        self.__init__(self.base, rank, self.alpha)
        self.ranknum = ranknum

    def forward(self, x):
        return self.base(x) + (x @ (self.lora_A * self.lora_E).T @ self.lora_B.T) * self.alpha / (self.ranknum + 1e-5)


def module_paths(layers):
    for i in range(layers):
        for t in TARGETS:
            yield f"roberta.encoder.layer.{i}." + (f"attention.self.{t}" if t in ("query", "key", "value") else t)


def main():
    c = json.load(open(os.path.join(PARITY, "tiny-roberta", "config.json")))
    d = json.load(open(os.path.join(PARITY, "parity.json")))
    g = torch.Generator().manual_seed(7)
    paths = list(module_paths(c["num_hidden_layers"]))

    # What training left: full-rank factors, and the allocator's pattern (one module pruned to nothing, one untouched).
    rank_pattern = {}
    for n, path in enumerate(paths):
        keep = torch.rand(INIT_R, generator=g) < 0.5
        keep = torch.zeros(INIT_R, dtype=torch.bool) if n == 4 else torch.ones(INIT_R, dtype=torch.bool) if n == 1 else keep
        rank_pattern[f"{path}.lora_E"] = keep.tolist()
    model = ref.load_backbone(ref.RobertaForSequenceClassification(c, 3), os.path.join(PARITY, "tiny-roberta"))
    saved = {}
    for path in paths:
        lin = model.get_submodule(path)
        keep = torch.tensor(rank_pattern[f"{path}.lora_E"])
        full = {"lora_A": torch.randn(INIT_R, lin.in_features, generator=g) * 0.3,
                "lora_E": torch.randn(INIT_R, 1, generator=g),
                "lora_B": torch.randn(lin.out_features, INIT_R, generator=g) * 0.3}
        full["lora_E"][~keep] = 0  # mask_to_budget zeroes the pruned singular values in place
        for name, t in full.items():
            kept = t if bool(keep.all()) else (t[:, keep] if name == "lora_B" else t[keep])
            saved[f"base_model.model.{path}.{name}"] = kept.contiguous()
    for name, p in model.classifier.named_parameters():
        saved[f"base_model.model.classifier.{name}"] = torch.randn(p.shape, generator=g) * 0.2

    out = os.path.join(HERE, "tiny-adalora")
    os.makedirs(out, exist_ok=True)
    ref.save_safetensors(saved, os.path.join(out, "adapter_model.safetensors"))
    lora_config = json.load(open(os.path.join(PARITY, "tiny-lora", "adapter_config.json")))
    config = dict(lora_config, peft_type="ADALORA", r=8, lora_alpha=ALPHA, target_modules=TARGETS, init_r=INIT_R,
                  target_r=TARGET_R, tinit=10, tfinal=20, deltaT=2, beta1=0.85, beta2=0.85, orth_reg_weight=0.5,
                  total_step=100, rank_pattern=rank_pattern, lora_dropout=0.1)
    with open(os.path.join(out, "adapter_config.json"), "w") as f:
        json.dump(dict(sorted(config.items())), f, indent=2)

    # Load as PEFT does: modules at init_r, resized by the pattern, then the saved tensors (shapes must agree).
    for path in paths:
        parent, leaf = path.rsplit(".", 1)
        layer = SvdLinear(model.get_submodule(path), INIT_R, ALPHA)
        layer.resize(sum(rank_pattern[f"{path}.lora_E"]))
        setattr(model.get_submodule(parent), leaf, layer)
    state = {k.removeprefix("base_model.model."): v for k, v in saved.items()}
    missing = [k for k in state if k not in dict(model.named_parameters())]
    assert not missing, missing
    with torch.no_grad():
        for k, v in state.items():
            model.get_parameter(k).copy_(v)
    model.eval()
    ids, mask = torch.tensor(d["input_ids"]), torch.tensor(d["attention_mask"])
    with torch.no_grad():
        logits = model(ids, mask)
    with open(os.path.join(HERE, "expected.json"), "w") as f:
        json.dump({"adalora_logits": logits.tolist(), "torch": torch.__version__,
                   "kept_ranks": {p: sum(rank_pattern[f"{p}.lora_E"]) for p in paths}}, f, indent=1)
    print("kept ranks", [sum(v) for v in rank_pattern.values()], "logits", logits.tolist())


if __name__ == "__main__":
    main()
