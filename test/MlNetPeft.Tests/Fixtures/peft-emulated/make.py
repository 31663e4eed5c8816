#!/usr/bin/env python3
"""Writes four HF PEFT adapters for hf-parity/tiny-roberta as peft 0.21 saves them, with what PEFT computes with
each on the parity fixture's inputs. transformers and peft are not installable here, so this follows peft 0.21's code
step by step on the PyTorch reference's RoBERTa (bench/reference.py, equal to transformers on the fixture to 1e-8).
Before writing anything it checks that this harness gives hf-parity/tiny-lora, made by peft 0.21 itself, the logits
transformers + peft gave. Every adapter keeps the head as "base_model.model.classifier.*" (modules_to_save), as that
fixture has it.

tiny-adalora: an AdaLoRA adapter saved after rank allocation (src/peft/tuners/adalora/):
- SVDLinear: lora_A (r×in), lora_E (r×1), lora_B (out×r), ranknum = float(init_r) (not saved);
  y = W0·x + (x @ (A*E).T @ B.T) * lora_alpha / (ranknum + 1e-5).
- Saving (AdaLoraModel._get_adapter_state_dict): rank_pattern keys lose the adapter name; each module's lora_A and
  lora_E keep the rows, lora_B the columns, whose rank_pattern entry is true (a module whose pattern is all true is
  saved as it is); ranknum is dropped. Keys are "base_model.model.<path>.lora_A" (ParameterDicts: no ".weight").
- Loading (resize_modules_by_rank_pattern): each module is rebuilt at its kept rank, and ranknum is copied back, so
  the scale stays lora_alpha / (init_r + 1e-5).

tiny-adalora-training: an AdaLoRA adapter saved before any pruning (no rank_pattern), with the training loss PEFT
computes on the parity inputs and labels (AdaLoraModel.forward: cross-entropy + orth_reg_weight · the mean over every
lora_A of ||A·Aᵀ − I||_F and every lora_B of ||Bᵀ·B − I||_F), the norm of each adapter and head gradient, and the
singular values RankAllocator keeps in three allocations on those gradients (steps 1-3 of a 50-step budget from
init_r 4 down to target_r 2 per matrix, tinit = tfinal = 0, deltaT = 1).

tiny-dora: a LoRA adapter with use_dora (r 4, lora_alpha 8), forward as peft's DoraLinearLayer
(src/peft/tuners/lora/dora.py): with V = W + (lora_alpha/r)·B·A and its row norms ||V|| held constant (detached),
y = W0·x + (m/||V|| − 1) ⊙ (x·Wᵀ) + (m/||V||) ⊙ (lora_alpha/r)·x·Aᵀ·Bᵀ, m = lora_magnitude_vector (saved without
".weight"); with the cross-entropy on the parity labels and the norm of each adapter and head gradient.

tiny-lora-patterns: a LoRA adapter with rank_pattern and alpha_pattern (src/peft/tuners/lora/model.py
_create_and_replace): each module's r and lora_alpha are those of the first pattern key k (in the config's order)
for which re.match(rf"(.*\\.)?({k})$", module_path) matches (peft.utils.other.get_pattern_key), else r and
lora_alpha; y = W0·x + (x @ A.T @ B.T) * lora_alpha / r.

Writes tiny-adalora/, tiny-adalora-training/, tiny-dora/ and tiny-lora-patterns/ (adapter_config.json, adapter_model.safetensors) and expected.json here.
Run from the repository root with PyTorch (apt-get install -y python3-torch libopenblas0-openmp python3-regex):
    /usr/bin/python3 test/MlNetPeft.Tests/Fixtures/peft-emulated/make.py
"""
import json, os, re, sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, *[".."] * 4))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import reference as ref  # noqa: E402

PARITY = os.path.join(HERE, "..", "hf-parity")
TARGETS = ["query", "value", "intermediate.dense"]


class SvdLinear(torch.nn.Module):
    """peft's AdaLoRA SVDLinear, one adapter, no dropout (inference)."""

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


class LoraLinear(torch.nn.Module):
    """peft's LoRA Linear, one adapter, no dropout (inference)."""

    def __init__(self, base, r, alpha):
        super().__init__()
        self.base, self.scaling = base, alpha / r
        self.lora_A = torch.nn.Linear(base.in_features, r, bias=False)
        self.lora_B = torch.nn.Linear(r, base.out_features, bias=False)

    def forward(self, x):
        return self.base(x) + self.lora_B(self.lora_A(x)) * self.scaling


