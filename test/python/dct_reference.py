"""PyTorch side of test/dct/dct.test.ts: the exponential DCT of src/dct/dct.ts (radius calibration and
Orthogonalised Gradient Iteration), written again in float64 with the project's PyTorch reference model
(reference/qwen3_minimal.py), independently of jacsteer's engine.

  Delta(theta) = target(theta) - target(0), target = the weighted rows of layer T's output (every
  prompt, concatenated), theta added to the output of layer S at every position (a hook on
  layers[S].mlp.down_proj, as the seed's code steers).
  Calibration: ratio(R) = sqrt(mean_j ||Delta(R w_j) - R J w_j||^2 / ||R J w_j||^2) = target ratio,
  bracketed by doubling/halving from radius_start in log R, then Illinois regula falsi on
  (log R, log ratio - log target).
  OGI: V <- Gram-Schmidt(V) (twice, in index order); Delta_i = Delta(R v_i), g_i = J(R v_i)^T u_i (autograd);
  F = mean_i <u_i, Delta_i>; u_i <- Delta_i / |.|, v_i <- g_i / |.|. Then V orthonormalised once more and F
  evaluated there.

Reads JSON on stdin: model, prompts [[ids]], source_layer, target_layer, rows [[row indices]] (per
prompt), weights (list or null), calibration [[d]], V [[d]], U [[outputDim]], iterations, target_ratio,
radius_start, radius (null: calibrate), xtol, ftol, max_bracket, max_evals.
Writes {"radius", "ratio", "evaluations": [[R, ratio]], "objective": [...], "terms": [...], "V": [[...]]}.
"""
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "reference"))
from qwen3_minimal import decoder_layers, layer_output, load_qwen3  # noqa: E402


def make_target(model, cfg):
    layers = decoder_layers(model)
    S, T = cfg["source_layer"], cfg["target_layer"]

    def target(sv):
        parts = []
        for ids, rows in zip(cfg["prompts"], cfg["rows"]):
            captured = {}
            h1 = layers[S].mlp.down_proj.register_forward_hook(lambda mod, inp, out: out + sv)
            h2 = layers[T].register_forward_hook(lambda mod, inp, out: captured.__setitem__("h", layer_output(out)))
            try:
                if hasattr(model, "model"):
                    model.model(input_ids=torch.tensor([ids]))
                else:
                    model(torch.tensor([ids]))
            finally:
                h1.remove()
                h2.remove()
            h = captured["h"][0][rows]
            if cfg["weights"] is not None:
                h = h * torch.tensor(cfg["weights"], dtype=h.dtype)[:, None]
            parts.append(h.reshape(-1))
        return torch.cat(parts)

    return target


def orthonormalize(V):
    V = [v.clone() for v in V]
    for i in range(len(V)):
        for _ in range(2):
            for j in range(i):
                V[i] = V[i] - torch.dot(V[j], V[i]) * V[j]
        V[i] = V[i] / V[i].norm()
    return V


def main():
    torch.set_num_threads(1)
    cfg = json.load(sys.stdin)
    model, _ = load_qwen3(cfg["model"], "float64", "cpu", "minimal")
    d = model.config.hidden_size
    target = make_target(model, cfg)
    zero = torch.zeros(d, dtype=torch.float64)
    with torch.no_grad():
        base = target(zero)
    out = {"evaluations": []}

    R = cfg["radius"]
    if R is None:
        W = [torch.tensor(w, dtype=torch.float64) for w in cfg["calibration"]]
        # J w by forward-mode through the double-backward trick (torch.autograd.functional.jvp)
        JW = [torch.autograd.functional.jvp(target, zero, w)[1].detach() for w in W]
        lam = cfg["target_ratio"]

        def ratio(r):
            acc = 0.0
            with torch.no_grad():
                for w, jw in zip(W, JW):
                    delta = target(r * w) - base
                    lin = r * jw
                    acc += float(((delta - lin) ** 2).sum() / (lin**2).sum())
            q = math.sqrt(acc / len(W))
            out["evaluations"].append([r, q])
            return q

        def f(x):
            return math.log(ratio(math.exp(x))) - math.log(lam)

        a = math.log(cfg["radius_start"])
        fa = f(a)
        b, fb = a, fa
        step = math.log(2)
        for s in range(cfg["max_bracket"] + 1):
            if s >= cfg["max_bracket"]:
                raise SystemExit("bracketing failed")
            b = b + step if fa < 0 else b - step
            fb = f(b)
            if (fb > 0) != (fa > 0):
                break
            a, fa = b, fb
        c, fc = b, fb
        while abs(b - a) > cfg["xtol"] and len(out["evaluations"]) < cfg["max_evals"]:
            c = b - fb * (b - a) / (fb - fa)
            fc = f(c)
            if abs(fc) <= cfg["ftol"]:
                break
            if (fc > 0) != (fb > 0):
                a, fa = b, fb
            else:
                fa /= 2
            b, fb = c, fc
        R = math.exp(c)
        out["ratio"] = lam * math.exp(fc)
    out["radius"] = R

    V = [torch.tensor(v, dtype=torch.float64) for v in cfg["V"]]
    U = [torch.tensor(u, dtype=torch.float64) for u in cfg["U"]]
    m = len(V)
    objective = []
    for _ in range(cfg["iterations"]):
        V = orthonormalize(V)
        D, G = [], []
        for v, u in zip(V, U):
            sv = (R * v).detach().requires_grad_(True)
            t = target(sv)
            (g,) = torch.autograd.grad(t, sv, u)
            D.append((t - base).detach())
            G.append(g.detach())
        objective.append(sum(float(torch.dot(u, x)) for u, x in zip(U, D)) / m)
        U = [x / x.norm() for x in D]
        V = [g / g.norm() for g in G]
    V = orthonormalize(V)
    with torch.no_grad():
        terms = [float(torch.dot(u, target(R * v) - base)) for u, v in zip(U, V)]
    objective.append(sum(terms) / m)
    out["objective"] = objective
    out["terms"] = terms
    out["V"] = [v.tolist() for v in V]
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
