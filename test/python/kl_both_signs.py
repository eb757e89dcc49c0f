"""PyTorch side of test/steering-eval/kl.test.ts: KL(steered || unsteered) of the next-token
distribution, computed without jacsteer: reference/qwen3_minimal.py in float64, steering by a forward
hook adding c * v to the output of model.model.layers[S] (every position), with
c = sign * frac * ||h_S[last]|| (the unsteered layer-S output at the prompt's last token, here in
float64) or c = sign * scale. Log-softmax over the whole vocabulary in float64; the mean KL over the
last K positions.

usage: kl_both_signs.py IN.json OUT.json
  IN:  {model, layer, tokens: [[ids]], vectors: [[d floats]], magnitudes: [floats], kind: "absolute"|"residual-fraction", K,
        reverse: bool (KL(unsteered || steered) instead: the test's wrong-direction check)}
  OUT: {kl: [[[[KL per prompt] per sign (+, -)] per magnitude] per vector], norms: [||h_S[last]|| per prompt]}
"""
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "reference"))
from qwen3_minimal import load_qwen3, decoder_layers  # noqa: E402


def main():
    inp = json.load(open(sys.argv[1]))
    model, _ = load_qwen3(inp["model"], "float64", "cpu", "minimal")
    layer = decoder_layers(model)[inp["layer"]]
    state = {"sv": None, "h": None}

    def hook(_module, _inputs, output):
        out = output[0] if isinstance(output, (tuple, list)) else output
        state["h"] = out.detach().clone()
        if state["sv"] is not None:
            out = out + state["sv"]
        return (out,) + tuple(output[1:]) if isinstance(output, (tuple, list)) else out

    layer.register_forward_hook(hook)
    K = inp["K"]
    norms, base = [], []
    with torch.no_grad():
        for ids in inp["tokens"]:
            state["sv"] = None
            lp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0, -K:], dim=-1)
            base.append(lp)
            norms.append(float(state["h"][0, -1].norm()))
        out = []
        for v in inp["vectors"]:
            v = torch.tensor(v, dtype=torch.float64)
            per_m = []
            for m in inp["magnitudes"]:
                per_sign = []
                for sign in (1.0, -1.0):
                    kls = []
                    for p, ids in enumerate(inp["tokens"]):
                        c = sign * (m if inp["kind"] == "absolute" else m * norms[p])
                        state["sv"] = c * v
                        lp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0, -K:], dim=-1)
                        a, b = (base[p], lp) if inp.get("reverse") else (lp, base[p])
                        kls.append(float((a.exp() * (a - b)).sum(-1).mean()))
                    per_sign.append(kls)
                per_m.append(per_sign)
            out.append(per_m)
    json.dump({"kl": out, "norms": norms}, open(sys.argv[2], "w"))


if __name__ == "__main__":
    main()
