#!/usr/bin/env python3
"""Golden Hugging Face fixtures for NeoX.ts (tests/fixtures/hf/), made once on a host with torch
and transformers and committed, so CPU tests check our numerics against the real thing.

Usage: python3 tools/make_hf_fixtures.py OUT [--tar]

Builds three tiny random models with transformers, on the CPU in float32, eager attention:
  gpt_neox/  GPTNeoXForCausalLM: rotary_pct 0.25, parallel residual, exact GELU, untied; fp32,
             one model.safetensors
  llama/     LlamaForCausalLM: GQA (4 query heads, 2 kv heads), rope_theta 50000, tied
             embeddings, intermediate 48; fp32, saved sharded (max_shard_size 40000 bytes)
  mistral/   MistralForCausalLM: MQA (4 / 1), sliding_window 4 < T = 12, untied; weights
             rounded to bf16 and saved as bf16 (the reference runs in fp32 on those values)
Each folder holds what save_pretrained wrote (config.json in this transformers' own form,
weights, generation_config.json) and reference.safetensors:
  input_ids  I32 [B, T]       random tokens
  logits     F32 [B, T, V]    model(input_ids).logits
  loss       F32 []           mean cross-entropy of logits[:, :-1] against input_ids[:, 1:]
  grad.NAME  F32              d loss / d parameter NAME (HF names), for a few parameters
summary.json records versions, checks (rotary dims and base really used, whether the sliding
window changed the logits, per position) and any error.

With --tar everything goes into OUT/fixtures.tar plus OUT/summary.json (the device runner
returns at most 8 files). Unpack with: tar -xf fixtures.tar -C tests/fixtures/hf
"""
import argparse
import copy
import json
import math
import os
import shutil
import sys
import tarfile
import tempfile
import traceback

import torch
import torch.nn.functional as F
import transformers
from safetensors.torch import save_file

B, T, V = 2, 12, 96
WINDOW = 4


def build(cls, config):
    """The model with eager attention (the reference path), fp32, eval mode."""
    try:
        config._attn_implementation = "eager"
    except Exception:
        pass
    try:
        model = cls._from_config(config, attn_implementation="eager")
    except Exception:
        model = cls(config)
    return model.float().eval()


def rotary_info(model):
    """(rotary dims, inv_freq list) from the model's inv_freq buffers."""
    for name, buf in model.named_buffers():
        if name == "inv_freq" or name.endswith(".inv_freq"):
            return 2 * buf.shape[0], [float(x) for x in buf.flatten().tolist()]
    return None, None


