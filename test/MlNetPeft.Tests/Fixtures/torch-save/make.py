#!/usr/bin/env python3
"""Writes this folder's fixtures with torch.save, as HF's pre-safetensors checkpoints hold them:
- pytorch_model.bin: hf-parity/tiny-roberta's weights, plus 'extra.*' tensors that exercise the reader: a transposed
  view, two views at offsets into one storage, fp16, bf16, int64, bool, a 0-d and an empty tensor.
- expected.safetensors: the 'extra.*' tensors, contiguous (the bool one as int64).
- adapter_model.bin: hf-parity/tiny-lora's adapter_model.safetensors.
- legacy.bin: that adapter and the 'extra.*' tensors in torch.save's format from before PyTorch 1.6.
Run from the repository root with PyTorch (apt-get install -y python3-torch libopenblas0-openmp):
    /usr/bin/python3 test/MlNetPeft.Tests/Fixtures/torch-save/make.py
"""
import collections, os, sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, *[".."] * 4))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from reference import load_safetensors, save_safetensors  # noqa: E402

PARITY = os.path.join(HERE, "..", "hf-parity")


def state_dict(tensors):
    """An OrderedDict with the _metadata attribute that nn.Module.state_dict() gives."""
    d = collections.OrderedDict(tensors)
    d._metadata = collections.OrderedDict({"": {"version": 1}})
    return d


def main():
    weights = load_safetensors(os.path.join(PARITY, "tiny-roberta", "model.safetensors"))
    g = torch.Generator().manual_seed(0)
    base = torch.randn(6, 5, generator=g)
    shared = torch.arange(20, dtype=torch.float32)
    extra = {
        "extra.transposed": base.t(),
        "extra.first_row": shared[0:4],
        "extra.window": shared[6:18].view(3, 4),
        "extra.half": torch.randn(3, 2, generator=g).half(),
        "extra.bfloat16": torch.randn(2, 3, generator=g).bfloat16(),
        "extra.long": torch.arange(7),
        "extra.bool": torch.tensor([True, False, True]),
        "extra.scalar": torch.tensor(2.5),
        "extra.empty": torch.zeros(0, 4),
    }
    everything = dict(weights, **extra)
    torch.save(state_dict(everything), os.path.join(HERE, "pytorch_model.bin"))
    save_safetensors({k: (v.long() if v.dtype == torch.bool else v).contiguous() for k, v in extra.items()},
                     os.path.join(HERE, "expected.safetensors"))
    adapter = load_safetensors(os.path.join(PARITY, "tiny-lora", "adapter_model.safetensors"))
    torch.save(state_dict(adapter), os.path.join(HERE, "adapter_model.bin"))
    torch.save(state_dict(dict(adapter, **extra)), os.path.join(HERE, "legacy.bin"), _use_new_zipfile_serialization=False)


if __name__ == "__main__":
    main()
