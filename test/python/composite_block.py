"""PyTorch side of test/autodiff/torch.test.ts: a transformer block (attention + MLP, residuals)
written directly in torch, and the seed's double VJP on it with create_graph=True.
Reads a JSON object on stdin, writes a JSON object to stdout."""
import json
import sys

import torch


def block(x, w, cfg):
    T = x.shape[0]
    H, KV, hd, eps = cfg["heads"], cfg["kv_heads"], cfg["head_dim"], cfg["eps"]

    def rms(t, weight):
        return weight * (t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + eps))

    h = rms(x, w["ln1"])
    q = (h @ w["q"].T).view(T, H, hd)
    k = (h @ w["k"].T).view(T, KV, hd)
    v = (h @ w["v"].T).view(T, KV, hd)
    q, k = rms(q, w["qn"]), rms(k, w["kn"])
    inv = 1.0 / (cfg["theta"] ** (torch.arange(0, hd, 2, dtype=torch.int64).to(x.dtype) / hd))
    ang = torch.arange(T, dtype=x.dtype)[:, None] * inv[None, :]
    cos, sin = torch.cat([ang.cos()] * 2, -1)[:, None, :], torch.cat([ang.sin()] * 2, -1)[:, None, :]

    def rot(t):
        a, b = t[..., : hd // 2], t[..., hd // 2 :]
        return t * cos + torch.cat([-b, a], -1) * sin

    q, k = rot(q), rot(k)
    rep = H // KV
    k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    s = torch.einsum("thd,shd->hts", q, k) * hd**-0.5
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
    p = torch.softmax(s.masked_fill(mask, float("-inf")), -1)
    a = torch.einsum("hts,shd->thd", p, v).reshape(T, H * hd)
    x = x + a @ w["o"].T
    h = rms(x, w["ln2"])
    m = torch.nn.functional.silu(h @ w["gate"].T) * (h @ w["up"].T)
    return x + m @ w["down"].T


def main():
    inp = json.load(sys.stdin)
    dtype = {"float32": torch.float32, "float64": torch.float64}[inp["dtype"]]
    cfg = inp["cfg"]
    t = lambda a, shape: torch.tensor(a, dtype=dtype).reshape(shape)
    w = {name: t(val["data"], val["shape"]) for name, val in inp["weights"].items()}
    x = t(inp["x"], inp["x_shape"]).requires_grad_(True)
    y = block(x, w, cfg)
    u = torch.zeros_like(y, requires_grad=True)
    v = t(inp["v"], inp["x_shape"])
    # The seed's three steps.
    g = torch.autograd.grad(y, x, grad_outputs=u, create_graph=True)[0]
    jv = torch.autograd.grad(g, u, grad_outputs=v)[0]
    jtjv = torch.autograd.grad(y, x, grad_outputs=jv.detach(), retain_graph=True)[0]
    # A VJP at a nonzero cotangent too.
    c = t(inp["c"], list(y.shape))
    vjp = torch.autograd.grad(y, x, grad_outputs=c)[0]
    out = {k: val.detach().reshape(-1).tolist() for k, val in dict(y=y, jv=jv, jtjv=jtjv, vjp=vjp).items()}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
