#!/usr/bin/env python3
"""Checks that `neox convert to-hf` output loads in transformers and gives the reference logits.

Usage: python3 tools/check_hf_export.py EXPORT:FIXTURE [EXPORT:FIXTURE ...] [--tol 1e-4]

  EXPORT   a folder written by `neox convert to-hf`
  FIXTURE  a folder of tests/fixtures/hf/ (its reference.safetensors holds input_ids and the
           logits transformers computed for the original model; its weights are compared too)

For each pair: AutoModelForCausalLM.from_pretrained(EXPORT) in fp32 with eager attention, its
logits on the fixture's input_ids against the reference (max |diff| / max |reference|), the
loss, and whether every weight tensor equals the fixture's (names, dtypes, values). Prints one
JSON object per pair and exits 1 if any pair fails.

Typical round on the GPU host (Node carried, or run the two `neox` lines here and carry /tmp/rt):
  for m in gpt_neox llama mistral; do
    node bin/neox.js convert from-hf tests/fixtures/hf/$m /tmp/rt/$m-neox
    node bin/neox.js convert to-hf /tmp/rt/$m-neox /tmp/rt/$m-hf
  done
  python3 tools/check_hf_export.py /tmp/rt/gpt_neox-hf:tests/fixtures/hf/gpt_neox \\
      /tmp/rt/llama-hf:tests/fixtures/hf/llama /tmp/rt/mistral-hf:tests/fixtures/hf/mistral
"""
import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F
import transformers
from safetensors.torch import load_file


def weights(folder):
    """All tensors of a folder: model.safetensors or the shards its index names."""
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    out = {}
    for name in files:
        out.update(load_file(os.path.join(folder, name)))
    return out


def check(export, fixture, tol):
    result = {"export": export, "fixture": fixture, "transformers": transformers.__version__}
    try:
        ref = load_file(os.path.join(fixture, "reference.safetensors"))
        ids = ref["input_ids"].long()
        from transformers import AutoModelForCausalLM
        try:
            model = AutoModelForCausalLM.from_pretrained(export, attn_implementation="eager", dtype=torch.float32)
        except TypeError:
            model = AutoModelForCausalLM.from_pretrained(export, attn_implementation="eager", torch_dtype=torch.float32)
        model = model.float().eval()
        with torch.no_grad():
            logits = model(input_ids=ids).logits.float()
        V = logits.shape[-1]
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1))
        diff = (logits - ref["logits"]).abs().max().item()
        rel = diff / ref["logits"].abs().max().item()
        mine, theirs = weights(export), weights(fixture)
        same_names = sorted(mine) == sorted(theirs)
        unequal = [n for n in theirs if n in mine and (mine[n].dtype != theirs[n].dtype or not torch.equal(mine[n], theirs[n]))]
        result.update({
            "class": type(model).__name__,
            "max_abs_diff": diff,
            "rel_err": rel,
            "loss": float(loss),
            "reference_loss": float(ref["loss"]),
            "same_tensor_names": same_names,
            "tensors_not_equal": unequal[:10],
            "ok": rel <= tol and same_names and not unequal,
        })
    except Exception as e:
        result.update({"ok": False, "error": repr(e)[:1000]})
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pairs", nargs="+", help="EXPORT:FIXTURE")
    ap.add_argument("--tol", type=float, default=1e-4)
    args = ap.parse_args()
    ok = True
    for pair in args.pairs:
        export, _, fixture = pair.partition(":")
        r = check(export, fixture, args.tol)
        ok = ok and r["ok"]
        print(json.dumps(r))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
