// KL(steered || unsteered) of the next-token distribution: how far a steering vector moves the model's
// prediction at the last position of each prompt (or on average over its last K positions). The
// research line scores singular vectors this way at both signs, +c v and -c v, because a vector can
// move the output at one sign and barely at the other (a single sign misses such vectors).
//
// It runs on the experiments' forward (src/engine/forward.ts): the unsteered pass of every prompt runs
// once through all layers, keeping the hidden state after each layer the caller may steer at (so
// every steering layer S of an atlas shares it); each steered sequence then starts from that copy,
// gets `add` on every row, and runs layers S+1..L-1 only, all steered sequences stacked in batches
// that keep memory bounded. The final norm and the whole LM head run at the scored rows only.
// The log-softmax and the KL sums are float64 on the host.
import { chunkByBudget, DEFAULT_ACTIVATION_BUDGET, type ForwardModel } from "../engine/forward.js";

/** Rows of logits fetched per LM-head call (bounds the [rows, vocab] scratch). */
const HEAD_ROWS = 32;

/** One steered sequence: prompt `prompt` with `add` added to the output of layer S at every position. */
export interface KlJob {
  prompt: number;
  add: Float32Array;
}

export interface KlEvaluatorOptions {
  /** Score the mean KL over the last `lastK` positions (default 1: the last position). */
  lastK?: number;
  /** Layers whose output may be steered: the unsteered state after each is kept. */
  steerLayers: readonly number[];
  /** Activation memory per batch (default DEFAULT_ACTIVATION_BUDGET). */
  activationBytes?: number;
}

/** log-softmax of each row of logits [rows, V] in float64. */
export function logSoftmaxRows(logits: Float32Array, rows: number, V: number): Float64Array {
  const out = new Float64Array(rows * V);
  for (let r = 0; r < rows; r++) {
    let max = -Infinity;
    for (let i = 0; i < V; i++) max = Math.max(max, logits[r * V + i]);
    let sum = 0;
    for (let i = 0; i < V; i++) sum += Math.exp(logits[r * V + i] - max);
    const lse = max + Math.log(sum);
    for (let i = 0; i < V; i++) out[r * V + i] = logits[r * V + i] - lse;
  }
  return out;
}

/** KL(p || q) from log-probabilities (float64): sum p (log p - log q). */
export function klFromLogProbs(logP: ArrayLike<number>, logQ: ArrayLike<number>, offP = 0, offQ = 0, V = logP.length): number {
  let kl = 0;
  for (let i = 0; i < V; i++) {
    const lp = logP[offP + i];
    kl += Math.exp(lp) * (lp - logQ[offQ + i]);
  }
  return Math.max(0, kl);
}

export class KlEvaluator {
  private constructor(
    readonly model: ForwardModel,
    readonly prompts: readonly (readonly number[])[],
    readonly lastK: number,
    /** Unsteered hidden state [T_p, d] per prompt after each kept layer. */
    private readonly states: Map<number, Float32Array[]>,
    /** Unsteered log-probabilities [lastK, V] per prompt. */
    private readonly baseLogProbs: Float64Array[],
    private readonly budget: number,
  ) {}

