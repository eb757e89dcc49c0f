// Tests of the PyTorch reference (reference/*.py) through its command lines, on small random Qwen3
// checkpoints written by reference/make_random_checkpoint.py. Independent checks: torch.linalg.svd of
// the explicitly formed J (plain VJPs, not the double-VJP trick), central finite differences of the
// steered forward (no autograd), a float64 TypeScript Qwen3 forward (test/reference/util.ts), and a
// TypeScript safetensors parser. Skipped with a loud warning without torch; failed with
// JACSTEER_REQUIRE_TORCH=1.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { REPO, describeTorch, dot, flatten, qwen3ForwardF64, readSafetensors, relMaxErr, runPython, runPythonJson, runScript } from "./util.js";

interface Summary {
  singular_values: number[];
  residuals: number[];
  iterations: number;
  products: number;
  converged: boolean;
  seconds: number;
  tokens: number[][];
  implementation: string;
  exact?: { mode: string; shape: number[]; singular_values: number[]; vectors: number[][] };
}

const PROMPT = [3, 17, 42, 5, 99, 64, 7, 120, 11];
const PROMPT2 = [8, 1, 77, 30, 2, 56];

describeTorch("PyTorch reference scripts (reference/*.py)", () => {
  let tmp = "";
  let ck = ""; // F32, tied: d=64, 3 layers, 4 heads / 2 kv heads, head_dim 24 (!= 64/4), vocab 128
  const out = () => join(tmp, "pi.safetensors");
  let main: Summary;

  beforeAll(() => {
    tmp = mkdtempSync(join(tmpdir(), "jacsteer-reference-"));
    ck = join(tmp, "tiny-qwen3");
    runScript("make_random_checkpoint.py", ["--out", ck, "--seed", "3"]);
    // The main run, shared by the tests below (its vector file is their --at / --init input).
    main = powerIter([
      "--tokens", PROMPT.join(","), "--source-layer", "0", "--target-layer", "2", "--positions", "4",
      "--num-vectors", "4", "--dtype", "float64", "--max-iters", "400", "--tol", "1e-12", "--seed", "1",
      "--exact-svd", "--out", out(),
    ]);
  });
  afterAll(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  function powerIter(args: string[]): Summary {
    return JSON.parse(runScript("power_iteration.py", ["--model", ck, "--json", ...args])) as Summary;
  }

  /** Indices i whose singular value is separated from its neighbours by a relative gap > 2%. */
  function separated(s: number[], n: number): number[] {
    const ok: number[] = [];
    for (let i = 0; i < n; i++) {
      const below = (s[i] - s[i + 1]) / s[i], above = i === 0 ? 1 : (s[i - 1] - s[i]) / s[i - 1];
      if (below > 0.02 && above > 0.02) ok.push(i);
    }
    return ok;
  }

  function checkAgainstExact(sum: Summary, vectors: Float64Array[], n: number) {
    const ex = sum.exact!;
    for (let i = 0; i < n; i++) {
      const rel = Math.abs(sum.singular_values[i] - ex.singular_values[i]) / ex.singular_values[i];
      expect(rel, `sigma[${i}] ${sum.singular_values[i]} vs exact ${ex.singular_values[i]}`).toBeLessThan(1e-6);
    }
    const sep = separated(ex.singular_values, n);
    expect(sep.length).toBeGreaterThan(0);
    for (const i of sep) {
      const c = Math.abs(dot(vectors[i], ex.vectors[i])) / Math.sqrt(dot(vectors[i], vectors[i]) * dot(ex.vectors[i], ex.vectors[i]));
      expect(c, `|cos| of vector ${i}`).toBeGreaterThanOrEqual(0.9999);
    }
  }

  function fileVectors(path: string): Float64Array[] {
    const v = readSafetensors(path).tensors.get("vectors")!;
    const [n, d] = v.shape;
    return Array.from({ length: n }, (_, i) => v.data.slice(i * d, (i + 1) * d));
  }

  it("power iteration (double VJP) matches torch.linalg.svd of the explicit J in float64", () => {
    expect(main.implementation).toMatch(/^(minimal|transformers)$/);
    expect(main.exact!.mode).toBe("rows");
    expect(main.exact!.shape).toEqual([4 * 64, 64]);
    expect(main.tokens).toEqual([PROMPT]);
    expect(main.products).toBe(4 * (main.iterations + 1));
    for (let i = 1; i < 4; i++) expect(main.singular_values[i]).toBeLessThanOrEqual(main.singular_values[i - 1]);
    checkAgainstExact(main, fileVectors(out()), 4);
  });

  it("the vector file parses: F32 vectors [n, d], F32 singular_values [n], jacsteer.vectors.v1 metadata", () => {
    const f = readSafetensors(out());
    expect([...f.tensors.keys()].sort()).toEqual(["residuals", "singular_values", "vectors"]);
    const v = f.tensors.get("vectors")!, s = f.tensors.get("singular_values")!;
    expect(v.dtype).toBe("F32");
    expect(v.shape).toEqual([4, 64]);
    expect(s.dtype).toBe("F32");
    expect(s.shape).toEqual([4]);
    // the data section is exactly the two tensors, back to back
    const offs = [v, s].map((t) => (f.header[t === v ? "vectors" : "singular_values"] as { data_offsets: number[] }).data_offsets);
    expect(offs[0][0]).toBe(0);
    expect(offs[1][0]).toBe(offs[0][1]);
    const r = f.tensors.get("residuals")!;
    expect(r.dtype).toBe("F32");
    expect(r.shape).toEqual([4]);
    main.residuals.forEach((x, i) => expect(r.data[i]).toBe(Math.fround(x)));
    const m = f.metadata;
    for (const key of ["format", "method", "model", "source_layer", "target_layer", "positions", "seed", "tokens", "dtype", "device", "implementation", "torch_version", "num_vectors", "iterations"]) {
      expect(typeof m[key], `metadata ${key}`).toBe("string");
    }
    expect(m.format).toBe("jacsteer.vectors.v1");
    expect(m.method).toBe("double-vjp");
    expect(m.model).toBe(basename(ck));
    expect([m.source_layer, m.target_layer, m.positions, m.seed, m.num_vectors]).toEqual(["0", "2", "4", "1", "4"]);
    expect(JSON.parse(m.tokens)).toEqual([PROMPT]);
    expect(m.dtype).toBe("float64");
    expect(m.device).toBe("cpu");
    // run identity, written as jacsteer writes it (src/io/run-identity.ts)
    expect(m.model_config).toBe("[64,96,3,4,2,24,128]");
    expect(m.at_sha256).toBe("");
    expect(Number(m.iterations)).toBe(main.iterations);
    // values: f32 roundings of the summary's, unit vectors, orthogonal, largest |entry| positive
    main.singular_values.forEach((x, i) => expect(s.data[i]).toBe(Math.fround(x)));
    const V = fileVectors(out());
    for (let i = 0; i < 4; i++) {
      expect(Math.abs(dot(V[i], V[i]) - 1)).toBeLessThan(1e-6);
      for (let j = 0; j < i; j++) expect(Math.abs(dot(V[i], V[j]))).toBeLessThan(1e-6);
      let big = 0;
      for (const x of V[i]) if (Math.abs(x) > Math.abs(big)) big = x;
      expect(big).toBeGreaterThan(0);
    }
  });

  it("several prompts: sum of J_p^T J_p matches the SVD of the stacked J; double-VJP columns equal plain-VJP rows", () => {
    const common = ["--tokens", PROMPT.join(","), "--tokens", PROMPT2.join(","), "--source-layer", "1", "--target-layer", "2", "--positions", "3", "--dtype", "float64", "--exact-svd"];
    const cols = powerIter([...common, "--num-vectors", "2", "--max-iters", "400", "--tol", "1e-12", "--exact-mode", "columns", "--out", join(tmp, "two.safetensors")]);
    const rows = powerIter([...common, "--num-vectors", "1", "--max-iters", "0"]);
    expect(cols.exact!.shape).toEqual([2 * 3 * 64, 64]);
    expect(cols.tokens).toEqual([PROMPT, PROMPT2]);
    // J formed column by column (J e_i by the double VJP) and row by row (e_j^T J by plain VJPs)
    expect(relMaxErr(cols.exact!.singular_values, rows.exact!.singular_values)).toBeLessThan(1e-12);
    expect(Math.abs(dot(cols.exact!.vectors[0], rows.exact!.vectors[0]))).toBeGreaterThan(1 - 1e-12);
    checkAgainstExact(cols, fileVectors(join(tmp, "two.safetensors")), 2);
  });

  it("J v by central differences of the steered forward (no autograd) has norm sigma, also at a steered point", () => {
    // Jacobian at sv0 = 2.5 * (vector 1 of the first run), starting from vector 0 of that run.
    const at = `${out()}:1`, file = join(tmp, "at.safetensors");
    const res = powerIter([
      "--tokens", PROMPT.join(","), "--source-layer", "0", "--target-layer", "2", "--positions", "4", "--num-vectors", "2",
      "--dtype", "float64", "--max-iters", "400", "--tol", "1e-12", "--at", at, "--at-scale", "2.5", "--init", `${out()}:0`, "--out", file,
    ]);
    const meta = readSafetensors(file).metadata;
    expect(meta.at).toBe(at);
    expect(Number(meta.at_scale)).toBe(2.5);
    // at_sha256: SHA-256 of sv0 = 2.5 * row 1 as float32 little-endian bytes
    const row1 = fileVectors(out())[1];
    const bytes = Buffer.alloc(row1.length * 4);
    row1.forEach((x, i) => bytes.writeFloatLE(Math.fround(x * 2.5), i * 4));
    expect(meta.at_sha256).toBe(createHash("sha256").update(bytes).digest("hex"));
    const code = `
import json, sys, torch
sys.path.insert(0, "reference")
import qwen3_minimal as q3, power_iteration as pi
from safetensors_io import load_file
model, _ = q3.load_qwen3(sys.argv[1], "float64", "cpu", "minimal")
ids = torch.tensor([json.loads(sys.argv[2])])
out = {}
for name, path, scale in (("zero", sys.argv[3], 0.0), ("at", sys.argv[4], 2.5)):
    sv0 = scale * load_file(sys.argv[3])["vectors"][1].double()
    V = load_file(path)["vectors"].double()
    h = 1e-4
    f = lambda sv: pi.forward_to_layer(model, ids, 0, 2, sv)[:, -4:, :].reshape(-1)
    with torch.no_grad():
        Jv = [(f(sv0 + h * v) - f(sv0 - h * v)) / (2 * h) for v in V[:2]]
    out[name] = {"norms": [float(x.norm()) for x in Jv], "cross": float(Jv[0] @ Jv[1])}
print(json.dumps(out))`;
    const fd = runPythonJson<Record<string, { norms: number[]; cross: number }>>(code, [ck, JSON.stringify(PROMPT), out(), file]);
    for (const [name, sig] of [["zero", main.singular_values], ["at", res.singular_values]] as const) {
      for (let i = 0; i < 2; i++) expect(Math.abs(fd[name].norms[i] - sig[i]) / sig[i], `${name} ||J v${i}||`).toBeLessThan(1e-6);
      // right singular vectors map to orthogonal left ones
      expect(Math.abs(fd[name].cross) / (sig[0] * sig[1]), `${name} <J v0, J v1>`).toBeLessThan(1e-6);
    }
    // the Jacobian at the steered point is a different one
    expect(Math.abs(res.singular_values[0] - main.singular_values[0]) / main.singular_values[0]).toBeGreaterThan(1e-3);
  });

  it("the forward cut short after layer T gives the full forward's hidden_states[T+1]; later layers never run", () => {
    const code = `
import json, sys, torch
sys.path.insert(0, "reference")
import qwen3_minimal as q3, power_iteration as pi, forward_dump as fd
model, _ = q3.load_qwen3(sys.argv[1], "float64", "cpu", "minimal")
ids = torch.tensor([json.loads(sys.argv[2])])
L = q3.num_layers(model)
sv = torch.randn(q3.hidden_size(model), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
calls = []
hooks = [l.register_forward_hook(lambda m, i, o, k=k: calls.append(k)) for k, l in enumerate(q3.decoder_layers(model))]
hooks.append(model.lm_head.register_forward_hook(lambda m, i, o: calls.append("lm_head")))
res = []
for S in range(L):
    for T in range(S, L):
        calls.clear()
        with torch.no_grad():
            cut = pi.forward_to_layer(model, ids, S, T, sv)[0]
        ran = list(calls)
        for h in hooks: h.remove()
        full = fd.collect_forward(model, ids, S, sv)
        hooks = [l.register_forward_hook(lambda m, i, o, k=k: calls.append(k)) for k, l in enumerate(q3.decoder_layers(model))]
        hooks.append(model.lm_head.register_forward_hook(lambda m, i, o: calls.append("lm_head")))
        ref = full["hidden_states.%d" % (T + 1)]
        res.append({"S": S, "T": T, "ran": ran, "maxdiff": float((cut - ref).abs().max()), "scale": float(ref.abs().max())})
print(json.dumps(res))`;
    const res = runPythonJson<{ S: number; T: number; ran: (number | string)[]; maxdiff: number; scale: number }[]>(code, [ck, JSON.stringify(PROMPT)]);
    expect(res.length).toBe(6); // 3 layers: (S, T) with S <= T
    for (const r of res) {
      expect(r.ran, `layers run for S=${r.S} T=${r.T}`).toEqual(Array.from({ length: r.T + 1 }, (_, i) => i));
      expect(r.maxdiff, `S=${r.S} T=${r.T}`).toBeLessThanOrEqual(1e-14 * r.scale);
    }
  });

  it("forward_dump (float64) matches an independent float64 TypeScript Qwen3 forward, steered and not", () => {
    const dump = join(tmp, "fwd.safetensors");
    for (const steer of [false, true]) {
      const args = ["--model", ck, "--tokens", PROMPT.join(","), "--dtype", "float64", "--out", dump];
      if (steer) args.push("--at", `${out()}:0`, "--at-scale", "3", "--source-layer", "1");
      runScript("forward_dump.py", args);
      const f = readSafetensors(dump);
      expect(f.metadata.dtype).toBe("float64");
      let sv: Float64Array | undefined;
      if (steer) {
        const v = readSafetensors(out()).tensors.get("vectors")!;
        sv = v.data.slice(0, 64).map((x) => 3 * x);
      }
      const ref = qwen3ForwardF64(ck, PROMPT, sv ? { layer: 1, sv } : undefined);
      // The residual ~5e-8 is torch's float32 cos/sin being 1 ulp off the correctly rounded
      // tables here now and then; anything structural (a wrong norm, mask, rope or head grouping)
      // is O(1).
      for (let l = 0; l <= 3; l++) {
        const t = f.tensors.get(`hidden_states.${l}`)!;
        expect(t.dtype).toBe("F64");
        expect(t.shape).toEqual([PROMPT.length, 64]);
        const e = relMaxErr(t.data, flatten(ref.hidden[l]));
        expect(e, `hidden_states.${l} steer=${steer}`).toBeLessThan(1e-6);
      }
      expect(relMaxErr(f.tensors.get("normed")!.data, flatten(ref.normed))).toBeLessThan(1e-6);
      expect(f.tensors.get("logits")!.shape).toEqual([PROMPT.length, 128]);
      expect(relMaxErr(f.tensors.get("logits")!.data, flatten(ref.logits))).toBeLessThan(1e-6);
    }
  });

  it("reads BF16 weights, shards and an untied lm_head like the float64 TypeScript forward", () => {
    const ck2 = join(tmp, "bf16-sharded");
    runScript("make_random_checkpoint.py", ["--out", ck2, "--seed", "4", "--dtype", "BF16", "--untied", "--shards", "3", "--layers", "2", "--hidden", "48", "--head-dim", "16", "--heads", "6", "--kv-heads", "3"]);
    expect(existsSync(join(ck2, "model.safetensors.index.json"))).toBe(true);
    const dump = join(tmp, "fwd2.safetensors");
    runScript("forward_dump.py", ["--model", ck2, "--tokens", PROMPT2.join(","), "--dtype", "float64", "--out", dump]);
    const f = readSafetensors(dump);
    const ref = qwen3ForwardF64(ck2, PROMPT2);
    for (let l = 0; l <= 2; l++) expect(relMaxErr(f.tensors.get(`hidden_states.${l}`)!.data, flatten(ref.hidden[l]))).toBeLessThan(1e-6);
    expect(relMaxErr(f.tensors.get("logits")!.data, flatten(ref.logits))).toBeLessThan(1e-6);
  });

  it("float32 and bfloat16 runs agree with float64 to their precision", () => {
    const base = ["--tokens", PROMPT.join(","), "--source-layer", "0", "--target-layer", "2", "--num-vectors", "2", "--seed", "1", "--init", `${out()}:0`, "--init", `${out()}:1`];
    const f32 = powerIter([...base, "--dtype", "float32", "--max-iters", "60", "--tol", "1e-5"]);
    const bf16 = powerIter([...base, "--dtype", "bfloat16", "--max-iters", "10", "--tol", "1e-3"]);
    for (let i = 0; i < 2; i++) {
      expect(Math.abs(f32.singular_values[i] - main.singular_values[i]) / main.singular_values[i]).toBeLessThan(1e-4);
      expect(Math.abs(bf16.singular_values[i] - main.singular_values[i]) / main.singular_values[i]).toBeLessThan(0.05);
    }
  });

  it("uses transformers' Qwen3ForCausalLM when it can be imported (a stub whose layers return tuples)", () => {
    // A stand-in `transformers` package: the minimal model, loaded through the transformers entry point,
    // with decoder layers that return (hidden,) as older transformers do.
    const stub = join(tmp, "stub", "transformers");
    mkdirSync(stub, { recursive: true });
    writeFileSync(join(stub, "__init__.py"), `
import os, sys
sys.path.insert(0, ${JSON.stringify(join(REPO, "reference"))})
import qwen3_minimal as _q3
calls = []
class Qwen3ForCausalLM:
    @classmethod
    def from_pretrained(cls, model_dir, torch_dtype=None, attn_implementation=None, **kw):
        assert attn_implementation == "eager", attn_implementation
        m = _q3.Qwen3ForCausalLM.from_pretrained(model_dir, torch_dtype, "cpu")
        for layer in m.model.layers:
            layer.forward = (lambda f: lambda *a, **k: (f(*a, **k),))(layer.forward)
        print("stub transformers: loaded", torch_dtype, file=sys.stderr)
        return m
`);
    const args = ["--model", ck, "--json", "--tokens", PROMPT.join(","), "--source-layer", "0", "--target-layer", "2", "--num-vectors", "2", "--dtype", "float64", "--max-iters", "400", "--tol", "1e-12", "--seed", "1"];
    const r = runPython(["reference/power_iteration.py", ...args, "--out", join(tmp, "stub.safetensors")], 110_000, { PYTHONPATH: join(tmp, "stub") });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/stub transformers: loaded torch.float64/);
    const sum = JSON.parse(r.stdout) as Summary;
    expect(sum.implementation).toBe("transformers");
    expect(readSafetensors(join(tmp, "stub.safetensors")).metadata.implementation).toBe("transformers");
    for (let i = 0; i < 2; i++) expect(Math.abs(sum.singular_values[i] - main.singular_values[i]) / main.singular_values[i]).toBeLessThan(1e-10);
    // --impl minimal overrides the automatic choice
    const m = runPython(["reference/power_iteration.py", ...args, "--max-iters", "0", "--impl", "minimal"], 110_000, { PYTHONPATH: join(tmp, "stub") });
    expect(m.status, m.stderr).toBe(0);
    expect((JSON.parse(m.stdout) as Summary).implementation).toBe("minimal");
  });

  it("bad inputs exit 1 with one line naming the flag, and write no file", () => {
    const file = join(tmp, "never.safetensors");
    const cases: [string[], RegExp][] = [
      [["--tokens", "1,2,3,4,5", "--source-layer", "0", "--target-layer", "3"], /--target-layer 3 is out of range/],
      [["--tokens", "1,2,3,4,5", "--source-layer", "2", "--target-layer", "1"], /--source-layer 2 is after --target-layer 1/],
      [["--tokens", "1,2,3", "--source-layer", "0", "--target-layer", "1"], /--positions 4 needs at least 4 tokens/],
      [["--tokens", "1,2,3,4,500", "--source-layer", "0", "--target-layer", "1"], /token id 500 is outside the vocabulary/],
      [["--tokens", "1,x", "--source-layer", "0", "--target-layer", "1"], /--tokens/],
      [["--source-layer", "0", "--target-layer", "1"], /no prompt given/],
      [["--tokens", "1,2,3,4,5", "--source-layer", "0", "--target-layer", "1", "--at", join(tmp, "missing.safetensors")], /--at .*no such file/],
      [["--tokens", "1,2,3,4,5", "--source-layer", "0", "--target-layer", "1", "--init", `${out()}:9`], /row 9 out of range/],
      [["--tokens", "1,2,3,4,5", "--target-layer", "1"], /--source-layer/],
    ];
    for (const [args, msg] of cases) {
      const r = runPython(["reference/power_iteration.py", "--model", ck, "--out", file, ...args]);
      expect(r.status, args.join(" ")).toBe(1);
      const lines = r.stderr.trim().split("\n");
      expect(lines.length, r.stderr).toBe(1);
      expect(lines[0]).toMatch(msg);
      expect(existsSync(file)).toBe(false);
    }
    writeFileSync(join(tmp, "not-a-model"), "x");
    const r = runPython(["reference/power_iteration.py", "--model", join(tmp, "not-a-model"), "--tokens", "1,2,3,4", "--source-layer", "0", "--target-layer", "0"]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/--model .*not a directory/);
  });
});