def randomize(model, seed, bf16=False):
    """Weights large enough that every part of the network matters to the logits."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if name.endswith("bias"):
                v = 0.1 * r
            elif p.ndim == 1:
                v = 1.0 + 0.2 * r  # norm weights
            elif "embed" in name or "lm_head" in name:
                v = 0.5 * r
            else:
                v = r / math.sqrt(p.shape[1])
            if bf16:
                v = v.to(torch.bfloat16).float()
            p.copy_(v)


def reference(model, seed, grad_names):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, V, (B, T), generator=g)
    model.zero_grad(set_to_none=True)
    logits = model(input_ids=ids).logits.float()
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1))
    loss.backward()
    params = dict(model.named_parameters())
    ref = {
        "input_ids": ids.to(torch.int32).contiguous(),
        "logits": logits.detach().contiguous(),
        "loss": loss.detach().reshape(()).contiguous(),
    }
    for n in grad_names:
        ref["grad." + n] = params[n].grad.detach().float().contiguous()
    with torch.no_grad():
        hf_loss = float(model(input_ids=ids, labels=ids).loss)
    return ids, logits.detach(), ref, {"loss": float(loss), "hf_loss": hf_loss}


def save(model, folder, **kw):
    try:
        model.save_pretrained(folder, safe_serialization=True, **kw)
    except TypeError:
        model.save_pretrained(folder, **kw)


def config_t4(cfg):
    """The transformers 4 spelling of a transformers 5 config.json (rope keys, torch_dtype)."""
    rp = cfg.pop("rope_parameters", None) or {}
    if cfg["model_type"] == "gpt_neox":
        cfg["rotary_pct"] = rp.get("partial_rotary_factor", 1.0)
        cfg["rotary_emb_base"] = rp.get("rope_theta", 10000)
    else:
        cfg["rope_theta"] = rp.get("rope_theta", 10000.0)
    cfg["rope_scaling"] = None
    if "dtype" in cfg:
        cfg["torch_dtype"] = cfg.pop("dtype")
    return cfg


def load_check(folder, ids, logits, edit_config=None, rename=None):
    """Loads a (modified) copy of `folder` with from_pretrained; max |logits - reference|."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM
    tmp = tempfile.mkdtemp()
    try:
        for f in os.listdir(folder):
            shutil.copy(os.path.join(folder, f), tmp)
        if edit_config:
            with open(os.path.join(tmp, "config.json")) as f:
                cfg = edit_config(json.load(f))
            with open(os.path.join(tmp, "config.json"), "w") as f:
                json.dump(cfg, f, indent=2)
        if rename:
            path = os.path.join(tmp, "model.safetensors")
            tensors = load_file(path)
            if not any(k in tensors for k in rename):
                return {"skipped": "no tensor to rename"}
            save_file({rename.get(k, k): v for k, v in tensors.items()}, path, metadata={"format": "pt"})
        try:
            model = AutoModelForCausalLM.from_pretrained(tmp, attn_implementation="eager", dtype=torch.float32)
        except TypeError:
            model = AutoModelForCausalLM.from_pretrained(tmp, attn_implementation="eager", torch_dtype=torch.float32)
        with torch.no_grad():
            got = model.float().eval()(input_ids=ids).logits.float()
        return {"max_abs_diff": float((got - logits).abs().max()), "class": type(model).__name__}
    except Exception as e:
        return {"error": repr(e)[:500]}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def make_gpt_neox(root, info):
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM
    kw = dict(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
              hidden_act="gelu", max_position_embeddings=64, layer_norm_eps=1e-5, use_parallel_residual=True,
              tie_word_embeddings=False, attention_bias=True, hidden_dropout=0.0, attention_dropout=0.0,
              bos_token_id=0, eos_token_id=0)
    try:
        model = build(GPTNeoXForCausalLM, GPTNeoXConfig(rotary_pct=0.25, rotary_emb_base=10000, **kw))
        dims, _ = rotary_info(model)
    except Exception as e:
        dims = repr(e)
    if dims != 2:
        info["rotary_fallback"] = f"rotary_pct gave {dims} dims; using rope_parameters"
        rp = {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25}
        model = build(GPTNeoXForCausalLM, GPTNeoXConfig(rope_parameters=rp, **kw))
        dims, _ = rotary_info(model)
    info["rotary_dims"] = dims
    info["attn_implementation"] = getattr(model.config, "_attn_implementation", None)
    randomize(model, 1)
    # transformers >= 5.14 names the output head `lm_head` (earlier: `embed_out`).
    head = next(n for n, p in model.named_parameters() if p is model.get_output_embeddings().weight)
    info["head_parameter"] = head
    grads = [head, "gpt_neox.embed_in.weight", "gpt_neox.layers.0.attention.query_key_value.weight",
             "gpt_neox.layers.0.attention.query_key_value.bias", "gpt_neox.layers.1.mlp.dense_h_to_4h.weight",
             "gpt_neox.layers.1.input_layernorm.weight", "gpt_neox.final_layer_norm.bias"]
    ids, logits, ref, losses = reference(model, 11, grads)
    info.update(losses)
    folder = os.path.join(root, "gpt_neox")
    save(model, folder)
    save_file(ref, os.path.join(folder, "reference.safetensors"), metadata={"format": "pt"})
    info["load_checks"] = {
        "as_saved": load_check(folder, ids, logits),
        "transformers4_config": load_check(folder, ids, logits, config_t4),
        "head_named_embed_out": load_check(folder, ids, logits, None, {"lm_head.weight": "embed_out.weight"}),
        "head_named_lm_head": load_check(folder, ids, logits, None, {"embed_out.weight": "lm_head.weight"}),
    }


def check_theta(model, theta, head_dim):
    dims, inv = rotary_info(model)
    want = theta ** (-2.0 / head_dim)
    return dims, inv is not None and len(inv) > 1 and abs(inv[1] - want) <= 1e-6 * want


def make_llama(root, info):
    from transformers import LlamaConfig, LlamaForCausalLM
    kw = dict(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              intermediate_size=48, hidden_act="silu", max_position_embeddings=64, rms_norm_eps=1e-6,
              tie_word_embeddings=True, attention_bias=False, mlp_bias=False, bos_token_id=1, eos_token_id=2)
    try:
        model = build(LlamaForCausalLM, LlamaConfig(rope_theta=50000.0, **kw))
        dims, ok = check_theta(model, 50000.0, 8)
    except Exception:
        ok = False
    if not ok:
        info["rope_fallback"] = "rope_theta kwarg not used; using rope_parameters"
        model = build(LlamaForCausalLM, LlamaConfig(rope_parameters={"rope_type": "default", "rope_theta": 50000.0}, **kw))
        dims, ok = check_theta(model, 50000.0, 8)
    info["rotary_dims"], info["rope_theta_ok"] = dims, ok
    info["attn_implementation"] = getattr(model.config, "_attn_implementation", None)
    randomize(model, 2)
    info["tied"] = model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    grads = ["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
             "model.layers.0.self_attn.k_proj.weight", "model.layers.0.self_attn.v_proj.weight",
             "model.layers.1.mlp.gate_proj.weight", "model.layers.1.mlp.up_proj.weight",
             "model.layers.1.mlp.down_proj.weight", "model.norm.weight"]
    ids, logits, ref, losses = reference(model, 12, grads)
    info.update(losses)
    folder = os.path.join(root, "llama")
    try:
        save(model, folder, max_shard_size=40000)
    except Exception:
        save(model, folder, max_shard_size="40KB")
    save_file(ref, os.path.join(folder, "reference.safetensors"), metadata={"format": "pt"})
    info["load_checks"] = {"as_saved": load_check(folder, ids, logits),
                           "transformers4_config": load_check(folder, ids, logits, config_t4)}
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            info["weight_map"] = json.load(f)["weight_map"]


