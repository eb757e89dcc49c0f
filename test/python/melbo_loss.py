"""PyTorch side of test/melbo/melbo.test.ts: MELBO's objective on a checkpoint, evaluated with the
project's PyTorch reference model (reference/qwen3_minimal.py, float64), independently of jacsteer.

  L(sv) = ( sum over prompts, selected rows t of ||w_t (h_T[t](sv) - h_T[t](0))||^p )^(1/q)

sv is added to the output of decoder layer S at every position (a forward hook on
layers[S].mlp.down_proj, i.e. a bias there, as the seed's code does); h_T is decoder layer T's output.
Reads a JSON object on stdin: model, prompts [[ids]], source_layer, target_layer, rows [[row indices]]
(per prompt), weights (list or null), p, q, svs [[d floats]]. Writes {"losses": [...], "gradients":
[[...]]} (dL/dsv by torch autograd) to stdout."""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "reference"))
from qwen3_minimal import decoder_layers, layer_output, load_qwen3  # noqa: E402


def target_rows(model, ids, S, T, sv, rows, weights):
    layers = decoder_layers(model)
    captured = {}
    h1 = layers[S].mlp.down_proj.register_forward_hook(lambda mod, inp, out: out + sv)
    h2 = layers[T].register_forward_hook(lambda mod, inp, out: captured.__setitem__("h", layer_output(out)))
    try:
        model.model(input_ids=torch.tensor([ids])) if hasattr(model, "model") else model(torch.tensor([ids]))
    finally:
        h1.remove()
        h2.remove()
    h = captured["h"][0][rows]
    if weights is not None:
        h = h * torch.tensor(weights, dtype=h.dtype)[:, None]
    return h


def main():
    cfg = json.load(sys.stdin)
    model, _ = load_qwen3(cfg["model"], "float64", "cpu", "minimal")
    S, T, p, q = cfg["source_layer"], cfg["target_layer"], cfg["p"], cfg["q"]
    d = model.config.hidden_size
    zero = torch.zeros(d, dtype=torch.float64)
    with torch.no_grad():
        base = [target_rows(model, ids, S, T, zero, rows, cfg["weights"]) for ids, rows in zip(cfg["prompts"], cfg["rows"])]
    losses, grads = [], []
    for sv_list in cfg["svs"]:
        sv = torch.tensor(sv_list, dtype=torch.float64, requires_grad=True)
        total = 0
        for ids, rows, b in zip(cfg["prompts"], cfg["rows"], base):
            t = target_rows(model, ids, S, T, sv, rows, cfg["weights"])
            total = total + (t - b).norm(dim=-1).pow(p).sum()
        loss = total.pow(1.0 / q)
        (g,) = torch.autograd.grad(loss, sv)
        losses.append(loss.item())
        grads.append(g.tolist())
    json.dump({"losses": losses, "gradients": grads}, sys.stdout)


if __name__ == "__main__":
    main()
