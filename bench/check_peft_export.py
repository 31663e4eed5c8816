#!/usr/bin/env python3
"""Loads what `MlNetPeft.Bench peft-export --out DIR [--targets all]` wrote with the PyTorch reference's RoBERTa
(bench/reference.py, equal to transformers on the HF fixture): each method's PEFT LoRA adapter by PEFT's own
target_modules rule (below), AdaLoRA's PEFT AdaLoRA adapter as PEFT loads it (rank_pattern), and each merged plain
checkpoint through the reference's HF weight loader; compares the logits with ours.

    /usr/bin/python3 bench/check_peft_export.py DIR [--fixture test/MlNetPeft.Tests/Fixtures/hf-parity]
"""
import argparse, json, math, os, re, sys

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference as R  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("dir")
ap.add_argument("--fixture", default=os.path.join(R.HERE, "..", "test", "MlNetPeft.Tests", "Fixtures", "hf-parity"))
a = ap.parse_args()
config = json.load(open(os.path.join(a.fixture, "tiny-roberta", "config.json")))
parity = json.load(open(os.path.join(a.fixture, "parity.json")))
ids, mask = torch.tensor(parity["input_ids"]), torch.tensor(parity["attention_mask"])


class LoraLinear(nn.Module):
    def __init__(self, base, A, B, scale):
        super().__init__()
        self.base, self.A, self.B, self.scale = base, nn.Parameter(A.clone()), nn.Parameter(B.clone()), scale

    def forward(self, x):
        return self.base(x) + torch.nn.functional.linear(torch.nn.functional.linear(x, self.A), self.B) * self.scale


class DoraLinear(LoraLinear):
    """PEFT's DoRA forward (tuners/lora/dora.py): the row norms of W + scale*B@A held constant, the magnitude m trained."""
    def __init__(self, base, A, B, scale, m):
        super().__init__(base, A, B, scale)
        self.m = nn.Parameter(m.clone())

    def forward(self, x):
        norm = torch.linalg.norm(self.base.weight + self.scale * (self.B @ self.A).detach(), dim=1).detach()
        s = (self.m / norm).view(1, -1)
        lora = torch.nn.functional.linear(torch.nn.functional.linear(x, self.A), self.B) * self.scale
        return self.base(x) + (s - 1) * torch.nn.functional.linear(x, self.base.weight) + s * lora


class AdaLoraLinear(nn.Module):
    """PEFT's AdaLoRA SVDLinear (tuners/adalora/layer.py) as loaded: rebuilt at the rank its rank_pattern keeps, with
    ranknum copied back (init_r), so y = W0·x + (x @ (A*E).T @ B.T) * lora_alpha / (init_r + 1e-5)."""
    def __init__(self, base, A, E, B, alpha, ranknum):
        super().__init__()
        self.base, self.A, self.E, self.B = base, A.clone(), E.clone(), B.clone()
        self.scale = alpha / (ranknum + 1e-5)

    def forward(self, x):
        return self.base(x) + (x @ (self.A * self.E).T @ self.B.T) * self.scale


def selects(cfg):
    """PEFT's own rule (tuners_utils.check_target_module_exists), not our C# mapping: a Linear is adapted when its
    module path is listed or ends with "." + a listed name, or when a string target_modules matches the path whole."""
    targets = cfg["target_modules"]
    by_name = (lambda name: re.fullmatch(targets, name) is not None) if isinstance(targets, str) \
        else (lambda name: name in targets or any(name.endswith("." + t) for t in targets))
    layers = cfg.get("layers_to_transform")  # PEFT: the module's index after its "layer" pattern must be listed
    layers = [layers] if isinstance(layers, int) else layers

    def selected(name):
        if not by_name(name) or isinstance(targets, str):  # PEFT applies layers_to_transform to list targets only
            return by_name(name)
        index = re.match(r".*\.layer\.(\d+)\.", name)
        return layers is None or (index is not None and int(index.group(1)) in layers)
    return selected


