"""Write a small random Qwen3 checkpoint directory (config.json + safetensors), for tests and CI.

    /usr/bin/python3 reference/make_random_checkpoint.py --out DIR [--hidden 64] [--intermediate 96]
        [--layers 3] [--heads 4] [--kv-heads 2] [--head-dim 24] [--vocab 128] [--seed 0]
        [--dtype F32|BF16|F16] [--untied] [--shards N] [--rope-theta 10000]

Weights are scaled so the model is far from linear (std 1/sqrt(fan_in) for projections, unit-ish
norm weights, unit embeddings). Deterministic for a given seed (torch's CPU generator). With
--shards N > 1 the tensors are split over model-0000i-of-0000N.safetensors plus
model.safetensors.index.json, as Hugging Face does.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import save_file  # noqa: E402

DT = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16, "F64": torch.float64}
TORCH_DTYPE_NAME = {"F32": "float32", "BF16": "bfloat16", "F16": "float16", "F64": "float64"}


def random_qwen3_tensors(cfg: dict, seed: int, untied: bool):
    g = torch.Generator().manual_seed(seed)
    d, inter, hd = cfg["hidden_size"], cfg["intermediate_size"], cfg["head_dim"]
    H, KV, V = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["vocab_size"]

    def lin(n_out, n_in):
        return torch.randn(n_out, n_in, generator=g, dtype=torch.float64) / n_in ** 0.5

    def norm(n):
        return 1.0 + 0.2 * torch.randn(n, generator=g, dtype=torch.float64)

    t = {"model.embed_tokens.weight": torch.randn(V, d, generator=g, dtype=torch.float64)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = norm(d)
        t[p + "self_attn.q_proj.weight"] = lin(H * hd, d)
        t[p + "self_attn.k_proj.weight"] = lin(KV * hd, d)
        t[p + "self_attn.v_proj.weight"] = lin(KV * hd, d)
        t[p + "self_attn.o_proj.weight"] = lin(d, H * hd)
        # q/k norm weights > 1 sharpen attention, so the softmax is far from uniform
        t[p + "self_attn.q_norm.weight"] = 2.0 * norm(hd)
        t[p + "self_attn.k_norm.weight"] = 2.0 * norm(hd)
        t[p + "post_attention_layernorm.weight"] = norm(d)
        t[p + "mlp.gate_proj.weight"] = lin(inter, d)
        t[p + "mlp.up_proj.weight"] = lin(inter, d)
        t[p + "mlp.down_proj.weight"] = lin(d, inter)
    t["model.norm.weight"] = norm(d)
    if untied:
        t["lm_head.weight"] = lin(V, d)
    return t


def write_checkpoint(out: str, cfg: dict, tensors: dict, dtype: str, shards: int) -> None:
    os.makedirs(out, exist_ok=True)
    tensors = {k: v.to(DT[dtype]) for k, v in tensors.items()}
    with open(os.path.join(out, "config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    meta = {"format": "pt"}
    if shards <= 1:
        save_file(tensors, os.path.join(out, "model.safetensors"), meta)
        return
    names = list(tensors)
    per = -(-len(names) // shards)
    weight_map = {}
    total = 0
    for s in range(shards):
        part = names[s * per:(s + 1) * per]
        fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        save_file({k: tensors[k] for k in part}, os.path.join(out, fname), meta)
        for k in part:
            weight_map[k] = fname
            total += tensors[k].numel() * tensors[k].element_size()
    with open(os.path.join(out, "model.safetensors.index.json"), "w", encoding="utf-8") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
        f.write("\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--intermediate", type=int, default=96)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--head-dim", type=int, default=24)
    ap.add_argument("--vocab", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", choices=sorted(DT), default="F32")
    ap.add_argument("--untied", action="store_true", help="write a separate lm_head.weight")
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--rope-theta", type=float, default=10000.0)
    ap.add_argument("--eps", type=float, default=1e-6)
    a = ap.parse_args(argv)
    cfg = {
        "architectures": ["Qwen3ForCausalLM"],
        "model_type": "qwen3",
        "hidden_size": a.hidden,
        "intermediate_size": a.intermediate,
        "num_hidden_layers": a.layers,
        "num_attention_heads": a.heads,
        "num_key_value_heads": a.kv_heads,
        "head_dim": a.head_dim,
        "hidden_act": "silu",
        "rms_norm_eps": a.eps,
        "rope_theta": a.rope_theta,
        "rope_scaling": None,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "max_position_embeddings": 4096,
        "vocab_size": a.vocab,
        "tie_word_embeddings": not a.untied,
        "use_sliding_window": False,
        "sliding_window": None,
        "torch_dtype": TORCH_DTYPE_NAME[a.dtype],
        "bos_token_id": 0,
        "eos_token_id": 1,
    }
    write_checkpoint(a.out, cfg, random_qwen3_tensors(cfg, a.seed, a.untied), a.dtype, a.shards)
    print(a.out)


if __name__ == "__main__":
    main()