def make_mistral(root, info):
    from transformers import MistralConfig, MistralForCausalLM
    kw = dict(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1,
              intermediate_size=64, hidden_act="silu", max_position_embeddings=64, rms_norm_eps=1e-5,
              tie_word_embeddings=False, sliding_window=WINDOW, bos_token_id=1, eos_token_id=2)
    try:
        model = build(MistralForCausalLM, MistralConfig(rope_theta=1000000.0, **kw))
        dims, ok = check_theta(model, 1e6, 8)
    except Exception:
        ok = False
    if not ok:
        info["rope_fallback"] = "rope_theta kwarg not used; using rope_parameters"
        model = build(MistralForCausalLM, MistralConfig(rope_parameters={"rope_type": "default", "rope_theta": 1e6}, **kw))
        dims, ok = check_theta(model, 1e6, 8)
    info["rotary_dims"], info["rope_theta_ok"] = dims, ok
    info["attn_implementation"] = getattr(model.config, "_attn_implementation", None)
    randomize(model, 3, bf16=True)
    grads = ["model.layers.0.self_attn.k_proj.weight", "model.layers.1.self_attn.o_proj.weight",
             "model.layers.0.mlp.gate_proj.weight", "model.layers.1.post_attention_layernorm.weight",
             "lm_head.weight"]
    ids, logits, ref, losses = reference(model, 13, grads)
    info.update(losses)
    # Does the window act, and from which position? With HF's rule (keys with q - k < window)
    # positions 0..WINDOW-1 match full attention and position WINDOW is the first to differ.
    try:
        cfg_full = copy.deepcopy(model.config)
        cfg_full.sliding_window = None
        full_model = build(MistralForCausalLM, cfg_full)
        full_model.load_state_dict(model.state_dict())
        with torch.no_grad():
            full = full_model(input_ids=ids).logits.float()
        info["window_vs_full_maxdiff_per_position"] = (full - logits).abs().amax(dim=(0, 2)).tolist()
    except Exception as e:
        info["window_check_error"] = repr(e)
    folder = os.path.join(root, "mistral")
    save(model.to(torch.bfloat16), folder)
    save_file(ref, os.path.join(folder, "reference.safetensors"), metadata={"format": "pt"})
    info["load_checks"] = {"as_saved": load_check(folder, ids, logits),
                           "transformers4_config": load_check(folder, ids, logits, config_t4)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--tar", action="store_true", help="write OUT/fixtures.tar + OUT/summary.json only")
    args = ap.parse_args()
    torch.set_num_threads(4)
    torch.backends.cuda.matmul.allow_tf32 = False
    os.makedirs(args.out, exist_ok=True)
    root = tempfile.mkdtemp() if args.tar else args.out
    summary = {"transformers": transformers.__version__, "torch": torch.__version__, "B": B, "T": T, "V": V,
               "window": WINDOW, "models": {}}
    for name, make in [("gpt_neox", make_gpt_neox), ("llama", make_llama), ("mistral", make_mistral)]:
        info = summary["models"].setdefault(name, {})
        try:
            make(root, info)
            folder = os.path.join(root, name)
            info["files"] = {f: os.path.getsize(os.path.join(folder, f)) for f in sorted(os.listdir(folder))}
            with open(os.path.join(folder, "config.json")) as f:
                info["config"] = json.load(f)
        except Exception:
            info["error"] = traceback.format_exc()
    with open(os.path.join(root, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    if args.tar:
        with tarfile.open(os.path.join(args.out, "fixtures.tar"), "w") as tar:
            for name in ["gpt_neox", "llama", "mistral", "summary.json"]:
                if os.path.exists(os.path.join(root, name)):
                    tar.add(os.path.join(root, name), arcname=name)
        shutil.copy(os.path.join(root, "summary.json"), os.path.join(args.out, "summary.json"))
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps({k: v for k, v in summary.items() if k != "models"}))
    for name, info in summary["models"].items():
        print(name, json.dumps({k: v for k, v in info.items() if k not in ("config", "weight_map")}))


if __name__ == "__main__":
    sys.exit(main())
