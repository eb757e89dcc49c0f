// A/B evaluation: the logit difference logit(matching letter) - logit(other letter) at the last
// prompt position, unsteered and for every (vector, scale), and its summary.
import type { SteeredDecoder } from "../generation/decoder.js";
import { chunkByBudget, DEFAULT_ACTIVATION_BUDGET, type ForwardModel } from "../engine/forward.js";
import { InputError } from "../model/qwen3.js";
import type { DatasetItem } from "./dataset.js";
import type { ItemPrompt } from "./prompt.js";

/** One question as scored: the tokens before the answer token, and the two answer tokens. */
export interface AbPrompt {
  /** position in the run (rows' "question") */
  question: number;
  item: DatasetItem;
  tokens: number[];
  matchingId: number;
  otherId: number;
}

/** The scored prompt of an item; an item whose answers are not single differing tokens is an error. */
export function toAbPrompt(p: ItemPrompt, question: number): AbPrompt {
  if (p.answerPosition === null) throw new InputError(p.problem!);
  const k = p.answerPosition;
  return { question, item: p.item, tokens: p.matchingTokens.slice(0, k), matchingId: p.matchingTokens[k], otherId: p.otherTokens[k] };
}

export interface AbVector {
  /** Position in the run's vector list. */
  index: number;
  /** "file:row" */
  label: string;
  vector: Float32Array;
}

/** One question under one steering (vector null: the unsteered baseline, scale 0). */
export interface AbRow {
  question: number;
  vector: string | null;
  vector_index: number | null;
  scale: number;
  matching: string;
  other: string;
  matching_id: number;
  other_id: number;
  logit_matching: number;
  logit_other: number;
  /** logit_matching - logit_other */
  diff: number;
  /** diff of the same question unsteered */
  baseline_diff: number;
  /** diff - baseline_diff */
  shift: number;
  /** p(matching) / (p(matching) + p(other)) = sigmoid(diff) */
  p_matching: number;
}

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

/**
 * The rows of one question from its logits (matching, other): unsteered, then per vector and scale
 * (vectors outer, scales inner; `steered(vi, si)`). Both evaluations below build their rows here.
 */
function questionRows(p: AbPrompt, baselineLogits: [number, number], steered: (vi: number, si: number) => [number, number], vectors: readonly AbVector[], scales: readonly number[]): AbRow[] {
  const base = { question: p.question, matching: p.item.matching, other: p.item.other, matching_id: p.matchingId, other_id: p.otherId };
  const [bm, bo] = baselineLogits;
  const baseline = bm - bo;
  const rows: AbRow[] = [{ ...base, vector: null, vector_index: null, scale: 0, logit_matching: bm, logit_other: bo, diff: baseline, baseline_diff: baseline, shift: 0, p_matching: sigmoid(baseline) }];
  vectors.forEach((v, vi) => {
    scales.forEach((scale, si) => {
      const [m, o] = steered(vi, si);
      const diff = m - o;
      rows.push({ ...base, vector: v.label, vector_index: v.index, scale, logit_matching: m, logit_other: o, diff, baseline_diff: baseline, shift: diff - baseline, p_matching: sigmoid(diff) });
    });
  });
  return rows;
}

export interface AbOptions {
  /** Layer whose output receives scale * vector. */
  layer: number;
  vectors: readonly AbVector[];
  scales: readonly number[];
  onQuestion?: (done: number, total: number) => void;
}

/**
 * Every question unsteered, then under scale * vector added to the output of `layer` for each vector
 * and scale (vectors outer, scales inner). Scale 0 is run like any other scale, not copied from the
 * baseline. Rows come question by question. One sequence at a time on the autodiff model's decoder:
 * the reference that evaluateAbBatched is tested against.
 */
export function evaluateAb(decoder: SteeredDecoder, prompts: readonly AbPrompt[], opts: AbOptions): AbRow[] {
  const rows: AbRow[] = [];
  const run = (p: AbPrompt): [number, number] => {
    decoder.reset();
    const logits = decoder.append(p.tokens);
    return [logits[p.matchingId], logits[p.otherId]];
  };
  prompts.forEach((p, qi) => {
    decoder.setSteering(null);
    const baseline = run(p);
    rows.push(...questionRows(p, baseline, (vi, si) => {
      decoder.setSteering({ layer: opts.layer, vector: opts.vectors[vi].vector.map((x) => x * opts.scales[si]) });
      return run(p);
    }, opts.vectors, opts.scales));
    opts.onQuestion?.(qi + 1, prompts.length);
  });
  decoder.setSteering(null);
  return rows;
}

