"""Top right singular vectors of the steering Jacobian, the seed's way (PyTorch reference).

    /usr/bin/python3 reference/power_iteration.py --model DIR --tokens 1,2,3,4,5 [--tokens ...]
        --source-layer S --target-layer T [--positions 4] [--num-vectors 8] [--max-iters 100]
        [--tol 1e-6] [--seed 0] [--init FILE[:ROW]]... [--at FILE[:ROW] --at-scale A]
        [--dtype float32|bfloat16|float64] [--device cpu|cuda] [--impl auto|transformers|minimal]
        [--out FILE.safetensors] [--json] [--exact-svd [--exact-mode rows|columns]]

J = d target / d sv (CONTRACT.md section 1): sv is added to the output of decoder layer S at every
position (a forward hook adding sv to model.layers[S].mlp.down_proj's output, i.e. a bias there);
target = output of decoder layer T (transformers' hidden_states[T+1]) at the last K positions,
flattened to K*d, captured by a forward hook on model.layers[T] that then raises a private exception
so later layers never run. J^T J v is formed exactly as the seed's notes do (the double VJP):

    g    = autograd.grad(t, sv, u, create_graph=True)   # J^T u as a function of u (u = 0)
    Jv   = autograd.grad(g, u, v)                       # d(J^T u)/du applied to v = J v
    JtJv = autograd.grad(t, sv, Jv.detach())             # J^T (J v)

With several prompts J stacks their Jacobians, so J^T J = sum_p J_p^T J_p. Block power iteration
(float64 on the host) on n vectors: V <- orth(J^T J V) through a Rayleigh-Ritz rotation each step,
stopping when the sine of the largest principal angle between successive subspaces is below --tol or
after --max-iters, then a final Rayleigh-Ritz step: H = V^T (J^T J V), eigh, rotate;
sigma_i = sqrt(Ritz value i), descending; each vector's largest-magnitude entry is made positive.

--exact-svd also forms J explicitly (rows by plain VJPs e_j^T J -- independent of the double-VJP
trick -- or, with --exact-mode columns, columns J e_i by the double VJP) and reports
torch.linalg.svd of it in float64. For small models: it costs K*d (or d) products per prompt.

Exit status: 0 ok, 1 usage or input error (one line on stderr), 2 internal error.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from typing import Callable, List, Optional, Sequence

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qwen3_minimal as q3  # noqa: E402
from safetensors_io import SafetensorsError, raw_bytes, read_vector, read_vectors, save_vector_file  # noqa: E402


class UsageError(Exception):
    """Bad flags or inputs: reported as one line, exit status 1."""


class _StopForward(Exception):
    """Raised by the hook on layer T so that the forward stops there; carries layer T's output."""

    def __init__(self, hidden: torch.Tensor):
        super().__init__("forward cut short after the target layer")
        self.hidden = hidden


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------
# the steered forward, cut short after layer T


def forward_to_layer(model, input_ids: torch.Tensor, source_layer: int, target_layer: int,
                     sv: Optional[torch.Tensor]) -> torch.Tensor:
    """Output of decoder layer `target_layer` [B, T, d], with sv added to layer `source_layer`'s output.

    sv is added as a bias on model.layers[S].mlp.down_proj (the last thing layer S adds to the residual
    stream, so it is exactly "added to the output of layer S at every position"). Layers after T never
    run: the hook on layer T raises _StopForward with its output.
    """
    layers = q3.decoder_layers(model)
    handles = []
    if sv is not None:
        handles.append(layers[source_layer].mlp.down_proj.register_forward_hook(lambda mod, inp, out: out + sv))

    def stop(mod, inp, out):
        raise _StopForward(q3.layer_output(out))

    handles.append(layers[target_layer].register_forward_hook(stop))
    try:
        q3.run_model(model, input_ids)
    except _StopForward as s:
        return s.hidden
    finally:
        for h in handles:
            h.remove()
    raise RuntimeError(f"the hook on layer {target_layer} never fired")