  /** The unsteered pass: every prompt through all layers once, states kept after `steerLayers`. */
  static async create(model: ForwardModel, prompts: readonly (readonly number[])[], opts: KlEvaluatorOptions): Promise<KlEvaluator> {
    const L = model.config.numLayers;
    if (model.numLayers !== L) throw new Error(`KlEvaluator: the forward runs ${model.numLayers} of ${L} layers (the logits need all)`);
    const lastK = opts.lastK ?? 1;
    for (const [i, p] of prompts.entries()) if (p.length < lastK) throw new RangeError(`prompt ${i + 1} has ${p.length} token(s), fewer than the ${lastK} positions scored`);
    const keep = [...new Set(opts.steerLayers)];
    for (const S of keep) if (!Number.isInteger(S) || S < 0 || S >= L) throw new RangeError(`steering layer ${S} outside 0..${L - 1}`);
    const d = model.config.hiddenSize, V = model.config.vocabSize;
    const budget = (opts.activationBytes ?? DEFAULT_ACTIVATION_BUDGET) / 4;
    const states = new Map<number, Float32Array[]>(keep.map((S) => [S, new Array<Float32Array>(prompts.length)]));
    const base = new Array<Float64Array>(prompts.length);
    const heap = model.rt.heap;
    for (const group of chunkByBudget(prompts.map((_, i) => i), (i) => model.sequenceFloats(prompts[i].length), budget)) {
      const mark = heap.mark();
      try {
        const lengths = group.map((i) => prompts[i].length);
        const start: number[] = [];
        let rows = 0;
        for (const T of lengths) start.push(rows), (rows += T);
        const h = heap.allocF32(rows * d);
        group.forEach((p, i) => model.embed(prompts[p], h + 4 * start[i] * d));
        // Layer by layer, so the state after each kept layer can be copied out.
        for (let l = 0; l < L; l++) {
          await model.run(h, lengths, l, l, { next: l + 1 < L ? l + 1 : 0 });
          const kept = states.get(l);
          if (kept) group.forEach((p, i) => (kept[p] = heap.f32(h + 4 * start[i] * d, lengths[i] * d).slice()));
        }
        const scored = group.flatMap((_, i) => lastRows(start[i] + lengths[i], lastK));
        const lp = await logProbsAt(model, h, scored);
        group.forEach((p, i) => (base[p] = lp.slice(i * lastK * V, (i + 1) * lastK * V)));
      } finally {
        heap.release(mark);
      }
    }
    return new KlEvaluator(model, prompts, lastK, states, base, budget);
  }

  /** ||h_S|| at the last token of prompt p, unsteered: the research line's unit for the steering scale. */
  residualNorm(S: number, p: number): number {
    const h = this.stateAt(S, p);
    const d = this.model.config.hiddenSize;
    let s = 0;
    for (let i = h.length - d; i < h.length; i++) s += h[i] * h[i];
    return Math.sqrt(s);
  }

  private stateAt(S: number, p: number): Float32Array {
    const st = this.states.get(S);
    if (!st) throw new Error(`KlEvaluator: layer ${S} was not among the steering layers`);
    return st[p];
  }

  /**
   * KL(steered || unsteered) of each job at layer S, the mean over the last lastK positions. The
   * result of a job does not depend on which other jobs run with it or on the thread count.
   */
  async evaluate(S: number, jobs: readonly KlJob[], onBatch?: (done: number, total: number) => void): Promise<number[]> {
    const { model } = this;
    const L = model.config.numLayers, d = model.config.hiddenSize, V = model.config.vocabSize;
    const heap = model.rt.heap;
    const out = new Array<number>(jobs.length);
    const order = jobs.map((_, i) => i);
    let done = 0;
    for (const chunk of chunkByBudget(order, (j) => model.sequenceFloats(this.prompts[jobs[j].prompt].length), this.budget)) {
      const mark = heap.mark();
      try {
        const lens = chunk.map((j) => this.prompts[jobs[j].prompt].length);
        const R = lens.reduce((a, b) => a + b, 0);
        const h = heap.allocF32(R * d);
        const add = heap.allocF32(d);
        const scored: number[] = [];
        let row = 0;
        chunk.forEach((j, i) => {
          const job = jobs[j];
          if (job.add.length !== d) throw new RangeError(`KlEvaluator: vector of length ${job.add.length}, expected ${d}`);
          heap.f32(h + 4 * row * d, lens[i] * d).set(this.stateAt(S, job.prompt));
          heap.f32(add, d).set(job.add);
          model.addToRows(h, row, lens[i], add);
          row += lens[i];
          scored.push(...lastRows(row, this.lastK));
        });
        await model.run(h, lens, S + 1, L - 1);
        const lp = await logProbsAt(model, h, scored);
        chunk.forEach((j, i) => {
          const base = this.baseLogProbs[jobs[j].prompt];
          let sum = 0;
          for (let k = 0; k < this.lastK; k++) sum += klFromLogProbs(lp, base, (i * this.lastK + k) * V, k * V, V);
          out[j] = sum / this.lastK;
        });
      } finally {
        heap.release(mark);
      }
      done += chunk.length;
      onBatch?.(done, jobs.length);
    }
    return out;
  }
}

