// Helpers for the tests of the PyTorch reference scripts (reference/*.py): running them, an
// independent safetensors parser, and an independent float64 Qwen3 forward in plain TypeScript,
// both written from the format spec and transformers' modeling_qwen3.py, not from reference/ or src/.
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

/** The interpreter with torch: Debian's system python (the python3 on PATH may lack torch). */
export const PYTHON = process.env.JACSTEER_PYTHON ?? "/usr/bin/python3";

let torchCached: boolean | undefined;
export function torchAvailable(): boolean {
  if (torchCached === undefined) torchCached = spawnSync(PYTHON, ["-c", "import torch"], { stdio: "ignore" }).status === 0;
  return torchCached;
}

/**
 * A describe block that needs PyTorch: where torch cannot be imported it warns loudly and skips,
 * or fails when JACSTEER_REQUIRE_TORCH=1. (Self-contained so these tests depend on nothing in flux.)
 */
export function describeTorch(name: string, body: () => void): void {
  if (torchAvailable()) {
    describe(name, body);
    return;
  }
  const required = process.env.JACSTEER_REQUIRE_TORCH === "1";
  console.warn(
    `\n!!!!!!!! WARNING: ${PYTHON} cannot import torch: "${name}" ` +
      `${required ? "FAILS (JACSTEER_REQUIRE_TORCH=1)" : "is SKIPPED (set JACSTEER_REQUIRE_TORCH=1 to fail instead)"} !!!!!!!!\n`,
  );
  describe(name, () => {
    if (required) it("needs torch", () => expect.fail(`${PYTHON} cannot import torch and JACSTEER_REQUIRE_TORCH=1`));
    else it.skip("needs torch (not available)", () => {});
  });
}

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const REFERENCE = join(REPO, "reference");

export interface PyResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Run `/usr/bin/python3 reference/<script> ...args` (or `-c code`) in the repository root. */
export function runPython(args: string[], timeoutMs = 110_000, env: Record<string, string> = {}): PyResult {
  const p = spawnSync(PYTHON, args, { cwd: REPO, encoding: "utf8", maxBuffer: 1 << 28, timeout: timeoutMs, env: { ...process.env, OMP_NUM_THREADS: "2", ...env } });
  return { status: p.status, stdout: p.stdout ?? "", stderr: p.stderr ?? String(p.error ?? "") };
}

/** Run a reference script and insist on exit status 0; returns stdout. */
export function runScript(script: string, args: string[], timeoutMs?: number, env?: Record<string, string>): string {
  const r = runPython([join(REFERENCE, script), ...args], timeoutMs, env);
  if (r.status !== 0) throw new Error(`${script} ${args.join(" ")} exited ${r.status}:\n${r.stderr.slice(-4000)}`);
  return r.stdout;
}

/** Run python code (a script string) with extra argv; insist on status 0; parse stdout's last line as JSON. */
export function runPythonJson<T>(code: string, args: string[] = []): T {
  const r = runPython(["-c", code, ...args]);
  if (r.status !== 0) throw new Error(`python -c exited ${r.status}:\n${r.stderr.slice(-4000)}`);
  const lines = r.stdout.trim().split("\n");
  return JSON.parse(lines[lines.length - 1]) as T;
}

// ---------------------------------------------------------------------------------------------
// safetensors: 8-byte little-endian header length, JSON header, data (offsets relative to its start)

export interface StTensor {
  dtype: string;
  shape: number[];
  /** Values widened to f64 (exactly: every stored float dtype is a subset of f64). */
  data: Float64Array;
  /** Raw bytes of the tensor. */
  bytes: Uint8Array;
}

export interface StFile {
  headerLength: number;
  header: Record<string, unknown>;
  metadata: Record<string, string>;
  tensors: Map<string, StTensor>;
}

function bf16ToF64(bits: number): number {
  const buf = new DataView(new ArrayBuffer(4));
  buf.setUint32(0, (bits & 0xffff) << 16, true);
  return buf.getFloat32(0, true);
}

function f16ToF64(h: number): number {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

const ITEM: Record<string, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8 };

