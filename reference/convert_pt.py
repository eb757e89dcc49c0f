"""Convert a PyTorch `.pt` result (torch.save of the vectors) into a jacsteer vector file.

    /usr/bin/python3 reference/convert_pt.py RESULT.pt --out REF.safetensors (--hidden D | --model DIR)
        [--source-layer S --target-layer T] [--positions K] [--tokens 1,2,3]... [--dtype bfloat16]
        [--vectors-key NAME] [--sigmas-key NAME] [--layout rows|columns] [--squared]
        [--num-vectors N] [--method NAME]

What a research script saves, and how it is read:
  - a tensor [n, d] (one vector per row) or [d, n] (one per column, as torch.svd's V); a 1-D [d] is
    one vector. The orientation is found by matching d, the hidden size (--hidden D, or
    hidden_size from --model DIR/config.json), against the two dimensions; a square tensor, or one
    where neither dimension is d, is refused unless --layout says rows or columns.
  - a dict of tensors: the vectors under --vectors-key or the first of VECTOR_KEYS present, the
    singular values under --sigmas-key or the first of SIGMA_KEYS. `Vh` (torch.linalg.svd) holds the
    vectors as rows whatever its shape.
  - a tuple or list of two tensors: the 2-D one is the vectors, the 1-D one the singular values.
Singular values in ascending order (torch.linalg.eigh's) are put in descending order with their
vectors; --squared takes the square root of values that are eigenvalues of J^T J (sigma^2).

The identity of the run is what the flags say, and only that: a field not given is absent from the
file, and `jacsteer verify` lists it as not checked instead of calling the runs different. Give
--dtype as the arithmetic the run used (its tolerance in verify follows it); the default is the
saved tensor's dtype.

The file is loaded with torch.load(weights_only=True): tensors and plain containers only, no
arbitrary pickled code. Exit status: 0 ok, 1 usage or input error (one line on stderr, no output
file), 2 internal error.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from typing import List, Optional, Tuple

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import SafetensorsError, save_vector_file  # noqa: E402

# Names research scripts commonly give the vectors and the singular values, most specific first.
VECTOR_KEYS = ["vectors", "singular_vectors", "right_singular_vectors", "steering_vectors", "directions", "Vh", "vh", "V", "v"]
SIGMA_KEYS = ["singular_values", "sigmas", "sigma", "svals", "S", "s"]
DTYPES = {torch.float64: "float64", torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}


class UsageError(Exception):
    """Bad flags or inputs: reported as one line, exit status 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="convert_pt.py", description="A .pt result as a jacsteer vector file.")
    p.add_argument("input", help="the .pt file (torch.save of a tensor, a dict of tensors, or a pair)")
    p.add_argument("--out", required=True, help="the vector file to write (.safetensors)")
    p.add_argument("--hidden", type=int, help="the model's hidden size d")
    p.add_argument("--model", help="checkpoint directory: d is its config.json hidden_size")
    p.add_argument("--layout", choices=["rows", "columns"], help="vectors are the rows [n, d] or the columns [d, n]")
    p.add_argument("--vectors-key", help="dict key of the vectors")
    p.add_argument("--sigmas-key", help="dict key of the singular values")
    p.add_argument("--squared", action="store_true", help="the values are sigma^2 (eigenvalues of J^T J)")
    p.add_argument("--num-vectors", type=int, help="keep the first N vectors (and singular values)")
    p.add_argument("--source-layer", type=int)
    p.add_argument("--target-layer", type=int)
    p.add_argument("--positions", help="last K positions (or list:I,J,... or all, as jacsteer writes it)")
    p.add_argument("--tokens", action="append", default=[], help="token ids of a prompt, comma-separated (repeatable)")
    p.add_argument("--dtype", choices=sorted(set(DTYPES.values())), help="the arithmetic of the run (default: the saved tensor's dtype)")
    p.add_argument("--method", default="pt-import", help="the method metadata (default pt-import)")
    return p


def hidden_size(a) -> Optional[int]:
    if a.hidden is not None and a.model is not None:
        raise UsageError("give --hidden or --model, not both")
    if a.hidden is not None:
        if a.hidden < 1:
            raise UsageError(f"--hidden {a.hidden} must be positive")
        return a.hidden
    if a.model is None:
        return None
    path = os.path.join(a.model, "config.json")
    try:
        with open(path, "r", encoding="utf-8") as f:
            d = json.load(f).get("hidden_size")
    except (OSError, json.JSONDecodeError, AttributeError) as e:
        raise UsageError(f"--model {a.model}: cannot read config.json ({e})")
    if not isinstance(d, int) or d < 1:
        raise UsageError(f"{path}: no positive integer hidden_size")
    return d