def adapter_state(path):
    return {k.replace("base_model.model.", ""): v for k, v in R.load_safetensors(os.path.join(path, "adapter_model.safetensors")).items()}


def load_head(model, sd):
    with torch.no_grad():
        for k, v in sd.items():
            if k.startswith("classifier."):
                model.get_parameter(k.replace("modules_to_save.default.", "")).copy_(v)


def load_peft_lora(model, path):
    """A PEFT LoRA adapter: each Linear PEFT's rule selects wrapped with the factors named by its path."""
    cfg = json.load(open(os.path.join(path, "adapter_config.json")))
    selected = selects(cfg)

    def pattern(name, key, default):  # PEFT's get_pattern_key: the first key whose regex ends the module path
        return next((v for k, v in (cfg.get(key) or {}).items() if re.match(rf"(.*\.)?({k})$", name)), default)

    def scale(name):  # lora_alpha / r, each from its pattern where one matches (rank_pattern, alpha_pattern)
        r, alpha = pattern(name, "rank_pattern", cfg["r"]), pattern(name, "alpha_pattern", cfg["lora_alpha"])
        return alpha / (math.sqrt(r) if cfg.get("use_rslora") else r)
    sd = adapter_state(path)
    used, wrapped = set(), {}
    # bias "all" / "lora_only": PEFT's loader puts the saved biases into its model, where an adapted Linear is the
    # wrapper's base_layer; here they go into the model's own parameters before any Linear is wrapped.
    biases = {k: model.get_parameter(k.replace(".base_layer.", ".")) for k in sd if k.endswith(".bias") and not k.startswith("classifier.")}
    assert not biases or cfg.get("bias") in ("all", "lora_only"), f"bias tensors in an adapter with bias {cfg.get('bias')!r}"
    with torch.no_grad():
        for k, p in biases.items():
            p.copy_(sd[k])
    used |= set(biases)
    model.peft_biases = biases
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Linear) and selected(name):
            a, b = f"{name}.lora_A.weight", f"{name}.lora_B.weight"
            parent, child = name.rsplit(".", 1)
            m = f"{name}.lora_magnitude_vector"
            assert sd[a].shape[0] == pattern(name, "rank_pattern", cfg["r"]), f"{a}: rank {sd[a].shape[0]} is not PEFT's for {name}"
            layer = DoraLinear(module, sd[a], sd[b], scale(name), sd[m]) if cfg.get("use_dora") else LoraLinear(module, sd[a], sd[b], scale(name))
            setattr(model.get_submodule(parent), child, layer)
            wrapped[name] = layer
            used |= {a, b} | ({m} if cfg.get("use_dora") else set())
    unused = [k for k in sd if ".lora_" in k and k not in used]
    assert not unused, f"adapter keys of modules target_modules does not select: {unused[:3]}"
    load_head(model, sd)
    return wrapped


def load_peft_adalora(model, path):
    """A PEFT AdaLoRA adapter as PEFT loads one (resize_modules_by_rank_pattern): each selected Linear gets the rank
    its rank_pattern entry keeps (init_r when it has none), which must be the saved factors' rank."""
    cfg = json.load(open(os.path.join(path, "adapter_config.json")))
    assert cfg["peft_type"] == "ADALORA" and cfg["total_step"] > 0 and cfg["tinit"] < cfg["total_step"] - cfg["tfinal"], \
        "PEFT's AdaLoraConfig refuses this schedule (it needs total_step > 0 and tinit < total_step - tfinal)"
    selected, sd, wrapped = selects(cfg), adapter_state(path), {}
    pattern = {k.replace("base_model.model.", ""): v for k, v in (cfg.get("rank_pattern") or {}).items()}
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Linear) and selected(name):
            kept = pattern.get(f"{name}.lora_E")
            rank = sum(kept) if kept is not None else cfg["init_r"]
            if kept is not None:
                assert len(kept) == cfg["init_r"], f"{name}: rank_pattern lists {len(kept)} values, init_r is {cfg['init_r']}"
            A, E, B = (sd[f"{name}.lora_{w}"] for w in "AEB")
            assert A.shape[0] == E.shape[0] == B.shape[1] == rank, f"{name}: saved rank {A.shape[0]}, its rank_pattern keeps {rank}"
            parent, child = name.rsplit(".", 1)
            wrapped[name] = AdaLoraLinear(module, A, E, B, cfg["lora_alpha"], cfg["init_r"])
            setattr(model.get_submodule(parent), child, wrapped[name])
    assert len(pattern) in (0, len(wrapped)), "rank_pattern entries of modules target_modules does not select"
    load_head(model, sd)
    return wrapped