/**
 * The same rows as evaluateAb, on the engine's forward (forward.ts), every sequence of the run
 * batched: layers 0..layer once per question (they do not depend on the steering), then every
 * (question, vector, scale) sequence, and the unsteered one, through layers layer+1..L-1 together,
 * in batches of at most `activationBytes` (default DEFAULT_ACTIVATION_BUDGET); the final norm and
 * the two scored LM-head rows at the last position only. The model must be made with every layer
 * and the prompts' matching and other tokens as scored tokens. Results do not depend on the thread
 * count or the batch size.
 *
 * A scale of 0 is not run: its row takes the unsteered sequence's logits. Adding 0 * v changes no
 * activation (x + (+-0) is x for every x but -0, where it gives +0, and the sign of a zero cannot
 * reach a logit), so this is the number running it would give, at no cost: with the usual scales
 * (-8, -4, 0, 4, 8) a fifth of the sequences. The reference above runs it.
 */
export async function evaluateAbBatched(model: ForwardModel, prompts: readonly AbPrompt[], opts: AbOptions & { activationBytes?: number }): Promise<AbRow[]> {
  const L = model.config.numLayers;
  if (model.numLayers !== L) throw new Error(`evaluateAbBatched: the forward runs ${model.numLayers} of ${L} layers (the logits need all)`);
  const { vectors, scales } = opts;
  // The steered sequences that run, one per (vector, nonzero scale); seq[vi][si] is the sequence of each
  // question that (vi, si) reads its logits from: 1 + its place among them, or 0 (the unsteered one) for a scale of 0.
  const runs: { vector: Float32Array; scale: number }[] = [];
  const seq = vectors.map((v) => scales.map((scale) => (scale === 0 ? 0 : runs.push({ vector: v.vector, scale }))));
  const steered = runs.length;
  const anySteering = vectors.length > 0 && scales.length > 0;
  const S = anySteering ? opts.layer : L - 1;
  if (anySteering && (!Number.isInteger(S) || S < 0 || S >= L)) throw new InputError(`steering layer ${S} outside 0..${L - 1}`);
  const d = model.config.hiddenSize;
  const budget = (opts.activationBytes ?? DEFAULT_ACTIVATION_BUDGET) / 4;
  const cols = prompts.map((p) => [model.column(p.matchingId), model.column(p.otherId)]);
  const m = model.scoredTokens.length;
  // logits[q][j]: sequence j of question q (0 unsteered, j >= 1 the steering runs[j - 1]).
  const logits: [number, number][][] = prompts.map(() => []);
  const rt = model.rt, heap = rt.heap;
  const mark = heap.mark();
  try {
    // scale * v as today's code forms it (f32 products), one [d] row per steered sequence kind.
    const sv = heap.allocF32(Math.max(1, steered) * d);
    runs.forEach(({ vector, scale }, j) => heap.f32(sv + 4 * j * d, d).set(vector.map((x) => x * scale)));
    let done = 0;
    for (const group of chunkByBudget(prompts.map((_, q) => q), (q) => model.sequenceFloats(prompts[q].tokens.length), budget)) {
      const groupMark = heap.mark();
      const lengths = group.map((q) => prompts[q].tokens.length);
      const start: number[] = [];
      let rows = 0;
      for (const T of lengths) start.push(rows), (rows += T);
      // Layers 0..S once per question: h_S of every question of the group.
      const hS = heap.allocF32(rows * d);
      group.forEach((q, i) => model.embed(prompts[q].tokens, hS + 4 * start[i] * d));
      await model.run(hS, lengths, 0, S, { next: S + 1 <= L - 1 ? S + 1 : 0 });
      const seqs = group.flatMap((q, i) => Array.from({ length: 1 + steered }, (_, j) => ({ q, i, j })));
      for (const chunk of chunkByBudget(seqs, (s) => model.sequenceFloats(prompts[s.q].tokens.length), budget - rows * d)) {
        const chunkMark = heap.mark();
        const lens = chunk.map((s) => lengths[s.i]);
        const R = lens.reduce((a, b) => a + b, 0);
        const h = heap.allocF32(R * d);
        const last: number[] = [];
        let row = 0;
        for (const s of chunk) {
          const T = lengths[s.i];
          rt.k.copy(h + 4 * row * d, hS + 4 * start[s.i] * d, T * d);
          if (s.j > 0) model.addToRows(h, row, T, sv + 4 * (s.j - 1) * d);
          row += T;
          last.push(row - 1);
        }
        await model.run(h, lens, S + 1, L - 1);
        const out = await model.logitsAt(h, last);
        chunk.forEach((s, k) => (logits[s.q][s.j] = [out[k * m + cols[s.q][0]], out[k * m + cols[s.q][1]]]));
        heap.release(chunkMark);
        // Progress: questions all of whose sequences are done.
        while (done < prompts.length && logits[done].length === 1 + steered) {
          done++;
          opts.onQuestion?.(done, prompts.length);
        }
      }
      heap.release(groupMark);
    }
  } finally {
    heap.release(mark);
  }
  return prompts.flatMap((p, q) => questionRows(p, logits[q][0], (vi, si) => logits[q][seq[vi][si]], vectors, scales));
}

