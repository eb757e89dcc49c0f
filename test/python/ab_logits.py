"""PyTorch side of test/evaluation/ab-torch.test.ts: A/B logit differences on a checkpoint with a
BYTE-LEVEL vocabulary (token id = UTF-8 byte, as the bundled tiny model), computed without jacsteer:
prompts are built here from the dataset (question, or the tiny chat template written out by hand,
then the answer prefix), token ids are the UTF-8 bytes, letter ids are ord(letter). The model is
reference/qwen3_minimal.py in float64; steering is a forward hook adding scale * vector to the output
of model.model.layers[S] (every position).

usage: ab_logits.py IN.json OUT.json
  IN:  {model, layer, questions: [{question, matching, other}], answer_prefix, chat, system,
        vectors: [[d floats]], scales: [floats]}
  OUT: {tokens: [[ids]], baseline: [diff per question], steered: [[[diff per question] per scale] per vector],
        baseline_logits: [[logit matching, logit other] per question]}
"""
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "reference"))
from qwen3_minimal import load_qwen3, decoder_layers, layer_output  # noqa: E402


def prompt_text(q, chat, system, prefix):
    if not chat:
        return q + prefix
    # The tiny checkpoint's chat template (models/tiny/tokenizer_config.json), generation prompt
    # added, thinking disabled.
    s = ""
    if system is not None:
        s += "<|im_start|>system\n" + system + "<|im_end|>\n"
    s += "<|im_start|>user\n" + q + "<|im_end|>\n"
    s += "<|im_start|>assistant\n<think>\n\n</think>\n\n"
    return s + prefix


def main():
    inp = json.load(open(sys.argv[1]))
    model, _ = load_qwen3(inp["model"], "float64", "cpu", "minimal")
    assert model.config.vocab_size == 256, "byte-level checkpoints only"
    layer = decoder_layers(model)[inp["layer"]] if inp["vectors"] else None
    steer = {"sv": None}

    def hook(_module, _inputs, output):
        if steer["sv"] is None:
            return output
        if isinstance(output, (tuple, list)):
            return (output[0] + steer["sv"],) + tuple(output[1:])
        return output + steer["sv"]

    if layer is not None:
        layer.register_forward_hook(hook)

    tokens, baseline, base_logits = [], [], []
    steered = [[[] for _ in inp["scales"]] for _ in inp["vectors"]]
    with torch.no_grad():
        for q in inp["questions"]:
            ids = list(prompt_text(q["question"], inp["chat"], inp.get("system"), inp["answer_prefix"]).encode("utf-8"))
            tokens.append(ids)
            a, b = ord(q["matching"]), ord(q["other"])
            x = torch.tensor([ids])

            def diff():
                logits = model(input_ids=x).logits[0, -1]
                return float(logits[a] - logits[b]), [float(logits[a]), float(logits[b])]

            steer["sv"] = None
            d0, l0 = diff()
            baseline.append(d0)
            base_logits.append(l0)
            for vi, v in enumerate(inp["vectors"]):
                for si, s in enumerate(inp["scales"]):
                    # jacsteer forms scale * vector in float32
                    steer["sv"] = (torch.tensor(v, dtype=torch.float32) * torch.tensor(s, dtype=torch.float32)).to(torch.float64)
                    steered[vi][si].append(diff()[0])
    json.dump({"tokens": tokens, "baseline": baseline, "steered": steered, "baseline_logits": base_logits}, open(sys.argv[2], "w"))


if __name__ == "__main__":
    main()