def load(path: str):
    if not os.path.isfile(path):
        raise UsageError(f"{path}: file does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a corrupt file, not a torch file, or pickled objects other than tensors
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(f"{path}: cannot be read as a torch.save file of tensors ({first})")


def pick(obj, path: str, a) -> Tuple[torch.Tensor, Optional[torch.Tensor], Optional[str]]:
    """(vectors tensor, singular values or None, the dict key of the vectors or None)."""
    if isinstance(obj, torch.Tensor):
        return obj, None, None
    if isinstance(obj, (tuple, list)):
        tensors = [t for t in obj if isinstance(t, torch.Tensor)]
        two_d = [t for t in tensors if t.dim() == 2]
        one_d = [t for t in tensors if t.dim() == 1]
        if len(obj) == 2 and len(two_d) == 1 and len(one_d) == 1:
            return two_d[0], one_d[0], None
        raise UsageError(f"{path}: a {type(obj).__name__} of {len(obj)} items; expected a pair (vectors [n, d] or [d, n], singular values [n])")
    if isinstance(obj, dict):
        keys = [k for k in obj.keys()]
        vkey = a.vectors_key or next((k for k in VECTOR_KEYS if k in obj), None)
        if vkey is None or vkey not in obj:
            what = f"no key {a.vectors_key!r}" if a.vectors_key else f"none of the keys {', '.join(VECTOR_KEYS)}"
            raise UsageError(f"{path}: {what} (the dict has {', '.join(map(str, keys))}); name the vectors with --vectors-key")
        skey = a.sigmas_key or next((k for k in SIGMA_KEYS if k in obj and k != vkey), None)
        if a.sigmas_key and a.sigmas_key not in obj:
            raise UsageError(f"{path}: no key {a.sigmas_key!r} (the dict has {', '.join(map(str, keys))})")
        vec, sig = obj[vkey], (obj[skey] if skey is not None else None)
        if not isinstance(vec, torch.Tensor):
            raise UsageError(f"{path}: {vkey!r} is a {type(vec).__name__}, not a tensor")
        if sig is not None and not isinstance(sig, torch.Tensor):
            raise UsageError(f"{path}: {skey!r} is a {type(sig).__name__}, not a tensor")
        return vec, sig, vkey
    raise UsageError(f"{path}: holds a {type(obj).__name__}; expected a tensor, a dict of tensors or a pair")


def orient(vec: torch.Tensor, d: Optional[int], layout: Optional[str], key: Optional[str], path: str) -> torch.Tensor:
    """The vectors as [n, d]."""
    what = f"{path}{'[' + repr(key) + ']' if key else ''}"
    if not vec.is_floating_point():
        raise UsageError(f"{what}: dtype {vec.dtype} is not a floating-point type")
    if vec.dim() == 1:
        vec = vec.unsqueeze(0)
    if vec.dim() != 2:
        raise UsageError(f"{what}: shape {list(vec.shape)}; expected [n, d] or [d, n]")
    if layout is None and key in ("Vh", "vh"):
        layout = "rows"  # torch.linalg.svd's Vh: the right singular vectors are its rows
    if layout is None:
        if d is None:
            raise UsageError(f"{what}: shape {list(vec.shape)}: give the hidden size (--hidden D or --model DIR) to tell vectors from their entries")
        rows_ok, cols_ok = vec.shape[1] == d, vec.shape[0] == d
        if rows_ok and cols_ok:
            raise UsageError(f"{what}: shape {list(vec.shape)} is square: cannot tell rows from columns; give --layout rows or --layout columns")
        if not rows_ok and not cols_ok:
            raise UsageError(f"{what}: shape {list(vec.shape)}: neither dimension is the hidden size {d}")
        layout = "rows" if rows_ok else "columns"
    out = vec if layout == "rows" else vec.t()
    if d is not None and out.shape[1] != d:
        raise UsageError(f"{what}: with --layout {layout} the vectors have length {out.shape[1]}, the hidden size is {d}")
    return out


def run(argv=None) -> int:
    a = build_parser().parse_args(argv)
    d = hidden_size(a)
    if a.source_layer is not None and a.source_layer < 0 or a.target_layer is not None and a.target_layer < 0:
        raise UsageError("--source-layer and --target-layer must be >= 0")
    if a.source_layer is not None and a.target_layer is not None and a.source_layer > a.target_layer:
        raise UsageError(f"--source-layer {a.source_layer} is after --target-layer {a.target_layer}")
    if a.positions is not None:
        p = a.positions.strip()
        ok = p == "all" or (p.isdigit() and int(p) >= 1) or (p.startswith("list:") and all(x.isdigit() for x in p[5:].split(",")) and p[5:] != "")
        if not ok:
            raise UsageError(f"--positions {a.positions}: expected K (>= 1), list:I,J,... or all")
    tokens: List[List[int]] = []
    for t in a.tokens:
        parts = [x.strip() for x in t.split(",")]
        if not parts or not all(x.isdigit() for x in parts):
            raise UsageError(f"--tokens {t}: expected comma-separated non-negative integers")
        tokens.append([int(x) for x in parts])
    if not a.out.endswith(".safetensors"):
        raise UsageError(f"--out {a.out}: the file name must end in .safetensors")
    out_dir = os.path.dirname(os.path.abspath(a.out))
    if not os.path.isdir(out_dir):
        raise UsageError(f"--out {a.out}: directory {out_dir} does not exist")

    obj = load(a.input)
    vec, sig, key = pick(obj, a.input, a)
    saved_dtype = DTYPES.get(vec.dtype)
    V = orient(vec, d, a.layout, key, a.input).to(torch.float64)
    n = V.shape[0]
    if sig is not None:
        sig = sig.detach().reshape(-1).to(torch.float64)
    if a.num_vectors is not None:
        if a.num_vectors < 1 or a.num_vectors > n or (sig is not None and a.num_vectors > sig.numel()):
            have = n if sig is None else min(n, sig.numel())
            raise UsageError(f"--num-vectors {a.num_vectors}: the file has {have}")
        V = V[: a.num_vectors]
        sig = sig[: a.num_vectors] if sig is not None else None
        n = a.num_vectors
    if sig is not None:
        if sig.numel() != n:
            raise UsageError(f"{a.input}: {sig.numel()} singular values for {n} vectors; keep the first N of both with --num-vectors N")
        if not torch.isfinite(sig).all():
            raise UsageError(f"{a.input}: a singular value is not finite")
        if (sig < 0).any():
            raise UsageError(f"{a.input}: a singular value is negative ({sig.min().item():.6g}); singular values are >= 0")
        if a.squared:
            sig = sig.sqrt()
        if n > 1 and not bool((sig[:-1] >= sig[1:]).all()):
            order = torch.argsort(sig, descending=True)
            V, sig = V[order], sig[order]
            print(f"convert_pt.py: note: put the singular values in descending order (with their vectors)", file=sys.stderr)
    elif a.squared:
        raise UsageError("--squared needs singular values in the file")
    if not torch.isfinite(V).all():
        raise UsageError(f"{a.input}: a vector has a non-finite entry")

    with open(a.input, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    meta = {
        "method": a.method,
        "converted_from": os.path.basename(a.input),
        "converted_sha256": digest,
        "dtype": a.dtype or saved_dtype or "float32",
        "implementation": "convert_pt.py",
    }
    if a.source_layer is not None:
        meta["source_layer"] = str(a.source_layer)
    if a.target_layer is not None:
        meta["target_layer"] = str(a.target_layer)
    if a.positions is not None:
        meta["positions"] = a.positions.strip()
    if tokens:
        meta["tokens"] = json.dumps(tokens, separators=(",", ":"))
    try:
        save_vector_file(a.out, V.to(torch.float32), sig.to(torch.float32) if sig is not None else None, meta)
    except SafetensorsError as e:
        raise UsageError(str(e))
    print(f"convert_pt.py: wrote {a.out}: {n} vectors of length {V.shape[1]}"
          f"{', with singular values' if sig is not None else ''}; dtype {meta['dtype']}", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    try:
        return run(argv)
    except UsageError as e:
        print(f"convert_pt.py: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception:
        import traceback

        traceback.print_exc()
        return 2


if __name__ == "__main__":
    sys.exit(main())
