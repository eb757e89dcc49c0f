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
import { InputError, type Qwen3Model } from "../model/qwen3.js";

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

/**
 * Mean over pairs of (layer-S output at the answer row of positive) - (same for negative). Runs
 * layers 0..S only, without a graph; `answerPosition` counts from the end when negative.
 */
export function caaVector(model: Qwen3Model, pairs: readonly PairTokens[], sourceLayer: number, answerPosition = -1): CaaResult {
  const L = model.config.numLayers;
  if (!Number.isInteger(sourceLayer) || sourceLayer < 0 || sourceLayer >= L) throw new InputError(`--source-layer ${sourceLayer} is out of range: the model has layers 0..${L - 1}`);
  if (pairs.length === 0) throw new InputError("no pairs");
  const d = model.config.hiddenSize;
  const ctx = model.ctx;
  const acc = new Float64Array(d);
  const rows: [number, number][] = [];
  const norms: number[] = [];
  const rowAt = (tokens: number[], row: number, sign: number) =>
    ctx.rt.heap.scope(() => {
      const h = ctx.noGrad(() => model.runLayers(model.embed(tokens), 0, sourceLayer));
      const v = h.view();
      for (let j = 0; j < d; j++) acc[j] += sign * v[row * d + j];
      for (let t = 0; t < tokens.length; t++) {
        let s = 0;
        for (let j = 0; j < d; j++) s += v[t * d + j] * v[t * d + j];
        norms.push(Math.sqrt(s));
      }
    });
  for (const p of pairs) {
    const what = p.where ?? `line ${p.line}`;
    const [rp, rn] = p.rows ?? [
      answerRow(answerPosition, p.positive.length, `the positive completion of ${what}`),
      answerRow(answerPosition, p.negative.length, `the negative completion of ${what}`),
    ];
    model.checkTokens(p.positive, `${what} (positive)`);
    model.checkTokens(p.negative, `${what} (negative)`);
    rowAt(p.positive, rp, 1);
    rowAt(p.negative, rn, -1);
    rows.push([rp, rn]);
  }
  for (let j = 0; j < d; j++) acc[j] /= pairs.length;
  norms.sort((a, b) => a - b);
  const mid = norms.length >> 1;
  const medianNorm = norms.length % 2 ? norms[mid] : (norms[mid - 1] + norms[mid]) / 2;
  return { vector: acc, count: pairs.length, rows, medianNorm };
}