class SteeringJacobian:
    """J for one or more prompts at sv = sv0; products in the model's dtype, results in float64 on the CPU."""

    def __init__(self, model, prompts: Sequence[Sequence[int]], source_layer: int, target_layer: int,
                 positions: int, sv0: torch.Tensor, device: str, dtype: torch.dtype):
        self.model = model
        self.prompts = [list(p) for p in prompts]
        self.S, self.T, self.K = source_layer, target_layer, positions
        self.d = q3.hidden_size(model)
        self.sv0 = sv0.to(device=device, dtype=dtype)
        self.device, self.dtype = device, dtype
        self.products = 0  # J^T J v products, one per vector per application

    def _ids(self, p: int) -> torch.Tensor:
        return torch.tensor([self.prompts[p]], dtype=torch.long, device=self.device)

    def target(self, p: int, sv: torch.Tensor) -> torch.Tensor:
        """Flattened target [K*d] of prompt p with steering vector sv."""
        h = forward_to_layer(self.model, self._ids(p), self.S, self.T, sv)
        return h[:, -self.K:, :].reshape(-1)

    def _graph(self, p: int):
        """(sv, t, u, g) with g = J^T u built with create_graph=True, as in the seed."""
        sv = self.sv0.clone().requires_grad_(True)
        with torch.enable_grad():
            t = self.target(p, sv)
            u = torch.zeros_like(t, requires_grad=True)
            (g,) = torch.autograd.grad(t, sv, grad_outputs=u, create_graph=True)
        return sv, t, u, g

    def apply_normal(self, V: torch.Tensor) -> torch.Tensor:
        """J^T J V for V [d, n] float64 (CPU) -> [d, n] float64, by the double VJP."""
        out = torch.zeros_like(V)
        for p in range(len(self.prompts)):
            sv, t, u, g = self._graph(p)
            for c in range(V.shape[1]):
                v = V[:, c].to(device=self.device, dtype=self.dtype)
                (jv,) = torch.autograd.grad(g, u, grad_outputs=v, retain_graph=True)
                (jtjv,) = torch.autograd.grad(t, sv, grad_outputs=jv.detach(), retain_graph=True)
                out[:, c] += jtjv.detach().to("cpu", torch.float64)
            del sv, t, u, g
        self.products += V.shape[1]
        return out

    def explicit(self, mode: str = "rows") -> torch.Tensor:
        """J [P*K*d, d] in float64, row by row (plain VJPs) or column by column (double VJP)."""
        blocks = []
        for p in range(len(self.prompts)):
            sv, t, u, g = self._graph(p)
            n_out = t.numel()
            if mode == "rows":
                J = torch.empty(n_out, self.d, dtype=torch.float64)
                for j in range(n_out):
                    e = torch.zeros_like(t)
                    e[j] = 1
                    (row,) = torch.autograd.grad(t, sv, grad_outputs=e, retain_graph=True)
                    J[j] = row.to("cpu", torch.float64)
            elif mode == "columns":
                J = torch.empty(n_out, self.d, dtype=torch.float64)
                for i in range(self.d):
                    e = torch.zeros(self.d, device=self.device, dtype=self.dtype)
                    e[i] = 1
                    (col,) = torch.autograd.grad(g, u, grad_outputs=e, retain_graph=True)
                    J[:, i] = col.to("cpu", torch.float64)
            else:
                raise UsageError(f"--exact-mode {mode}: expected rows or columns")
            blocks.append(J)
            del sv, t, u, g
        return torch.cat(blocks, 0)


# ------------------------------------------------------------------------------------------------
# block power iteration (float64, CPU)


def orthonormalize(V: torch.Tensor) -> torch.Tensor:
    return torch.linalg.qr(V, mode="reduced").Q


def rayleigh_ritz(V: torch.Tensor, W: torch.Tensor):
    """Ritz pairs of A on span(V) given W = A V: (X, AX, values desc, residual norms)."""
    H = V.T @ W
    H = 0.5 * (H + H.T)
    vals, Q = torch.linalg.eigh(H)
    order = torch.argsort(vals, descending=True)
    vals, Q = vals[order], Q[:, order]
    X, AX = V @ Q, W @ Q
    res = torch.linalg.vector_norm(AX - X * vals[None, :], dim=0)
    return X, AX, vals, res


