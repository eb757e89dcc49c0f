"""Dump a Qwen3 forward pass (every residual-stream state and the logits) for checking jacsteer's forward.

    /usr/bin/python3 reference/forward_dump.py --model DIR --tokens 1,2,3 --out FILE(.safetensors|.json)
        [--dtype float64|float32|bfloat16] [--device cpu|cuda] [--impl auto|transformers|minimal]
        [--at FILE[:ROW] --at-scale A --source-layer S]

Written tensors ([T, *] for the one prompt):
    hidden_states.0        output of the embedding
    hidden_states.{l+1}    output of decoder layer l, before the final norm (transformers' hidden_states[l+1]
                           for l < L-1; for the last layer transformers reports the post-norm state instead)
    normed                 output of the final norm
    logits                 [T, vocab]
all F64 when --dtype float64, else F32 (bf16 values widened exactly). Captured with forward hooks on
model.model.embed_tokens, model.model.layers[l] and model.model.norm, so both implementations are
read at the same places. With --at, sv0 = at-scale * vector is added to the output of layer S at every
position (a bias on model.layers[S].mlp.down_proj), as in power_iteration.py.

The JSON form is {"metadata": {...}, "tensors": {name: {"shape": [...], "data": [...]}}}.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Dict, List, Optional

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qwen3_minimal as q3  # noqa: E402
from safetensors_io import SafetensorsError, read_vector, save_file  # noqa: E402


class UsageError(Exception):
    pass


def collect_forward(model, input_ids: torch.Tensor, source_layer: Optional[int] = None,
                    sv: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
    """Full forward of one prompt with hooks: {"hidden_states.l": [T, d], "normed", "logits"}."""
    layers = q3.decoder_layers(model)
    got: Dict[str, torch.Tensor] = {}
    handles = []

    def keep(name):
        def hook(mod, inp, out):
            got[name] = q3.layer_output(out).detach()[0]
        return hook

    handles.append(model.model.embed_tokens.register_forward_hook(keep("hidden_states.0")))
    for i, layer in enumerate(layers):
        handles.append(layer.register_forward_hook(keep(f"hidden_states.{i + 1}")))
    handles.append(model.model.norm.register_forward_hook(keep("normed")))
    if sv is not None:
        handles.append(layers[source_layer].mlp.down_proj.register_forward_hook(lambda mod, inp, out: out + sv))
    try:
        with torch.no_grad():
            logits = q3.run_model(model, input_ids)
    finally:
        for h in handles:
            h.remove()
    got["logits"] = logits.detach()[0]
    order = [f"hidden_states.{i}" for i in range(len(layers) + 1)] + ["normed", "logits"]
    return {k: got[k] for k in order}


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def run(argv=None) -> int:
    ap = _Parser(prog="forward_dump.py", description="Dump hidden states and logits of a Qwen3 forward.")
    ap.add_argument("--model", required=True)
    ap.add_argument("--tokens", required=True, help="comma-separated token ids")
    ap.add_argument("--out", required=True, help=".safetensors or .json")
    ap.add_argument("--dtype", choices=["float64", "float32", "bfloat16"], default="float64")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--impl", choices=["auto", "transformers", "minimal"], default="auto")
    ap.add_argument("--at", help="FILE[:ROW] steering vector added at the output of --source-layer")
    ap.add_argument("--at-scale", type=float, default=1.0)
    ap.add_argument("--source-layer", type=int)
    a = ap.parse_args(argv)
    try:
        ids = [int(x) for x in a.tokens.split(",") if x.strip() != ""]
    except ValueError:
        raise UsageError(f"--tokens {a.tokens!r}: expected comma-separated token ids")
    if not ids:
        raise UsageError("--tokens: empty")
    if not os.path.isdir(a.model):
        raise UsageError(f"--model {a.model}: not a directory")
    try:
        model, impl = q3.load_qwen3(a.model, a.dtype, a.device, a.impl)
    except (q3.ConfigError, SafetensorsError) as e:
        raise UsageError(str(e))
    vocab, d, L = q3.vocab_size(model), q3.hidden_size(model), q3.num_layers(model)
    bad = [x for x in ids if not 0 <= x < vocab]
    if bad:
        raise UsageError(f"--tokens: id {bad[0]} is outside the vocabulary 0..{vocab - 1}")
    sv = None
    if a.at:
        if a.source_layer is None or not 0 <= a.source_layer < L:
            raise UsageError(f"--at needs --source-layer in 0..{L - 1}")
        try:
            v = read_vector(a.at)
        except SafetensorsError as e:
            raise UsageError(f"--at {a.at}: {e}")
        if v.numel() != d:
            raise UsageError(f"--at {a.at}: length {v.numel()}, hidden size is {d}")
        sv = (a.at_scale * v).to(device=a.device, dtype=q3.DTYPES[a.dtype])
    input_ids = torch.tensor([ids], dtype=torch.long, device=a.device)
    tensors = collect_forward(model, input_ids, a.source_layer, sv)
    out_dtype = torch.float64 if a.dtype == "float64" else torch.float32
    tensors = {k: v.to("cpu", out_dtype).contiguous() for k, v in tensors.items()}
    meta = {
        "tokens": json.dumps(ids),
        "dtype": a.dtype,
        "device": a.device,
        "implementation": impl,
        "num_layers": str(L),
        "model": os.path.basename(os.path.normpath(os.path.abspath(a.model))),
        "torch_version": torch.__version__,
        "generator": "reference/forward_dump.py",
    }
    if a.at:
        meta.update({"at": a.at, "at_scale": repr(a.at_scale), "source_layer": str(a.source_layer)})
    if a.out.endswith(".json"):
        doc = {"metadata": meta, "tensors": {k: {"shape": list(v.shape), "data": v.reshape(-1).tolist()} for k, v in tensors.items()}}
        tmp = f"{a.out}.tmp-{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(doc, f)
        os.replace(tmp, a.out)
    else:
        save_file(tensors, a.out, meta)
    print(f"forward_dump: {impl}, {len(ids)} tokens, {L} layers -> {a.out}", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    try:
        return run(argv)
    except UsageError as e:
        print(f"forward_dump.py: error: {e}", file=sys.stderr)
        return 1
    except Exception:
        import traceback

        traceback.print_exc()
        return 2


if __name__ == "__main__":
    sys.exit(main())
