"""PyTorch baseline of bench/generate.ts: greedy steered decoding with a KV cache on the same checkpoint.

Reads JSON on stdin: {"model": DIR, "prompt": [ids], "steer": [[d floats] per sequence], "layer": S,
"new": N, "threads": T, "dtype": "float32" | "bfloat16"}. The batch is the rows of "steer", all with the
same prompt; each sequence gets its vector added to layer S's output at every position (prompt and
generated), as jacsteer generate does. Prints JSON: decode tokens/s over all sequences (prefill excluded,
timed from the first chosen token as bench/generate.ts does), prefill seconds, and sequence 0's tokens.

The model is reference/qwen3_minimal.py's (the project's PyTorch Qwen3); only the KV-cache step is
written here, from its modules: q/k/v projections, per-head norms, rotate-half RoPE, grouped-query
attention, o_proj, SwiGLU MLP, final norm and the tied LM head.
"""
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
from qwen3_minimal import Qwen3ForCausalLM, repeat_kv, rope_cos_sin, rotate_half  # noqa: E402


def attention_step(att, x, cos, sin, cache, causal):
    B, T, _ = x.shape
    shape = (B, T, -1, att.head_dim)
    q = att.q_norm(att.q_proj(x).view(shape)).transpose(1, 2)
    k = att.k_norm(att.k_proj(x).view(shape)).transpose(1, 2)
    v = att.v_proj(x).view(shape).transpose(1, 2)
    c, s = cos.unsqueeze(1), sin.unsqueeze(1)
    q = (q * c) + (rotate_half(q) * s)
    k = (k * c) + (rotate_half(k) * s)
    if cache[0] is not None:
        k = torch.cat([cache[0], k], dim=2)
        v = torch.cat([cache[1], v], dim=2)
    cache[0], cache[1] = k, v
    kk = repeat_kv(k, att.num_key_value_groups)
    vv = repeat_kv(v, att.num_key_value_groups)
    w = torch.matmul(q, kk.transpose(2, 3)) * att.scaling
    if causal:
        L = kk.shape[2]
        allowed = torch.ones(T, L, dtype=torch.bool).tril(L - T)
        w = w.masked_fill(~allowed, torch.finfo(w.dtype).min)
    w = F.softmax(w, dim=-1, dtype=torch.float32).to(q.dtype)
    out = torch.matmul(w, vv).transpose(1, 2).reshape(B, T, -1)
    return att.o_proj(out)


def step(model, ids, pos, caches, steer, layer):
    m = model.model
    h = m.embed_tokens(ids)
    B, T = ids.shape
    position_ids = torch.arange(pos, pos + T).unsqueeze(0).expand(B, -1)
    cos, sin = rope_cos_sin(m.inv_freq, position_ids, h.dtype)
    for i, lay in enumerate(m.layers):
        h = h + attention_step(lay.self_attn, lay.input_layernorm(h), cos, sin, caches[i], T > 1)
        h = h + lay.mlp(lay.post_attention_layernorm(h))
        if i == layer:
            h = h + steer[:, None, :]
    return model.lm_head(m.norm(h[:, -1:, :]))[:, 0, :]


def main():
    args = json.load(sys.stdin)
    torch.set_num_threads(int(args["threads"]))
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[args["dtype"]]
    t0 = time.perf_counter()
    model = Qwen3ForCausalLM.from_pretrained(args["model"], dtype=dtype)
    load = time.perf_counter() - t0
    steer = torch.tensor(args["steer"], dtype=torch.float32).to(dtype)
    B = steer.shape[0]
    prompt = torch.tensor([args["prompt"]] * B, dtype=torch.long)
    caches = [[None, None] for _ in model.model.layers]
    new = int(args["new"])
    out = []
    with torch.no_grad():
        t0 = time.perf_counter()
        nxt = step(model, prompt, 0, caches, steer, int(args["layer"])).argmax(-1)
        first = time.perf_counter()
        out.append(nxt)
        pos = prompt.shape[1]
        for _ in range(new - 1):
            nxt = step(model, nxt[:, None], pos, caches, steer, int(args["layer"])).argmax(-1)
            pos += 1
            out.append(nxt)
        end = time.perf_counter()
    tokens = torch.stack(out, 1)
    print(json.dumps({
        "load_s": load,
        "prefill_s": first - t0,
        "decode_tps": B * (new - 1) / (end - first),
        "tokens": tokens[0].tolist(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "dtype": args["dtype"],
    }))


if __name__ == "__main__":
    main()