def subspace_distance(U: torch.Tensor, V: torch.Tensor) -> float:
    """sin of the largest principal angle between span(U) and span(V), both orthonormal [d, n]:
    the spectral norm of (I - U U^T) V, accurate down to rounding (sqrt(1 - cos^2) bottoms out
    near 1e-8)."""
    R = V - U @ (U.T @ V)
    return float(torch.linalg.matrix_norm(R, ord=2))


def canonical_sign(X: torch.Tensor) -> torch.Tensor:
    """Flip each column so that its entry of largest magnitude (the first, on ties) is positive."""
    X = X.clone()
    for c in range(X.shape[1]):
        i = int(torch.argmax(X[:, c].abs()))
        if X[i, c] < 0:
            X[:, c] = -X[:, c]
    return X


def block_power_iteration(apply: Callable[[torch.Tensor], torch.Tensor], d: int, n: int, max_iters: int,
                          tol: float, seed: int, init: Sequence[torch.Tensor] = (),
                          progress: Optional[Callable[[int, torch.Tensor, torch.Tensor, float], None]] = None):
    g = torch.Generator().manual_seed(seed)
    V = torch.randn(d, n, generator=g, dtype=torch.float64)
    for i, x in enumerate(init[:n]):
        V[:, i] = x.to(torch.float64)
    V = orthonormalize(V)
    iterations, converged = 0, False
    for it in range(1, max_iters + 1):
        W = apply(V)
        iterations = it
        X, AX, vals, res = rayleigh_ritz(V, W)
        nxt = orthonormalize(AX)
        change = subspace_distance(V, nxt)
        if progress:
            progress(it, vals, res, change)
        V = nxt
        if change < tol:
            converged = True
            break
    W = apply(V)
    X, AX, vals, res = rayleigh_ritz(V, W)
    X = canonical_sign(X)
    sigmas = torch.sqrt(torch.clamp(vals, min=0))
    return {"vectors": X, "singular_values": sigmas, "ritz_values": vals, "residuals": res,
            "iterations": iterations, "converged": converged}


# ------------------------------------------------------------------------------------------------
# command line


def model_fingerprint(model_dir: str) -> str:
    """sha256 (first 16 hex) of config.json and, per weight file, its name, size and first MiB."""
    h = hashlib.sha256()
    with open(os.path.join(model_dir, "config.json"), "rb") as f:
        h.update(f.read())
    for name in sorted(os.listdir(model_dir)):
        if name.endswith(".safetensors"):
            path = os.path.join(model_dir, name)
            h.update(name.encode())
            h.update(str(os.path.getsize(path)).encode())
            with open(path, "rb") as f:
                h.update(f.read(1 << 20))
    return h.hexdigest()[:16]


def model_config_key(model) -> str:
    """The architecture as jacsteer's modelConfigKey writes it (src/io/run-identity.ts): a JSON array
    [hidden, intermediate, layers, heads, kv_heads, head_dim, vocab] without spaces."""
    c = model.config
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    kv = getattr(c, "num_key_value_heads", None) or c.num_attention_heads
    return json.dumps([c.hidden_size, c.intermediate_size, c.num_hidden_layers, c.num_attention_heads, kv, head_dim,
                       c.vocab_size], separators=(",", ":"))


def parse_token_list(s: str, flag: str) -> List[int]:
    try:
        ids = [int(x) for x in s.replace(" ", "").split(",") if x != ""]
    except ValueError:
        raise UsageError(f"{flag} {s!r}: expected comma-separated token ids")
    if not ids:
        raise UsageError(f"{flag}: empty token list")
    return ids