export function readSafetensors(path: string): StFile {
  const buf = readFileSync(path);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const n = Number(view.getBigUint64(0, true));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString("utf8")) as Record<string, unknown>;
  const start = 8 + n;
  const tensors = new Map<string, StTensor>();
  for (const [name, info] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    const { dtype, shape, data_offsets } = info as { dtype: string; shape: number[]; data_offsets: [number, number] };
    const size = ITEM[dtype];
    if (!size) throw new Error(`${path}: ${name}: dtype ${dtype} not handled by the test parser`);
    const count = shape.reduce((a, b) => a * b, 1);
    const [b, e] = data_offsets;
    if (e - b !== count * size) throw new Error(`${path}: ${name}: ${e - b} bytes for ${count} x ${dtype}`);
    const data = new Float64Array(count);
    for (let i = 0; i < count; i++) {
      const o = start + b + i * size;
      data[i] =
        dtype === "F64" ? view.getFloat64(o, true)
        : dtype === "F32" ? view.getFloat32(o, true)
        : dtype === "F16" ? f16ToF64(view.getUint16(o, true))
        : dtype === "BF16" ? bf16ToF64(view.getUint16(o, true))
        : Number(view.getBigInt64(o, true));
    }
    tensors.set(name, { dtype, shape, data, bytes: buf.subarray(start + b, start + e) });
  }
  return { headerLength: n, header, metadata: (header.__metadata__ ?? {}) as Record<string, string>, tensors };
}

/** All tensors of a checkpoint directory (model.safetensors or the shards of the index). */
export function readCheckpointTensors(dir: string): Map<string, StTensor> {
  let files: string[];
  try {
    const index = JSON.parse(readFileSync(join(dir, "model.safetensors.index.json"), "utf8")) as { weight_map: Record<string, string> };
    files = [...new Set(Object.values(index.weight_map))];
  } catch {
    files = ["model.safetensors"];
  }
  const out = new Map<string, StTensor>();
  for (const f of files) for (const [k, v] of readSafetensors(join(dir, f)).tensors) out.set(k, v);
  return out;
}

// ---------------------------------------------------------------------------------------------
// float64 Qwen3 forward (transformers' modeling_qwen3.py), RoPE tables in float32 as transformers

type Rows = Float64Array[];

function matmulT(x: Rows, W: Float64Array, nOut: number): Rows {
  const nIn = x[0].length;
  return x.map((r) => {
    const y = new Float64Array(nOut);
    for (let o = 0; o < nOut; o++) {
      let s = 0;
      for (let i = 0; i < nIn; i++) s += r[i] * W[o * nIn + i];
      y[o] = s;
    }
    return y;
  });
}

function rmsnormInPlace(r: Float64Array, w: Float64Array, eps: number, off: number, n: number): void {
  let ss = 0;
  for (let i = 0; i < n; i++) ss += r[off + i] * r[off + i];
  const inv = 1 / Math.sqrt(ss / n + eps);
  for (let i = 0; i < n; i++) r[off + i] = w[i] * (r[off + i] * inv);
}

/** cos/sin [T][hd/2] computed in float32 the way Qwen3RotaryEmbedding does (rounded at each step). */
function ropeTablesF32(T: number, hd: number, theta: number): { cos: Float64Array[]; sin: Float64Array[] } {
  const f = Math.fround, half = hd / 2;
  const inv = Array.from({ length: half }, (_, j) => f(1 / f(Math.pow(f(theta), f(f(2 * j) / hd)))));
  const cos: Float64Array[] = [], sin: Float64Array[] = [];
  for (let t = 0; t < T; t++) {
    cos.push(Float64Array.from(inv, (v) => f(Math.cos(f(t * v)))));
    sin.push(Float64Array.from(inv, (v) => f(Math.sin(f(t * v)))));
  }
  return { cos, sin };
}

export interface ForwardF64 {
  /** hidden[0] = embeddings, hidden[l+1] = output of layer l (before the final norm). */
  hidden: Rows[];
  normed: Rows;
  logits: Rows;
}

