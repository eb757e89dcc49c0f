// Contrastive activation addition (Rimsky et al., "Steering Llama 2 via Contrastive Activation
// Addition"): the steering vector is the mean over contrastive pairs of
//
//   h_S(prompt + positive)[answer token] - h_S(prompt + negative)[answer token]
//
// where h_S is the residual stream at the output of decoder layer S (the steering site: the vector is
// added back where it was read). The pairs and their answer tokens come from the dataset reader and
// prompt builder of src/evaluation/ (the same ones eval-ab uses): for a letter or Yes/No item the
// answer token is the one token where the two answers differ (the letter, not the closing
// parenthesis, which both answers share: reading it would give a vector near zero); for a
// prompt/completion pair it is the last token. An explicit answer position overrides both.
import { checkTokens, InputError, type Qwen3Model } from "../model/qwen3.js";
import type { Qwen3Config } from "../model/config.js";
import { chunkByBudget, DEFAULT_ACTIVATION_BUDGET, type ForwardModel } from "../engine/forward.js";

export interface PairTokens {
  positive: number[];
  negative: number[];
  /** the rows read in positive and negative; when absent, `answerPosition` decides */
  rows?: [number, number];
  /** where the pair is in its file, for messages ("--dataset F line 3") */
  where?: string;
  /** 1-based line number (older callers; `where` wins) */
  line?: number;
}

export interface CaaResult {
  /** the mean difference, float64 */
  vector: Float64Array;
  /** number of pairs averaged */
  count: number;
  /** the resolved (non-negative) answer rows of each pair: [positive, negative] */
  rows: [number, number][];
  /**
   * median over every position of every sequence of ||h_S||: the scale a CAA vector is judged
   * against (a mean difference far below it is probably reading a token both answers share)
   */
  medianNorm: number;
}

function answerRow(position: number, length: number, what: string): number {
  const r = position < 0 ? length + position : position;
  if (!Number.isInteger(position) || r < 0 || r >= length) {
    throw new InputError(`--answer-position ${position} is out of range for ${what} (${length} tokens: 0..${length - 1}, or -${length}..-1 from the end)`);
  }
  return r;
}

/** The pairs' answer rows, each pair's tokens checked: the same messages whichever path runs. */
function resolvePairs(config: Qwen3Config, pairs: readonly PairTokens[], sourceLayer: number, answerPosition: number): [number, number][] {
  const L = config.numLayers;
  if (!Number.isInteger(sourceLayer) || sourceLayer < 0 || sourceLayer >= L) throw new InputError(`--source-layer ${sourceLayer} is out of range: the model has layers 0..${L - 1}`);
  if (pairs.length === 0) throw new InputError("no pairs");
  return pairs.map((p) => {
    const what = p.where ?? `line ${p.line}`;
    const rows: [number, number] = p.rows ?? [
      answerRow(answerPosition, p.positive.length, `the positive completion of ${what}`),
      answerRow(answerPosition, p.negative.length, `the negative completion of ${what}`),
    ];
    checkTokens(config, p.positive, `${what} (positive)`);
    checkTokens(config, p.negative, `${what} (negative)`);
    return rows;
  });
}

/**
 * The mean difference and the median norm, fed sequence by sequence in pair order (positive, then
 * negative): both paths accumulate in the same order.
 */
class CaaAccumulator {
  private readonly acc: Float64Array;
  private readonly norms: number[] = [];

  constructor(private readonly d: number) {
    this.acc = new Float64Array(d);
  }

  /** Layer-S states v [T, d] of one sequence; its row `row` counts with `sign`. */
  add(v: Float32Array, T: number, row: number, sign: number): void {
    const d = this.d;
    for (let j = 0; j < d; j++) this.acc[j] += sign * v[row * d + j];
    for (let t = 0; t < T; t++) {
      let s = 0;
      for (let j = 0; j < d; j++) s += v[t * d + j] * v[t * d + j];
      this.norms.push(Math.sqrt(s));
    }
  }

  result(rows: [number, number][]): CaaResult {
    const n = rows.length;
    const vector = this.acc.map((x) => x / n);
    const norms = this.norms.sort((a, b) => a - b);
    const mid = norms.length >> 1;
    const medianNorm = norms.length % 2 ? norms[mid] : (norms[mid - 1] + norms[mid]) / 2;
    return { vector, count: n, rows, medianNorm };
  }
}

/**
 * Mean over pairs of (layer-S output at the answer row of positive) - (same for negative). Runs
 * layers 0..S only, without a graph, one sequence at a time on the autodiff model: the reference
 * caaVectorBatched is tested against. `answerPosition` counts from the end when negative.
 */
export function caaVector(model: Qwen3Model, pairs: readonly PairTokens[], sourceLayer: number, answerPosition = -1): CaaResult {
  const rows = resolvePairs(model.config, pairs, sourceLayer, answerPosition);
  const ctx = model.ctx;
  const acc = new CaaAccumulator(model.config.hiddenSize);
  const run = (tokens: number[], row: number, sign: number) =>
    ctx.rt.heap.scope(() => {
      const h = ctx.noGrad(() => model.runLayers(model.embed(tokens), 0, sourceLayer));
      acc.add(h.view(), tokens.length, row, sign);
    });
  pairs.forEach((p, i) => {
    run(p.positive, rows[i][0], 1);
    run(p.negative, rows[i][1], -1);
  });
  return acc.result(rows);
}

/**
 * caaVector on the engine's forward (forward.ts): every pair's two sequences stacked through layers
 * 0..S together, in batches of at most `activationBytes` (default DEFAULT_ACTIVATION_BUDGET), on the
 * forward's threads. The model needs layers 0..S (ForwardOptions.layers >= S + 1). The result does
 * not depend on the thread count or the batch size.
 */
export async function caaVectorBatched(
  model: ForwardModel,
  pairs: readonly PairTokens[],
  sourceLayer: number,
  answerPosition = -1,
  activationBytes = DEFAULT_ACTIVATION_BUDGET,
  /** After each batch: sequences done of all (throwing from it stops the run; the heap is released). */
  onBatch?: (done: number, total: number) => void,
): Promise<CaaResult> {
  const rows = resolvePairs(model.config, pairs, sourceLayer, answerPosition);
  if (sourceLayer >= model.numLayers) throw new Error(`caaVectorBatched: the forward runs layers 0..${model.numLayers - 1}, not ${sourceLayer}`);
  const d = model.config.hiddenSize;
  const acc = new CaaAccumulator(d);
  const seqs = pairs.flatMap((p, i) => [{ tokens: p.positive, row: rows[i][0], sign: 1 }, { tokens: p.negative, row: rows[i][1], sign: -1 }]);
  const heap = model.rt.heap;
  let done = 0;
  for (const chunk of chunkByBudget(seqs, (s) => model.sequenceFloats(s.tokens.length), activationBytes / 4)) {
    const mark = heap.mark();
    try {
      const lengths = chunk.map((s) => s.tokens.length);
      const R = lengths.reduce((a, b) => a + b, 0);
      const h = heap.allocF32(R * d);
      let row = 0;
      for (const s of chunk) model.embed(s.tokens, h + 4 * row * d), (row += s.tokens.length);
      await model.run(h, lengths, 0, sourceLayer);
      row = 0;
      for (const s of chunk) {
        acc.add(heap.f32(h + 4 * row * d, s.tokens.length * d), s.tokens.length, s.row, s.sign);
        row += s.tokens.length;
      }
    } finally {
      heap.release(mark);
    }
    done += chunk.length;
    onBatch?.(done, seqs.length);
  }
  return acc.result(rows);
}