def tokenize_prompts(model_dir: str, texts: Sequence[str], chat: bool = False, system: Optional[str] = None) -> List[List[int]]:
    """Token ids of each text; with chat, rendered as a user message (after an optional system message)
    with the checkpoint's chat template, generation prompt added, thinking disabled (needs transformers)."""
    try:
        from transformers import AutoTokenizer
    except ImportError:
        AutoTokenizer = None
    if AutoTokenizer is not None:
        tok = AutoTokenizer.from_pretrained(model_dir)
        if not chat:
            return [list(tok(t, add_special_tokens=False)["input_ids"]) for t in texts]
        out = []
        for t in texts:
            messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": t}]
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, enable_thinking=False)
            out.append(list(tok(text, add_special_tokens=False)["input_ids"]))
        return out
    if chat:
        raise UsageError("--chat needs the `transformers` package (for the chat template); give token ids with --tokens instead")
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise UsageError("--prompt needs the `transformers` or `tokenizers` package; give token ids with --tokens instead")
    path = os.path.join(model_dir, "tokenizer.json")
    if not os.path.exists(path):
        raise UsageError(f"{path}: missing (needed to tokenize --prompt)")
    tok = Tokenizer.from_file(path)
    return [list(tok.encode(t, add_special_tokens=False).ids) for t in texts]


def gather_prompts(a) -> List[List[int]]:
    prompts: List[List[int]] = []
    for s in a.tokens or []:
        prompts.append(parse_token_list(s, "--tokens"))
    if a.tokens_file:
        try:
            with open(a.tokens_file, "r", encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise UsageError(f"--tokens-file {a.tokens_file}: cannot read ({e})")
        if not (isinstance(data, list) and all(isinstance(p, list) and p and all(isinstance(x, int) for x in p) for p in data)):
            raise UsageError(f"--tokens-file {a.tokens_file}: expected a JSON list of non-empty lists of token ids")
        prompts.extend([list(p) for p in data])
    if a.prompt:
        prompts.extend(tokenize_prompts(a.model, a.prompt, a.chat, a.system))
    elif a.chat:
        raise UsageError("--chat applies to --prompt texts, not to token ids")
    if not prompts:
        raise UsageError("no prompt given (use --tokens, --tokens-file or --prompt)")
    return prompts


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="power_iteration.py", description="Top singular vectors of the steering Jacobian (double-VJP block power iteration).")
    ap.add_argument("--model", required=True, help="Qwen3 checkpoint directory")
    ap.add_argument("--tokens", action="append", help="comma-separated token ids of one prompt (repeatable)")
    ap.add_argument("--tokens-file", help="JSON file [[ids], ...]")
    ap.add_argument("--prompt", action="append", help="prompt text (needs transformers or tokenizers)")
    ap.add_argument("--chat", action="store_true", help="render --prompt texts with the chat template (needs transformers)")
    ap.add_argument("--system", help="system message for --chat")
    ap.add_argument("--source-layer", type=int, required=True)
    ap.add_argument("--target-layer", type=int, required=True)
    ap.add_argument("--positions", type=int, default=4)
    ap.add_argument("--num-vectors", type=int, default=8)
    ap.add_argument("--max-iters", type=int, default=100)
    ap.add_argument("--tol", type=float, default=1e-6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init", action="append", default=[], help="FILE:ROW (one vector) or FILE (all its rows): initial guesses for the first vectors (repeatable)")
    ap.add_argument("--at", help="FILE[:ROW]: evaluate J at sv0 = at-scale * this vector")
    ap.add_argument("--at-scale", type=float, default=1.0)
    ap.add_argument("--dtype", choices=["float32", "bfloat16", "float64"], default="float32")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--impl", choices=["auto", "transformers", "minimal"], default="auto")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--out", help="result vector file (.safetensors)")
    ap.add_argument("--json", action="store_true", help="JSON summary on stdout")
    ap.add_argument("--exact-svd", action="store_true", help="also form J explicitly and SVD it (small models)")
    ap.add_argument("--exact-mode", choices=["rows", "columns"], default="rows")
    return ap