class DoraLinear(LoraLinear):
    """peft's LoRA Linear with use_dora, one adapter, no dropout."""

    def __init__(self, base, r, alpha):
        super().__init__(base, r, alpha)
        self.lora_magnitude_vector = torch.nn.Parameter(torch.ones(base.out_features))

    def forward(self, x):
        norm = torch.linalg.norm(self.base.weight + self.scaling * (self.lora_B.weight @ self.lora_A.weight), dim=1).detach()
        s = (self.lora_magnitude_vector / norm).view(1, -1)
        lora = self.lora_B(self.lora_A(x)) * self.scaling
        return self.base(x) + (s - 1) * F.linear(x, self.base.weight) + s * lora


def get_pattern_key(pattern_keys, key_to_match):  # peft.utils.other.get_pattern_key
    for key in pattern_keys:
        if re.match(rf"(.*\.)?({key})$", key_to_match):
            return key
    return key_to_match


def module_paths(layers):
    for i in range(layers):
        for t in TARGETS:
            yield f"roberta.encoder.layer.{i}." + (f"attention.self.{t}" if t in ("query", "key", "value") else t)


def base_model():
    c = json.load(open(os.path.join(PARITY, "tiny-roberta", "config.json")))
    return ref.load_backbone(ref.RobertaForSequenceClassification(c, 3), os.path.join(PARITY, "tiny-roberta")), c


def head(model, g):
    return {f"base_model.model.classifier.{n}": torch.randn(p.shape, generator=g) * 0.2 for n, p in model.classifier.named_parameters()}


def write(name, tensors, config):
    out = os.path.join(HERE, name)
    os.makedirs(out, exist_ok=True)
    ref.save_safetensors(tensors, os.path.join(out, "adapter_model.safetensors"))
    base = json.load(open(os.path.join(PARITY, "tiny-lora", "adapter_config.json")))  # written by peft 0.21
    with open(os.path.join(out, "adapter_config.json"), "w") as f:
        json.dump(dict(sorted(dict(base, **config).items())), f, indent=2)


def load_and_score(model, paths, make_layer, tensors):
    """Wraps each adapted Linear as peft's loader does, loads the saved tensors (their shapes must agree) and scores."""
    for path in paths:
        parent, leaf = path.rsplit(".", 1)
        setattr(model.get_submodule(parent), leaf, make_layer(path, model.get_submodule(path)))
    params = dict(model.named_parameters())
    with torch.no_grad():
        for k, v in tensors.items():
            p = params[k.removeprefix("base_model.model.")]
            assert p.shape == v.shape, (k, p.shape, v.shape)
            p.copy_(v)
    model.eval()
    d = json.load(open(os.path.join(PARITY, "parity.json")))
    with torch.no_grad():
        return model(torch.tensor(d["input_ids"]), torch.tensor(d["attention_mask"])).tolist()


def adalora(g):
    init_r, alpha = 6, 10
    model, c = base_model()
    paths = list(module_paths(c["num_hidden_layers"]))
    # What training left: full-rank factors, and the allocator's pattern (one module pruned to nothing, one untouched).
    rank_pattern = {}
    for n, path in enumerate(paths):
        keep = torch.rand(init_r, generator=g) < 0.5
        keep = torch.zeros(init_r, dtype=torch.bool) if n == 4 else torch.ones(init_r, dtype=torch.bool) if n == 1 else keep
        rank_pattern[f"{path}.lora_E"] = keep.tolist()
    saved = {}
    for path in paths:
        lin = model.get_submodule(path)
        keep = torch.tensor(rank_pattern[f"{path}.lora_E"])
        full = {"lora_A": torch.randn(init_r, lin.in_features, generator=g) * 0.3,
                "lora_E": torch.randn(init_r, 1, generator=g),
                "lora_B": torch.randn(lin.out_features, init_r, generator=g) * 0.3}
        full["lora_E"][~keep] = 0  # mask_to_budget zeroes the pruned singular values in place
        for name, t in full.items():
            kept = t if bool(keep.all()) else (t[:, keep] if name == "lora_B" else t[keep])
            saved[f"base_model.model.{path}.{name}"] = kept.contiguous()
    saved.update(head(model, g))
    write("tiny-adalora", saved, dict(peft_type="ADALORA", r=8, lora_alpha=alpha, target_modules=TARGETS, init_r=init_r,
                                      target_r=3, tinit=10, tfinal=20, deltaT=2, beta1=0.85, beta2=0.85,
                                      orth_reg_weight=0.5, total_step=100, rank_pattern=rank_pattern, lora_dropout=0.1))

    def layer(path, lin):  # modules at init_r, resized by the pattern before the state dict is loaded
        svd = SvdLinear(lin, init_r, alpha)
        svd.resize(sum(rank_pattern[f"{path}.lora_E"]))
        return svd
    return load_and_score(model, paths, layer, saved), {p: sum(rank_pattern[f"{p}.lora_E"]) for p in paths}


