#!/usr/bin/env python3
"""What the PyTorch reference (bench/reference.py, equal to transformers on hf-parity to 1e-8) computes on the tiny
fixture model, for the tests to hold our training forward and backward against.

msplora: the reference's MSPLoRA (`inject(model, "msplora")`) wires the pairs as the authors' code does: for query and
value, one rank-8 global pair shared by all 4 layers, one rank-4 pair per contiguous group of layers (3 groups:
layers 0-1, 2, 3, as min(int(i·3/4), 2)), one rank-2 pair per layer, each scaled by alpha / its rank (alpha 16). Its
factors get random values here (B nonzero, so the update is not zero), the head random values too; then the parity
inputs are scored, the cross-entropy on the parity labels is taken, and autograd gives each factor's gradient: a
shared pair's gradient sums over the layers that use it. msplora.safetensors holds the factors and head under our
state names (adapters.query_global.lora_A, ..., classifier.*).

lorasquared: LoRA² on query and value (r 4, inner rank k 2, alpha 8), forward as the authors' SVDLinear
(github Godz-z/LoRA-2, loralib/LoRA2.py): y = W0·x + x·Aᵀ·Bᵀ·diag(E ⊙ mask)·aaᵀ·bbᵀ · alpha / (r + 1e-5), with A k×in,
B r×k, aa k×r, bb out×k; layer 1's query has its first singular value pruned (mask 0). Its loss adds the regulariser
as the paper means it (the released code never adds its cross term): 0.1 · the mean over all factors of
||M·Mᵀ − I||_F (A, aa) or ||Mᵀ·M − I||_F (B, bb), plus 0.1 · the mean over matrices of ||(bb·aa)·(B·A)||_F.
lorasquared.safetensors holds its factors, masks and head under our state names.

full: full fine-tuning from the fixture checkpoint with its own head: the same loss and the gradient of every
backbone and head weight (the pad rows of the word and position embeddings get none, as nn.Embedding's padding_idx
has it).

trajectory: six optimizer steps of bench/reference.py's own training step (`optimizer`, `train_step`: AdamW with the
body at lr and the head at lr/2, weight decay 0.1, a linear warm-up over int(0.34·6) = 2 steps then a linear decay,
global-norm clipping at 1.0, the reference's `glue` recipe) on three padded batches of random ids, taken twice in
order: MSPLoRA from msplora.safetensors's factors and head (lr 5e-3), full fine-tuning from the fixture checkpoint
with its head (lr 1e-3). For each: the loss and the gradient norm before clipping at every step, and how far each
trainable tensor moved (‖W₆ − W₀‖ by our state names).

expected.json: logits, loss (with lorasquared's regulariser) and gradient norms by our state names for each. Run from the repository root with PyTorch
(apt-get install -y python3-torch libopenblas0-openmp python3-regex):
    /usr/bin/python3 test/MlNetPeft.Tests/Fixtures/reference/make.py
"""
import json, os, sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, *[".."] * 4))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import reference as ref  # noqa: E402

PARITY = os.path.join(HERE, "..", "hf-parity")


def tiny():
    c = json.load(open(os.path.join(PARITY, "tiny-roberta", "config.json")))
    return ref.load_backbone(ref.RobertaForSequenceClassification(c, 3), os.path.join(PARITY, "tiny-roberta"))


def loss_and_grads(model, names, extra=0):
    """Logits and cross-entropy (+ extra) on the parity inputs and labels, and the gradient norm of each named parameter."""
    d = json.load(open(os.path.join(PARITY, "parity.json")))
    model.eval()  # the fixture has no dropout; this fixes the reference's own dropout modules off too
    logits = model(torch.tensor(d["input_ids"]), torch.tensor(d["attention_mask"]))
    loss = F.cross_entropy(logits, torch.tensor(d["labels"])) + extra
    loss.backward()
    return {"logits": logits.tolist(), "loss": loss.item(), "grad_norms": {ours: p.grad.norm().item() for ours, p in names.items()}}


def msplora_model():
    """The tiny model with the reference's MSPLoRA, random factors and head; returns it and its trainable tensors by
    our state names."""
    model = tiny()
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
    params = {}
    for part, name in names.items():
        params[f"adapters.{name}.lora_A"], params[f"adapters.{name}.lora_B"] = part.A, part.B
    params.update({f"classifier.{n}": p for n, p in model.classifier.named_parameters()})
    return model, params


def msplora():
    model, params = msplora_model()
    ref.save_safetensors({n: p.detach().clone() for n, p in params.items()}, os.path.join(HERE, "msplora.safetensors"))
    return loss_and_grads(model, params)


class TwoPlane(torch.nn.Module):
    """The authors' LoRA² SVDLinear, one adapter, no dropout."""

    def __init__(self, base, r, k, alpha, g):
        super().__init__()
        self.base, self.scale = base, alpha / (r + 1e-5)
        rnd = lambda *shape: torch.nn.Parameter(torch.randn(*shape, generator=g) * 0.3)
        self.lora_A, self.lora_B, self.lora_E = rnd(k, base.in_features), rnd(r, k), rnd(r, 1)
        self.lora_aa, self.lora_bb = rnd(k, r), rnd(base.out_features, k)
        self.rank_mask = torch.ones(r, 1)

    def forward(self, x):
        h = x @ self.lora_A.T @ self.lora_B.T * (self.lora_E * self.rank_mask).view(-1) * self.scale
        return self.base(x) + h @ self.lora_aa.T @ self.lora_bb.T


