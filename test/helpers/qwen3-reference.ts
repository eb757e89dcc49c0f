// An independent float64 Qwen3 forward pass in plain TypeScript loops, written from transformers'
// modeling_qwen3.py (not from jacsteer's kernels), to check the wasm model and, by central finite
// differences, its Jacobians.
import type { Qwen3Config } from "../../src/model/config.js";
import type { TensorSource } from "../../src/model/weights.js";
import { qwen3TensorShapes } from "../../src/model/config.js";

export interface RefWeights {
  cfg: Qwen3Config;
  w: Map<string, Float64Array>;
}

export function loadRefWeights(cfg: Qwen3Config, src: TensorSource): RefWeights {
  const w = new Map<string, Float64Array>();
  for (const [name, shape] of qwen3TensorShapes(cfg)) {
    const a = new Float32Array(shape.reduce((x, y) => x * y, 1));
    src.readF32(name, a);
    w.set(name, Float64Array.from(a));
  }
  for (const name of ["model.norm.weight", "lm_head.weight"]) {
    if (src.has(name)) {
      const a = new Float32Array(src.shape(name).reduce((x, y) => x * y, 1));
      src.readF32(name, a);
      w.set(name, Float64Array.from(a));
    }
  }
  return { cfg, w };
}

type Mat = Float64Array[]; // rows

/**
 * cos/sin [T][hd/2] as transformers' Qwen3RotaryEmbedding computes them: in float32, rounded at each
 * step (inv_freq = 1 / theta^(2j/hd), angle = pos * inv_freq). Written here from transformers, not
 * from src/, so the check stays independent.
 */
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

function linear(x: Mat, W: Float64Array, out: number): Mat {
  const inF = x[0].length;
  return x.map((row) => {
    const y = new Float64Array(out);
    for (let o = 0; o < out; o++) {
      let s = 0;
      for (let i = 0; i < inF; i++) s += row[i] * W[o * inF + i];
      y[o] = s;
    }
    return y;
  });
}

function rms(row: Float64Array, w: Float64Array, eps: number, off = 0, n = row.length): void {
  let ss = 0;
  for (let i = 0; i < n; i++) ss += row[off + i] ** 2;
  const r = 1 / Math.sqrt(ss / n + eps);
  for (let i = 0; i < n; i++) row[off + i] = w[i] * row[off + i] * r;
}

function rmsMat(x: Mat, w: Float64Array, eps: number): Mat {
  return x.map((r) => {
    const y = Float64Array.from(r);
    rms(y, w, eps);
    return y;
  });
}

function layer(ref: RefWeights, i: number, h: Mat): Mat {
  const c = ref.cfg, W = (n: string) => ref.w.get(`model.layers.${i}.${n}`)!;
  const T = h.length, hd = c.headDim, H = c.numHeads, KV = c.numKvHeads, eps = c.rmsNormEps;
  const x = rmsMat(h, W("input_layernorm.weight"), eps);
  const q = linear(x, W("self_attn.q_proj.weight"), H * hd);
  const k = linear(x, W("self_attn.k_proj.weight"), KV * hd);
  const v = linear(x, W("self_attn.v_proj.weight"), KV * hd);
  for (let t = 0; t < T; t++) {
    for (let hh = 0; hh < H; hh++) rms(q[t], W("self_attn.q_norm.weight"), eps, hh * hd, hd);
    for (let hh = 0; hh < KV; hh++) rms(k[t], W("self_attn.k_norm.weight"), eps, hh * hd, hd);
  }
  const half = hd / 2;
  const tables = ropeTablesF32(T, hd, c.ropeTheta);
  const rot = (row: Float64Array, heads: number, pos: number) => {
    for (let hh = 0; hh < heads; hh++) {
      for (let j = 0; j < half; j++) {
        const cs = tables.cos[pos][j], sn = tables.sin[pos][j];
        const x1 = row[hh * hd + j], x2 = row[hh * hd + j + half];
        row[hh * hd + j] = x1 * cs - x2 * sn;
        row[hh * hd + j + half] = x2 * cs + x1 * sn;
      }
    }
  };
  for (let t = 0; t < T; t++) {
    rot(q[t], H, t);
    rot(k[t], KV, t);
  }
  const attn: Mat = Array.from({ length: T }, () => new Float64Array(H * hd));
  const group = H / KV;
  for (let hh = 0; hh < H; hh++) {
    const kv = Math.floor(hh / group);
    for (let t = 0; t < T; t++) {
      const s = new Float64Array(t + 1);
      let m = -Infinity;
      for (let u = 0; u <= t; u++) {
        let dot = 0;
        for (let j = 0; j < hd; j++) dot += q[t][hh * hd + j] * k[u][kv * hd + j];
        s[u] = dot / Math.sqrt(hd);
        m = Math.max(m, s[u]);
      }
      let z = 0;
      for (let u = 0; u <= t; u++) z += (s[u] = Math.exp(s[u] - m));
      for (let u = 0; u <= t; u++) for (let j = 0; j < hd; j++) attn[t][hh * hd + j] += (s[u] / z) * v[u][kv * hd + j];
    }
  }
  const o = linear(attn, W("self_attn.o_proj.weight"), c.hiddenSize);
  const h1 = h.map((r, t) => r.map((x, j) => x + o[t][j]));
  const x2 = rmsMat(h1, W("post_attention_layernorm.weight"), eps);
  const g = linear(x2, W("mlp.gate_proj.weight"), c.intermediateSize);
  const u = linear(x2, W("mlp.up_proj.weight"), c.intermediateSize);
  const a = g.map((r, t) => r.map((gv, j) => (gv / (1 + Math.exp(-gv))) * u[t][j]));
  const dn = linear(a, W("mlp.down_proj.weight"), c.hiddenSize);
  return h1.map((r, t) => r.map((x, j) => x + dn[t][j]));
}

/** hidden_states: [embeddings, layer 0 output, ...] up to `upTo` (inclusive), steering sv added after layer S. */
export function refHiddenStates(ref: RefWeights, tokens: number[], upTo = ref.cfg.numLayers - 1, steer?: { layer: number; sv: ArrayLike<number> }): Mat[] {
  const d = ref.cfg.hiddenSize, E = ref.w.get("model.embed_tokens.weight")!;
  let h: Mat = tokens.map((t) => E.slice(t * d, (t + 1) * d));
  const states = [h];
  for (let i = 0; i <= upTo; i++) {
    h = layer(ref, i, h);
    if (steer && steer.layer === i) h = h.map((r) => r.map((x, j) => x + steer.sv[j]));
    states.push(h);
  }
  return states;
}

/** The final norm of the last hidden state. */
export function refNormed(ref: RefWeights, last: Mat): Mat {
  return rmsMat(last, ref.w.get("model.norm.weight")!, ref.cfg.rmsNormEps);
}

export function refLogits(ref: RefWeights, last: Mat): Mat {
  return linear(refNormed(ref, last), ref.w.get("lm_head.weight") ?? ref.w.get("model.embed_tokens.weight")!, ref.cfg.vocabSize);
}

/** The target (last K rows of layer T's output, flattened) as a function of sv. */
export function refTarget(ref: RefWeights, tokens: number[], S: number, T: number, K: number, sv: ArrayLike<number>): Float64Array {
  const states = refHiddenStates(ref, tokens, T, { layer: S, sv });
  const h = states[T + 1];
  const out = new Float64Array(K * ref.cfg.hiddenSize);
  for (let i = 0; i < K; i++) out.set(h[h.length - K + i], i * ref.cfg.hiddenSize);
  return out;
}