def adalora_training(g):
    init_r, alpha, orth_reg_weight = 4, 8, 0.5
    model, c = base_model()
    paths = list(module_paths(c["num_hidden_layers"]))
    saved = {}
    for path in paths:
        lin = model.get_submodule(path)
        saved[f"base_model.model.{path}.lora_A"] = torch.randn(init_r, lin.in_features, generator=g) * 0.2
        saved[f"base_model.model.{path}.lora_E"] = torch.randn(init_r, 1, generator=g)
        saved[f"base_model.model.{path}.lora_B"] = torch.randn(lin.out_features, init_r, generator=g) * 0.2
    saved.update(head(model, g))
    write("tiny-adalora-training", saved, dict(peft_type="ADALORA", r=8, lora_alpha=alpha, target_modules=TARGETS,
                                               init_r=init_r, target_r=2, tinit=0, tfinal=0, deltaT=1, beta1=0.85,
                                               beta2=0.85, orth_reg_weight=orth_reg_weight, total_step=50,
                                               rank_pattern=None, lora_dropout=0.0))
    load_and_score(model, paths, lambda path, lin: SvdLinear(lin, init_r, alpha), saved)
    for n, p in model.named_parameters():  # PEFT trains the adapters and the head (modules_to_save) only
        p.requires_grad_("lora_" in n or n.startswith("classifier."))
    d = json.load(open(os.path.join(PARITY, "parity.json")))
    logits = model(torch.tensor(d["input_ids"]), torch.tensor(d["attention_mask"]))
    loss = F.cross_entropy(logits, torch.tensor(d["labels"]))  # RobertaForSequenceClassification's loss
    regu, count = 0, 0
    for n, p in model.named_parameters():
        if "lora_A" in n or "lora_B" in n:
            cov = p @ p.T if "lora_A" in n else p.T @ p
            regu, count = regu + torch.norm(cov - torch.eye(*cov.size()), p="fro"), count + 1
    loss = loss + orth_reg_weight * (regu / count)
    loss.backward()
    norms = {f"base_model.model.{n}": p.grad.norm().item() for n, p in model.named_parameters() if p.grad is not None}
    return {"logits": logits.tolist(), "loss": loss.item(), "grad_norms": norms}, allocate(model, steps=3, init_bgt=init_r * len(paths), target_bgt=2 * len(paths), total_step=50)


def allocate(model, steps, init_bgt, target_bgt, total_step, beta1=0.85, beta2=0.85):
    """peft's RankAllocator.update_and_allocate at steps 1.. (tinit = tfinal = 0, deltaT = 1) on the gradients as they
    are (no optimizer step between): update_ipt, the cubic budget_schedule, mask_to_budget (which zeroes lora_E)."""
    lora = {n: p for n, p in model.named_parameters() if "lora_" in n}
    avg_ipt = {n: torch.zeros_like(p) for n, p in lora.items()}
    avg_unc = {n: torch.zeros_like(p) for n, p in lora.items()}
    patterns = []
    for step in range(1, steps + 1):
        with torch.no_grad():
            for n, p in lora.items():
                ipt = (p * p.grad).abs()
                avg_ipt[n] = beta1 * avg_ipt[n] + (1 - beta1) * ipt
                avg_unc[n] = beta2 * avg_unc[n] + (1 - beta2) * (ipt - avg_ipt[n]).abs()
            score = {n: avg_ipt[n] * avg_unc[n] for n in lora}
            budget = int((init_bgt - target_bgt) * (1 - step / total_step) ** 3 + target_bgt)
            triplet = {n[: -len(".lora_E")]: score[n].view(-1) + score[n.replace("lora_E", "lora_A")].mean(dim=1)
                       + score[n.replace("lora_E", "lora_B")].mean(dim=0) for n in lora if n.endswith("lora_E")}
            threshold = torch.kthvalue(torch.cat(list(triplet.values())), k=init_bgt - budget)[0].item()
            for m, t in triplet.items():
                lora[f"{m}.lora_E"].masked_fill_((t <= threshold).view(-1, 1), 0.0)
            patterns.append({"budget": budget, "kept": {m: (t > threshold).tolist() for m, t in triplet.items()}})
    return patterns