/** Float64 forward of a checkpoint directory, with sv added to layer `steer.layer`'s output if given. */
export function qwen3ForwardF64(dir: string, tokens: number[], steer?: { layer: number; sv: ArrayLike<number> }): ForwardF64 {
  const cfg = JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as Record<string, number | boolean | null>;
  const W = readCheckpointTensors(dir);
  const get = (n: string) => {
    const t = W.get(n);
    if (!t) throw new Error(`${dir}: no tensor ${n}`);
    return t.data;
  };
  const d = cfg.hidden_size as number, H = cfg.num_attention_heads as number, KV = cfg.num_key_value_heads as number;
  const hd = (cfg.head_dim as number) ?? d / H, I = cfg.intermediate_size as number, L = cfg.num_hidden_layers as number;
  const eps = (cfg.rms_norm_eps as number) ?? 1e-6, theta = (cfg.rope_theta as number) ?? 1e6, V = cfg.vocab_size as number;
  const T = tokens.length, half = hd / 2, group = H / KV;
  const { cos, sin } = ropeTablesF32(T, hd, theta);
  const E = get("model.embed_tokens.weight");
  let h: Rows = tokens.map((t) => E.slice(t * d, (t + 1) * d));
  const hidden: Rows[] = [h];
  for (let l = 0; l < L; l++) {
    const P = (n: string) => get(`model.layers.${l}.${n}`);
    const x = h.map((r) => Float64Array.from(r));
    x.forEach((r) => rmsnormInPlace(r, P("input_layernorm.weight"), eps, 0, d));
    const q = matmulT(x, P("self_attn.q_proj.weight"), H * hd);
    const k = matmulT(x, P("self_attn.k_proj.weight"), KV * hd);
    const v = matmulT(x, P("self_attn.v_proj.weight"), KV * hd);
    const rotate = (r: Float64Array, heads: number, t: number) => {
      for (let a = 0; a < heads; a++) {
        for (let j = 0; j < half; j++) {
          const x1 = r[a * hd + j], x2 = r[a * hd + half + j];
          r[a * hd + j] = x1 * cos[t][j] - x2 * sin[t][j];
          r[a * hd + half + j] = x2 * cos[t][j] + x1 * sin[t][j];
        }
      }
    };
    for (let t = 0; t < T; t++) {
      for (let a = 0; a < H; a++) rmsnormInPlace(q[t], P("self_attn.q_norm.weight"), eps, a * hd, hd);
      for (let a = 0; a < KV; a++) rmsnormInPlace(k[t], P("self_attn.k_norm.weight"), eps, a * hd, hd);
      rotate(q[t], H, t);
      rotate(k[t], KV, t);
    }
    const att: Rows = Array.from({ length: T }, () => new Float64Array(H * hd));
    for (let a = 0; a < H; a++) {
      const g = Math.floor(a / group);
      for (let t = 0; t < T; t++) {
        const s = new Float64Array(t + 1);
        let m = -Infinity;
        for (let u = 0; u <= t; u++) {
          let dot = 0;
          for (let j = 0; j < hd; j++) dot += q[t][a * hd + j] * k[u][g * hd + j];
          s[u] = dot * hd ** -0.5;
          m = Math.max(m, s[u]);
        }
        let z = 0;
        for (let u = 0; u <= t; u++) z += s[u] = Math.exp(s[u] - m);
        for (let u = 0; u <= t; u++) for (let j = 0; j < hd; j++) att[t][a * hd + j] += (s[u] / z) * v[u][g * hd + j];
      }
    }
    const o = matmulT(att, P("self_attn.o_proj.weight"), d);
    const h1 = h.map((r, t) => r.map((y, j) => y + o[t][j]));
    const x2 = h1.map((r) => Float64Array.from(r));
    x2.forEach((r) => rmsnormInPlace(r, P("post_attention_layernorm.weight"), eps, 0, d));
    const gate = matmulT(x2, P("mlp.gate_proj.weight"), I), up = matmulT(x2, P("mlp.up_proj.weight"), I);
    const act = gate.map((r, t) => r.map((gv, j) => (gv / (1 + Math.exp(-gv))) * up[t][j]));
    const down = matmulT(act, P("mlp.down_proj.weight"), d);
    h = h1.map((r, t) => r.map((y, j) => y + down[t][j] + (steer && steer.layer === l ? steer.sv[j] : 0)));
    hidden.push(h);
  }
  const normed = h.map((r) => Float64Array.from(r));
  normed.forEach((r) => rmsnormInPlace(r, get("model.norm.weight"), eps, 0, d));
  const head = W.has("lm_head.weight") ? get("lm_head.weight") : E;
  return { hidden, normed, logits: matmulT(normed, head, V) };
}

/** max |a - b| / max |b|: error in units of the reference's scale. */
export function relMaxErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`relMaxErr: lengths ${a.length} and ${b.length}`);
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    const e = Math.abs(a[i] - b[i]);
    num = Number.isNaN(e) ? Infinity : Math.max(num, e);
    den = Math.max(den, Math.abs(b[i]));
  }
  return num / Math.max(den, 1e-300);
}

export function flatten(rows: Rows): Float64Array {
  const out = new Float64Array(rows.length * rows[0].length);
  rows.forEach((r, i) => out.set(r, i * r.length));
  return out;
}

export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}
