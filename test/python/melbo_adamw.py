"""PyTorch side of the AdamW (amsgrad) check in test/melbo/melbo.test.ts: torch.optim.AdamW steps on a
given gradient sequence. Reads {x0, grads [[...]], lr, betas, eps, weight_decay} on stdin; writes
{"xs": [[...] after each step]} to stdout. float64 throughout."""
import json
import sys

import torch


def main():
    cfg = json.load(sys.stdin)
    x = torch.tensor(cfg["x0"], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.AdamW([x], lr=cfg["lr"], betas=tuple(cfg["betas"]), eps=cfg["eps"], weight_decay=cfg["weight_decay"], amsgrad=True)
    xs = []
    for g in cfg["grads"]:
        opt.zero_grad()
        x.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        xs.append(x.detach().tolist())
    json.dump({"xs": xs}, sys.stdout)


if __name__ == "__main__":
    main()