/** The last k row indices ending before `end`. */
function lastRows(end: number, k: number): number[] {
  return Array.from({ length: k }, (_, i) => end - k + i);
}

/** Log-probabilities at rows of h (after the last layer): final norm, whole LM head, HEAD_ROWS rows at a time. */
async function logProbsAt(model: ForwardModel, h: number, rows: readonly number[]): Promise<Float64Array> {
  const V = model.config.vocabSize;
  const out = new Float64Array(rows.length * V);
  for (let r0 = 0; r0 < rows.length; r0 += HEAD_ROWS) {
    const part = rows.slice(r0, r0 + HEAD_ROWS);
    const logits = await model.allLogitsAt(h, part);
    out.set(logSoftmaxRows(logits, part.length, V), r0 * V);
  }
  return out;
}

/** How the steering magnitude is set: absolute scales, or fractions of ||h_S|| at each prompt's last token. */
export type KlScales = { kind: "absolute"; values: readonly number[] } | { kind: "residual-fraction"; values: readonly number[] };

/** One (vector, magnitude, sign): KL per prompt and its mean. */
export interface KlRow {
  vector: number;
  /** the flag's value: the absolute scale, or the fraction of the residual norm */
  magnitude: number;
  sign: 1 | -1;
  /** the scale applied to each prompt (sign included) */
  scales: number[];
  kl: number[];
  mean_kl: number;
}

/** Per vector: its largest mean KL over the two signs at each magnitude, and at which sign. */
export interface KlVectorSummary {
  vector: number;
  magnitude: number;
  kl_plus: number;
  kl_minus: number;
  max_kl: number;
  /** max_kl comes from this sign */
  sign: 1 | -1;
}

/**
 * Both-sign KL of each vector at each magnitude at layer S: rows (vectors outer, magnitudes, then +
 * before -) and a summary per (vector, magnitude).
 */
export async function klBothSigns(ev: KlEvaluator, S: number, vectors: readonly ArrayLike<number>[], scales: KlScales, onBatch?: (done: number, total: number) => void): Promise<{ rows: KlRow[]; summary: KlVectorSummary[] }> {
  const P = ev.prompts.length;
  const norms = Array.from({ length: P }, (_, p) => ev.residualNorm(S, p));
  const jobs: KlJob[] = [];
  const rows: KlRow[] = [];
  vectors.forEach((v, vi) => {
    for (const m of scales.values) {
      for (const sign of [1, -1] as const) {
        // scale * v formed in float32, as every other command forms it
        const perPrompt = norms.map((n) => sign * (scales.kind === "absolute" ? m : m * n));
        rows.push({ vector: vi, magnitude: m, sign, scales: perPrompt, kl: [], mean_kl: 0 });
        perPrompt.forEach((c, p) => jobs.push({ prompt: p, add: Float32Array.from(v, (x) => Math.fround(x) * Math.fround(c)) }));
      }
    }
  });
  const kl = await ev.evaluate(S, jobs, onBatch);
  rows.forEach((r, i) => {
    r.kl = kl.slice(i * P, (i + 1) * P);
    r.mean_kl = r.kl.reduce((a, b) => a + b, 0) / P;
  });
  const summary: KlVectorSummary[] = [];
  for (let i = 0; i < rows.length; i += 2) {
    const plus = rows[i], minus = rows[i + 1];
    const sign = plus.mean_kl >= minus.mean_kl ? 1 : -1;
    summary.push({ vector: plus.vector, magnitude: plus.magnitude, kl_plus: plus.mean_kl, kl_minus: minus.mean_kl, max_kl: Math.max(plus.mean_kl, minus.mean_kl), sign });
  }
  return { rows, summary };
}
