"""The seed's procedure in PyTorch on the CPU, timed: the PyTorch side of bench/workload.ts.

    /usr/bin/python3 bench/torch_seed.py --model DIR --tokens 1,2,3 --source-layer 6 --target-layer 20
        [--positions 4] [--num-vectors 8] [--iters 3] [--threads 2] [--init-json FILE]

Exactly what the seed's notes do for every J^T J v product: run the forward again (only layers <= T:
the model comes from reference/qwen3_minimal.py and the forward is cut short after layer T by
reference/power_iteration.py's forward_to_layer), then the double VJP

    g    = autograd.grad(t, sv, u, create_graph=True)   # u = 0, scaffolding
    Jv   = autograd.grad(g, u, v)
    JtJv = autograd.grad(t, sv, Jv.detach())

inside block power iteration (`--iters` applications, QR between them) and a final Rayleigh-Ritz step,
so (iters + 1) * n products in all. Weights are upcast to float32 (the seed ran BF16 checkpoints in
float32 on the CPU). The start block comes from --init-json ([n][d] numbers) so that jacsteer can be
started from the same block and the two results compared.

Prints one JSON object on stdout: products, seconds per product, load time, peak RSS, the Ritz values
and residuals, and which torch / BLAS ran.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

T_START = time.perf_counter()

import torch  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
import qwen3_minimal as q3  # noqa: E402
from power_iteration import canonical_sign, forward_to_layer, orthonormalize, rayleigh_ritz  # noqa: E402


def blas_libraries() -> list:
    """Shared libraries mapped into this process whose names say BLAS/LAPACK (after a matmul ran)."""
    torch.ones(64, 64) @ torch.ones(64, 64)
    libs = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1] if len(line.split()) >= 6 else ""
                name = os.path.basename(path).lower()
                if any(k in name for k in ("blas", "lapack", "mkl", "blis")):
                    libs.add(os.path.realpath(path))
    except OSError:
        pass
    return sorted(libs)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--source-layer", type=int, required=True)
    ap.add_argument("--target-layer", type=int, required=True)
    ap.add_argument("--positions", type=int, default=4)
    ap.add_argument("--num-vectors", type=int, default=8)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init-json")
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    S, T, K, n = a.source_layer, a.target_layer, a.positions, a.num_vectors
    ids = torch.tensor([[int(x) for x in a.tokens.split(",")]], dtype=torch.long)

    t0 = time.perf_counter()
    model, impl = q3.load_qwen3(a.model, "float32", "cpu", "minimal")
    load_seconds = time.perf_counter() - t0
    d = q3.hidden_size(model)

    product_seconds = []

    def jtjv(v: torch.Tensor) -> torch.Tensor:
        """One J^T J v, the seed's way: a fresh forward, then the three autograd.grad calls."""
        t = time.perf_counter()
        sv = torch.zeros(d, requires_grad=True)
        with torch.enable_grad():
            target = forward_to_layer(model, ids, S, T, sv)
            t_slice = target[:, -K:, :].reshape(-1)
            u = torch.zeros_like(t_slice, requires_grad=True)
            (g,) = torch.autograd.grad(t_slice, sv, grad_outputs=u, create_graph=True)
            (jv,) = torch.autograd.grad(g, u, grad_outputs=v.to(torch.float32), retain_graph=True)
            (out,) = torch.autograd.grad(t_slice, sv, grad_outputs=jv.detach())
        product_seconds.append(time.perf_counter() - t)
        return out.detach().to(torch.float64)

    def apply(V: torch.Tensor) -> torch.Tensor:
        return torch.stack([jtjv(V[:, c]) for c in range(V.shape[1])], dim=1)

    if a.init_json:
        with open(a.init_json) as f:
            V = torch.tensor(json.load(f), dtype=torch.float64).T.contiguous()
    else:
        V = torch.randn(d, n, generator=torch.Generator().manual_seed(a.seed), dtype=torch.float64)
    V = orthonormalize(V[:, :n])

    t_solve = time.perf_counter()
    for _ in range(a.iters):
        W = apply(V)
        _, AX, _, _ = rayleigh_ritz(V, W)
        V = orthonormalize(AX)
    W = apply(V)
    X, _, vals, res = rayleigh_ritz(V, W)
    X = canonical_sign(X)
    solve_seconds = time.perf_counter() - t_solve

    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    top = float(vals[0])
    print(json.dumps({
        "implementation": f"PyTorch {torch.__version__} ({impl} Qwen3), double VJP, forward re-run per product",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "blas": blas_libraries(),
        "products": len(product_seconds),
        "iterations": a.iters,
        "seconds_per_product": sum(product_seconds) / len(product_seconds),
        "seconds_per_product_median": sorted(product_seconds)[len(product_seconds) // 2],
        "load_seconds": load_seconds,
        "solve_seconds": solve_seconds,
        "import_to_exit_seconds": time.perf_counter() - T_START,
        "peak_rss_bytes": rss_kb * 1024,
        "singular_values": [float(x) for x in torch.sqrt(torch.clamp(vals, min=0))],
        "residuals": [float(x) for x in res],
        "relative_residuals": [float(x) / top for x in res],
        "vectors": X.T.tolist(),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