def dora(g):
    r, alpha = 4, 8
    model, c = base_model()
    paths = list(module_paths(c["num_hidden_layers"]))
    saved = {}
    for path in paths:
        lin = model.get_submodule(path)
        A = torch.randn(r, lin.in_features, generator=g) * 0.3
        B = torch.randn(lin.out_features, r, generator=g) * 0.3
        norm = torch.linalg.norm(lin.weight.detach() + alpha / r * B @ A, dim=1)
        saved[f"base_model.model.{path}.lora_A.weight"], saved[f"base_model.model.{path}.lora_B.weight"] = A, B
        saved[f"base_model.model.{path}.lora_magnitude_vector"] = norm * (1 + 0.3 * torch.randn(norm.shape, generator=g))
    saved.update(head(model, g))
    write("tiny-dora", saved, dict(r=r, lora_alpha=alpha, target_modules=TARGETS, use_dora=True))
    load_and_score(model, paths, lambda path, lin: DoraLinear(lin, r, alpha), saved)
    for n, p in model.named_parameters():
        p.requires_grad_("lora_" in n or n.startswith("classifier."))
    d = json.load(open(os.path.join(PARITY, "parity.json")))
    logits = model(torch.tensor(d["input_ids"]), torch.tensor(d["attention_mask"]))
    loss = F.cross_entropy(logits, torch.tensor(d["labels"]))
    loss.backward()
    norms = {f"base_model.model.{n}": p.grad.norm().item() for n, p in model.named_parameters() if p.grad is not None}
    return {"logits": logits.tolist(), "loss": loss.item(), "grad_norms": norms}


def lora_with_patterns(g):
    r, alpha = 4, 8
    # Order matters: layer 1's query takes the first key, the other queries the second.
    rank_pattern = {r"layer\.1\..*query": 3, "query": 2, "layer.3.attention.self.value": 6}
    alpha_pattern = {"intermediate.dense": 24, "layer.2.attention.self.value": 5}
    model, c = base_model()
    paths = list(module_paths(c["num_hidden_layers"]))
    shapes = {}
    for path in paths:
        shapes[path] = (rank_pattern.get(get_pattern_key(rank_pattern.keys(), path), r),
                        alpha_pattern.get(get_pattern_key(alpha_pattern.keys(), path), alpha))
    saved = {}
    for path, (rank, _) in shapes.items():
        lin = model.get_submodule(path)
        saved[f"base_model.model.{path}.lora_A.weight"] = torch.randn(rank, lin.in_features, generator=g) * 0.3
        saved[f"base_model.model.{path}.lora_B.weight"] = torch.randn(lin.out_features, rank, generator=g) * 0.3
    saved.update(head(model, g))
    write("tiny-lora-patterns", saved, dict(r=r, lora_alpha=alpha, target_modules=TARGETS, rank_pattern=rank_pattern,
                                            alpha_pattern=alpha_pattern))
    logits = load_and_score(model, paths, lambda path, lin: LoraLinear(lin, *shapes[path]), saved)
    return logits, {p: {"r": s[0], "lora_alpha": s[1]} for p, s in shapes.items()}


def check_against_real_peft():
    """This harness (RoBERTa, LoraLinear, the loader) on hf-parity/tiny-lora, made by peft 0.21 itself, must give the
    logits transformers + peft gave."""
    cfg = json.load(open(os.path.join(PARITY, "tiny-lora", "adapter_config.json")))
    model, c = base_model()
    paths = [f"roberta.encoder.layer.{i}.attention.self.{t}" for i in range(c["num_hidden_layers"]) for t in cfg["target_modules"]]
    tensors = ref.load_safetensors(os.path.join(PARITY, "tiny-lora", "adapter_model.safetensors"))
    logits = load_and_score(model, paths, lambda path, lin: LoraLinear(lin, cfg["r"], cfg["lora_alpha"]), tensors)
    expected = json.load(open(os.path.join(PARITY, "parity.json")))["lora_logits"]
    error = max(abs(a - b) for r1, r2 in zip(logits, expected) for a, b in zip(r1, r2))
    assert error < 1e-6, f"the harness is off PEFT's own logits by {error}"
    return error


def main():
    print("harness against peft's own LoRA fixture: max logit error", check_against_real_peft())
    g = torch.Generator().manual_seed(7)
    adalora_logits, kept = adalora(g)
    lora_logits, shapes = lora_with_patterns(g)
    training, allocations = adalora_training(g)
    dora_expected = dora(g)
    with open(os.path.join(HERE, "expected.json"), "w") as f:
        json.dump({"torch": torch.__version__, "adalora_logits": adalora_logits, "kept_ranks": kept,
                   "lora_patterns_logits": lora_logits, "lora_patterns_shapes": shapes,
                   "adalora_training": training, "adalora_allocations": allocations, "dora": dora_expected}, f, indent=1)
    print("AdaLoRA kept ranks", list(kept.values()), "logits", adalora_logits)
    print("LoRA shapes", list(shapes.values()), "logits", lora_logits)


if __name__ == "__main__":
    main()
