#!/usr/bin/env python3
"""Scores sentences in Python with a model exported by MlNetPeft (`--export DIR` of the examples) and compares with
the scores MlNetPeft gave (`MlNetPeft.Bench score --model ZIP --out FILE`). Uses the PyTorch reference
(bench/reference.py: its RoBERTa, its byte-level BPE tokenizer, its PEFT loader), no .NET: DIR/hf-checkpoint on its
own, and DIR/peft-adapter on top of the backbone.

    /usr/bin/python3 bench/check_python_scores.py DIR SCORES.json --backbone models/roberta-mini
"""
import argparse, json, os, sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference as R  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("export")
ap.add_argument("scores")
ap.add_argument("--backbone", default=os.path.join(R.HERE, "..", "models", "roberta-mini"))
a = ap.parse_args()
rows = json.load(open(a.scores))
ours = torch.tensor([r["score"] for r in rows])
checkpoint = os.path.join(a.export, "hf-checkpoint")
config = json.load(open(os.path.join(checkpoint, "config.json")))
tokenizer = R.BPE(checkpoint)
regression = config.get("problem_type") == "regression"


def scores(model):
    model.eval()
    out = []
    with torch.no_grad():
        for r in rows:
            ids = torch.tensor([tokenizer.pair(r["sentence"], None, 128)])
            logits = model(ids, torch.ones_like(ids))[0]
            out.append(logits if regression else logits.softmax(-1))
    return torch.stack(out)


labels = len(config["id2label"])
merged = R.load_backbone(R.RobertaForSequenceClassification(config, labels), checkpoint)
adapted = R.load_peft_lora(R.load_backbone(R.RobertaForSequenceClassification(config, labels), a.backbone),
                           os.path.join(a.export, "peft-adapter"))
ok = True
for form, model in (("hf-checkpoint", merged), ("peft-adapter", adapted)):
    theirs = scores(model)
    error = (theirs - ours).abs().max().item()
    same = int((theirs.argmax(1) == ours.argmax(1)).sum()) if not regression else None
    print(json.dumps({"form": form, "rows": len(rows), "max_abs_score_error": error, "same_predicted_class": same}))
    ok &= error < 1e-5
sys.exit(0 if ok else 1)