ok = True
for method in sorted(os.listdir(a.dir)):
    ours = torch.tensor(json.load(open(os.path.join(a.dir, method, "logits.json"))))
    for form in ("adapter", "adalora-adapter", "merged"):
        path = os.path.join(a.dir, method, form)
        if not os.path.isdir(path):
            continue
        if form == "adalora-adapter":  # AdaLoRA in PEFT's own AdaLoRA form
            model = R.load_backbone(R.RobertaForSequenceClassification(config, 3), os.path.join(a.fixture, "tiny-roberta"))
            wrapped = load_peft_adalora(model, path)
            cfg = json.load(open(os.path.join(path, "adapter_config.json")))
            what = {"init_r": cfg["init_r"], "kept": sum(m.A.shape[0] for m in wrapped.values()), "adapted_linears": len(wrapped)}
        elif form == "adapter":  # the fixture's backbone with the PEFT adapter (and its head) on top
            model = R.load_backbone(R.RobertaForSequenceClassification(config, 3), os.path.join(a.fixture, "tiny-roberta"))
            wrapped = load_peft_lora(model, path)
            cfg = json.load(open(os.path.join(path, "adapter_config.json")))
            what = {"r": cfg["r"], "lora_alpha": cfg["lora_alpha"], "target_modules": cfg["target_modules"], "adapted_linears": len(wrapped)}
            grads_file = os.path.join(a.dir, method, "gradients.safetensors")
            if os.path.exists(grads_file):  # LoRA, DoRA: our gradients of the fixture's loss against PyTorch's autograd
                model.eval()
                torch.nn.functional.cross_entropy(model(ids, mask), torch.tensor(parity["labels"])).backward()
                mlnet = R.load_safetensors(grads_file)
                pairs = [(getattr(m, w).grad, mlnet[f"base_model.model.{name}.lora_{w}.weight"]) for name, m in wrapped.items() for w in "AB"]
                pairs += [(m.m.grad, mlnet[f"base_model.model.{name}.lora_magnitude_vector"]) for name, m in wrapped.items() if isinstance(m, DoraLinear)]
                pairs += [(p.grad, mlnet[f"base_model.model.{k}"]) for k, p in model.peft_biases.items()]
                what["trained_biases"] = len(model.peft_biases)
                # A gradient that is zero in exact arithmetic (the key biases': softmax ignores a shift) has no relative
                # error: those below 1e-6 of the largest are left out, as MethodParity leaves them out.
                largest = max(torch_grad.abs().max().item() for torch_grad, _ in pairs)
                worst = max((torch_grad - our_grad).abs().max().item() / torch_grad.abs().max().item()
                            for torch_grad, our_grad in pairs if torch_grad.abs().max().item() > 1e-6 * largest)
                what["max_rel_gradient_error"] = worst
                ok &= worst < 1e-4
        else:  # a plain checkpoint: backbone and head from its model.safetensors alone
            model = R.load_backbone(R.RobertaForSequenceClassification(config, 3), path)
            what = {}
        model.eval()
        with torch.no_grad():
            error = (model(ids, mask) - ours).abs().max().item()
        print(json.dumps({"method": method, "form": form, **what, "max_abs_logit_error": error}))
        ok &= error < 1e-5
sys.exit(0 if ok else 1)