export interface AbSummaryRow {
  vector: string | null;
  vector_index: number | null;
  scale: number;
  /** questions */
  n: number;
  /** share of questions with diff > 0 (the model prefers the matching letter) */
  share_matching: number;
  /** share with diff < 0 (ties, diff = 0, count for neither) */
  share_other: number;
  mean_diff: number;
  /** mean over questions of diff - baseline diff */
  mean_shift: number;
  mean_p_matching: number;
}

export interface AbLinearity {
  vector: string;
  vector_index: number;
  /** least-squares fit of mean_diff = intercept + slope * scale over the run's scales */
  slope: number | null;
  intercept: number | null;
  /** 1 - SS_res / SS_tot; null with fewer than 2 distinct scales or when every mean_diff is equal */
  r2: number | null;
  /** how many scales the fit saw */
  scales: number;
  /**
   * Why the slope does not summarise this vector, or null: fewer than MIN_FIT_SCALES scales (a line
   * through two points always fits), or R^2 below MIN_FIT_R2 (the response is not linear in the scale).
   */
  fit_warning: string | null;
}

export const MIN_FIT_SCALES = 3;
export const MIN_FIT_R2 = 0.5;

function fitWarning(scales: number, r2: number | null): string | null {
  if (scales < MIN_FIT_SCALES) return `fit from ${scales} scale(s), fewer than ${MIN_FIT_SCALES}: the slope is not a fit (give more --scales)`;
  if (r2 !== null && r2 < MIN_FIT_R2) return `R^2 ${r2.toFixed(3)} < ${MIN_FIT_R2}: the mean difference is not linear in the scale, so the slope does not summarise it (see the rows per scale)`;
  return null;
}

export interface AbSummary {
  baseline: AbSummaryRow;
  rows: AbSummaryRow[];
  linearity: AbLinearity[];
}

/** Ordinary least squares y = a + b x; b and a null with fewer than two distinct x. */
export function leastSquares(xs: readonly number[], ys: readonly number[]): { slope: number | null; intercept: number | null; r2: number | null } {
  const n = xs.length;
  if (n !== ys.length) throw new Error("leastSquares: xs and ys differ in length");
  if (n === 0) return { slope: null, intercept: null, r2: null };
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let sxx = 0, sxy = 0, syy = 0;
  for (let i = 0; i < n; i++) {
    sxx += (xs[i] - mx) ** 2;
    sxy += (xs[i] - mx) * (ys[i] - my);
    syy += (ys[i] - my) ** 2;
  }
  if (sxx === 0) return { slope: null, intercept: null, r2: null };
  const slope = sxy / sxx;
  const intercept = my - slope * mx;
  let ssRes = 0;
  for (let i = 0; i < n; i++) ssRes += (ys[i] - intercept - slope * xs[i]) ** 2;
  return { slope, intercept, r2: syy > 0 ? 1 - ssRes / syy : null };
}

function summarizeGroup(rows: readonly AbRow[]): AbSummaryRow {
  const n = rows.length;
  const mean = (f: (r: AbRow) => number) => rows.reduce((s, r) => s + f(r), 0) / n;
  return {
    vector: rows[0].vector,
    vector_index: rows[0].vector_index,
    scale: rows[0].scale,
    n,
    share_matching: rows.filter((r) => r.diff > 0).length / n,
    share_other: rows.filter((r) => r.diff < 0).length / n,
    mean_diff: mean((r) => r.diff),
    mean_shift: mean((r) => r.shift),
    mean_p_matching: mean((r) => r.p_matching),
  };
}

/** Per (vector, scale) statistics, the baseline's, and per vector how linear mean_diff is in the scale. */
export function summarizeAb(rows: readonly AbRow[]): AbSummary {
  const groups = new Map<string, AbRow[]>();
  for (const r of rows) {
    const key = r.vector_index === null ? "baseline" : `${r.vector_index}\u0000${r.scale}`;
    const g = groups.get(key);
    if (g) g.push(r);
    else groups.set(key, [r]);
  }
  const base = groups.get("baseline");
  if (!base) throw new Error("summarizeAb: no baseline rows");
  groups.delete("baseline");
  const summaryRows = [...groups.values()].map(summarizeGroup);
  const byVector = new Map<number, AbSummaryRow[]>();
  for (const s of summaryRows) {
    const list = byVector.get(s.vector_index!) ?? [];
    list.push(s);
    byVector.set(s.vector_index!, list);
  }
  const linearity = [...byVector.entries()].map(([index, list]) => {
    const fit = leastSquares(list.map((s) => s.scale), list.map((s) => s.mean_diff));
    return { vector: list[0].vector!, vector_index: index, ...fit, scales: list.length, fit_warning: fitWarning(list.length, fit.r2) };
  });
  return { baseline: summarizeGroup(base), rows: summaryRows, linearity };
}
