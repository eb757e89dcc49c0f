// Helpers for the tests of the PyTorch reference scripts (reference/*.py): running them, an
// independent safetensors parser, and an independent float64 Qwen3 forward in plain TypeScript,
// both written from the format spec and transformers' modeling_qwen3.py, not from reference/ or src/.
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { PYTHON } from "../helpers/torch.js";
import { openCheckpoint } from "../../src/node/checkpoint.js";
import { loadRefWeights, refHiddenStates, refLogits, refNormed } from "../helpers/qwen3-reference.js";

export { PYTHON, torchAvailable, describeTorch } from "../helpers/torch.js";

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

// ---------------------------------------------------------------------------------------------
// float64 Qwen3 forward: the shared independent reference (test/helpers/qwen3-reference.ts)

type Rows = Float64Array[];

export interface ForwardF64 {
  /** hidden[0] = embeddings, hidden[l+1] = output of layer l (before the final norm). */
  hidden: Rows[];
  normed: Rows;
  logits: Rows;
}

/** Float64 forward of a checkpoint directory, with sv added to layer `steer.layer`'s output if given. */
export function qwen3ForwardF64(dir: string, tokens: number[], steer?: { layer: number; sv: ArrayLike<number> }): ForwardF64 {
  const ckpt = openCheckpoint(dir);
  try {
    const ref = loadRefWeights(ckpt.config, ckpt.tensors);
    const hidden = refHiddenStates(ref, tokens, ckpt.config.numLayers - 1, steer);
    const last = hidden[hidden.length - 1];
    return { hidden, normed: refNormed(ref, last), logits: refLogits(ref, last) };
  } finally {
    ckpt.close();
  }
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

export { dot } from "../../src/linalg/dense.js";