def lorasquared():
    model = tiny()
    g = torch.Generator().manual_seed(13)
    adapters = {}
    for i, layer in enumerate(model.roberta.encoder.layer):
        for t in ("query", "value"):
            adapters[f"layer{i}_{t}"] = adapter = TwoPlane(getattr(layer.attention.self, t), 4, 2, 8, g)
            setattr(layer.attention.self, t, adapter)
    adapters["layer1_query"].rank_mask[0] = 0
    with torch.no_grad():
        for p in model.classifier.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    rows = [m for a in adapters.values() for m in (a.lora_A, a.lora_aa)]
    columns = [m for a in adapters.values() for m in (a.lora_B, a.lora_bb)]
    eye = lambda n: torch.eye(n)
    orthogonality = torch.stack([torch.norm(m @ m.T - eye(m.shape[0])) for m in rows]
                                + [torch.norm(m.T @ m - eye(m.shape[1])) for m in columns]).mean()
    cross = torch.stack([torch.norm((a.lora_bb @ a.lora_aa) @ (a.lora_B @ a.lora_A)) for a in adapters.values()]).mean()
    params = {f"adapters.{name}.{n}": p for name, a in adapters.items() for n, p in a.named_parameters() if n.startswith("lora_")}
    params.update({f"classifier.{n}": p for n, p in model.classifier.named_parameters()})
    saved = {n: p.detach().clone() for n, p in params.items()}
    saved.update({f"adapters.{name}.rank_mask": a.rank_mask.clone() for name, a in adapters.items()})
    ref.save_safetensors(saved, os.path.join(HERE, "lorasquared.safetensors"))
    return loss_and_grads(model, params, extra=0.1 * orthogonality + 0.1 * cross)


def full_model():
    """The fixture checkpoint with its own head, every weight trainable."""
    model = tiny()
    head = ref.load_safetensors(os.path.join(PARITY, "tiny-roberta", "model.safetensors"))
    model.load_state_dict({k: v for k, v in head.items() if k.startswith("classifier.")}, strict=False)
    return model, dict(model.named_parameters())


def full():
    return loss_and_grads(*full_model())


STEPS, WARMUP_RATIO, CLIP = 6, 0.34, 1.0


def batches():
    """Three batches (4, 3 and 4 rows) of random ids between <s> and </s>, padded with 1, and random labels."""
    g = torch.Generator().manual_seed(17)
    made = []
    for rows in (4, 3, 4):
        lengths = torch.randint(4, 13, (rows,), generator=g).tolist()
        ids = torch.full((rows, max(lengths)), 1, dtype=torch.long)
        for k, n in enumerate(lengths):
            ids[k, :n] = torch.cat([torch.tensor([0]), torch.randint(3, 1000, (n - 2,), generator=g), torch.tensor([2])])
        made.append((ids, ids.ne(1).long(), torch.randint(0, 3, (rows,), generator=g)))
    return made


def trajectory(model, params, lr):
    """STEPS steps of the reference's training step over the batches in order; losses, gradient norms before
    clipping, and each tensor's distance from where it started."""
    start = {n: p.detach().clone() for n, p in params.items()}
    opt, sched = ref.optimizer(model, lr, 0.5, 0.1, STEPS, WARMUP_RATIO)
    model.train()  # the fixture has no dropout, and the adapters here none either
    made, losses, norms = batches(), [], []
    for step in range(STEPS):
        ids, mask, y = made[step % len(made)]
        loss, norm = ref.train_step(model, opt, sched, ids, mask, y, False, CLIP)
        losses.append(loss); norms.append(norm)
    moved = {n: (p.detach() - start[n]).norm().item() for n, p in params.items()}
    return {"lr": lr, "losses": losses, "grad_norms_before_clipping": norms, "moved": moved,
            "batches": [{"input_ids": i.tolist(), "attention_mask": m.tolist(), "labels": y.tolist()} for i, m, y in made]}


def trajectories():
    return {"steps": STEPS, "warmup_ratio": WARMUP_RATIO, "clip_norm": CLIP, "head_lr_ratio": 0.5, "weight_decay": 0.1,
            "msplora": trajectory(*msplora_model(), lr=5e-3), "full": trajectory(*full_model(), lr=1e-3)}


def main():
    expected = {"torch": torch.__version__, "msplora": msplora(), "lorasquared": lorasquared(), "full": full(),
                "trajectory": trajectories()}
    with open(os.path.join(HERE, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
    for k in ("msplora", "lorasquared", "full"):
        print(k, "loss", expected[k]["loss"], "gradients", len(expected[k]["grad_norms"]))
    for k in ("msplora", "full"):
        t = expected["trajectory"][k]
        print("trajectory", k, "losses", [round(v, 4) for v in t["losses"]], "norms", [round(v, 3) for v in t["grad_norms_before_clipping"]])


if __name__ == "__main__":
    main()