def run(argv=None) -> int:
    a = build_parser().parse_args(argv)
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    if not os.path.isdir(a.model):
        raise UsageError(f"--model {a.model}: not a directory")
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {a.device}: CUDA is not available")
    prompts = gather_prompts(a)

    t_load = time.perf_counter()
    try:
        model, impl = q3.load_qwen3(a.model, a.dtype, a.device, a.impl)
    except (q3.ConfigError, SafetensorsError) as e:
        raise UsageError(str(e))
    load_seconds = time.perf_counter() - t_load
    L, d, vocab = q3.num_layers(model), q3.hidden_size(model), q3.vocab_size(model)
    S, T, K, n = a.source_layer, a.target_layer, a.positions, a.num_vectors
    if not 0 <= S < L:
        raise UsageError(f"--source-layer {S} is out of range: the model has layers 0..{L - 1}")
    if not 0 <= T < L:
        raise UsageError(f"--target-layer {T} is out of range: the model has layers 0..{L - 1}")
    if S > T:
        raise UsageError(f"--source-layer {S} is after --target-layer {T}")
    if K < 1:
        raise UsageError(f"--positions {K} must be a positive integer")
    if not 1 <= n <= d:
        raise UsageError(f"--num-vectors {n} must be between 1 and the hidden size {d}")
    if a.max_iters < 0:
        raise UsageError(f"--max-iters {a.max_iters} must be >= 0")
    for i, p in enumerate(prompts):
        if len(p) < K:
            raise UsageError(f"--positions {K} needs at least {K} tokens, but prompt {i + 1} has {len(p)}")
        bad = [x for x in p if not 0 <= x < vocab]
        if bad:
            raise UsageError(f"prompt {i + 1}: token id {bad[0]} is outside the vocabulary 0..{vocab - 1}")

    def vector(spec: str, flag: str) -> torch.Tensor:
        try:
            v = read_vector(spec)
        except SafetensorsError as e:
            raise UsageError(f"{flag} {spec}: {e}")
        if v.numel() != d:
            raise UsageError(f"{flag} {spec}: vector has length {v.numel()}, the model's hidden size is {d}")
        if not torch.isfinite(v).all():
            raise UsageError(f"{flag} {spec}: vector has a non-finite entry")
        return v

    # sv0 is rounded to float32 (as jacsteer holds it) before use, and identified by the SHA-256 of
    # those float32 little-endian bytes (metadata at_sha256, the same as jacsteer's src/io/run-identity.ts).
    sv0_f32 = (vector(a.at, "--at") * a.at_scale).to(torch.float32) if a.at else None
    sv0 = sv0_f32.to(torch.float64) if sv0_f32 is not None else torch.zeros(d, dtype=torch.float64)
    init = []
    for spec in a.init:  # FILE:ROW is one vector, FILE all of its rows (as jacsteer's --init)
        try:
            rows = read_vectors(spec)
        except SafetensorsError as e:
            raise UsageError(f"--init {spec}: {e}")
        if rows.shape[1] != d:
            raise UsageError(f"--init {spec}: vectors have length {rows.shape[1]}, the model's hidden size is {d}")
        if not torch.isfinite(rows).all():
            raise UsageError(f"--init {spec}: a vector has a non-finite entry")
        init.extend(rows)
    if len(init) > n:
        log(f"power_iteration: using the first {n} of {len(init)} --init vectors")
        init = init[:n]

    dtype = q3.DTYPES[a.dtype]
    jac = SteeringJacobian(model, prompts, S, T, K, sv0, a.device, dtype)
    log(f"power_iteration: {impl} Qwen3 from {a.model} ({L} layers, d={d}), {a.dtype} on {a.device}, "
        f"S={S} T={T} K={K} n={n}, {len(prompts)} prompt(s), loaded in {load_seconds:.2f}s")

    def progress(it, vals, res, change):
        sig = ", ".join(f"{x:.6g}" for x in torch.sqrt(torch.clamp(vals, min=0)).tolist())
        log(f"iter {it}: subspace change {change:.3e}; sigma [{sig}]")

    t0 = time.perf_counter()
    result = block_power_iteration(jac.apply_normal, d, n, a.max_iters, a.tol, a.seed, init, progress)
    seconds = time.perf_counter() - t0
    sig = result["singular_values"]
    log(f"done: {result['iterations']} iterations, {jac.products} products, {seconds:.2f}s, "
        f"{'converged' if result['converged'] else 'NOT converged'} (tol {a.tol:g})")

    summary = {
        "singular_values": sig.tolist(),
        "residuals": result["residuals"].tolist(),
        "iterations": result["iterations"],
        "products": jac.products,
        "converged": result["converged"],
        "seconds": seconds,
        "load_seconds": load_seconds,
        "tokens": prompts,
        "implementation": impl,
        "dtype": a.dtype,
        "device": a.device,
        "method": "double-vjp",
        "source_layer": S,
        "target_layer": T,
        "positions": K,
        "num_vectors": n,
        "seed": a.seed,
    }

    if a.exact_svd:
        te = time.perf_counter()
        J = jac.explicit(a.exact_mode)
        U, Sx, Vh = torch.linalg.svd(J, full_matrices=False)
        Vx = canonical_sign(Vh[:n].T)
        cos = (Vx.T @ result["vectors"]).diagonal().abs()
        rel = (sig - Sx[:n]).abs() / Sx[:n].clamp(min=1e-300)
        summary["exact"] = {
            "mode": a.exact_mode,
            "shape": list(J.shape),
            "singular_values": Sx.tolist(),
            "vectors": Vx.T.tolist(),
            "sigma_rel_error": rel.tolist(),
            "abs_cosine": cos.tolist(),
            "seconds": time.perf_counter() - te,
        }
        top = ", ".join(f"{x:.10g}" for x in Sx[: n + 2].tolist())
        log(f"exact SVD of J {list(J.shape)} ({a.exact_mode}): sigma [{top}]")
        for i in range(n):
            log(f"  v{i}: power {sig[i].item():.10g} exact {Sx[i].item():.10g} rel {rel[i].item():.2e} |cos| {cos[i].item():.8f}")

    if a.out:
        meta = {
            "method": "double-vjp",
            "model": os.path.basename(os.path.normpath(os.path.abspath(a.model))),
            "model_path": os.path.abspath(a.model),
            "model_hash": model_fingerprint(a.model),
            "model_config": model_config_key(model),
            "at_sha256": hashlib.sha256(raw_bytes(sv0_f32)).hexdigest() if sv0_f32 is not None else "",
            "at": a.at or "",
            "at_scale": repr(a.at_scale) if a.at else "",
            "init": ",".join(a.init),
            "chat": "true" if a.chat else "false",
            "source_layer": str(S),
            "target_layer": str(T),
            "positions": str(K),
            "seed": str(a.seed),
            "tokens": json.dumps(prompts),
            "dtype": a.dtype,
            "device": a.device,
            "implementation": impl,
            "torch_version": torch.__version__,
            "num_vectors": str(n),
            "iterations": str(result["iterations"]),
            "products": str(jac.products),
            "max_iters": str(a.max_iters),
            "tol": repr(a.tol),
            "converged": "true" if result["converged"] else "false",
            "residuals": json.dumps(result["residuals"].tolist()),
            "generator": "reference/power_iteration.py",
        }
        save_vector_file(a.out, result["vectors"].T.contiguous(), sig, meta, residuals=result["residuals"])
        log(f"wrote {a.out}")

    if a.json:
        print(json.dumps(summary))
    else:
        for i, s in enumerate(sig.tolist()):
            print(f"sigma[{i}] = {s:.10g}  (residual {result['residuals'][i].item():.3e})")
    return 0


def main(argv=None) -> int:
    try:
        return run(argv)
    except UsageError as e:
        log(f"power_iteration.py: error: {e}")
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception:
        import traceback

        traceback.print_exc()
        return 2


if __name__ == "__main__":
    sys.exit(main())
