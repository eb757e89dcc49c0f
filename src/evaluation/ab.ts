// A/B evaluation: the logit difference logit(matching letter) - logit(other letter) at the last
// prompt position, unsteered and for every (vector, scale), and its summary.
import type { SteeredDecoder } from "../generation/decoder.js";
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
 * Every question unsteered, then under scale * vector added to the output of `layer` for each vector
 * and scale (vectors outer, scales inner). Scale 0 is run like any other scale, not copied from the
 * baseline. Rows come question by question.
 */
export function evaluateAb(
  decoder: SteeredDecoder,
  prompts: readonly AbPrompt[],
  opts: { layer: number; vectors: readonly AbVector[]; scales: readonly number[]; onQuestion?: (done: number, total: number) => void },
): AbRow[] {
  const rows: AbRow[] = [];
  const run = (p: AbPrompt): [number, number] => {
    decoder.reset();
    const logits = decoder.append(p.tokens);
    return [logits[p.matchingId], logits[p.otherId]];
  };
  prompts.forEach((p, qi) => {
    const base = { question: p.question, matching: p.item.matching, other: p.item.other, matching_id: p.matchingId, other_id: p.otherId };
    decoder.setSteering(null);
    const [bm, bo] = run(p);
    const baseline = bm - bo;
    rows.push({ ...base, vector: null, vector_index: null, scale: 0, logit_matching: bm, logit_other: bo, diff: baseline, baseline_diff: baseline, shift: 0, p_matching: sigmoid(baseline) });
    for (const v of opts.vectors) {
      for (const scale of opts.scales) {
        decoder.setSteering({ layer: opts.layer, vector: v.vector.map((x) => x * scale) });
        const [m, o] = run(p);
        const diff = m - o;
        rows.push({ ...base, vector: v.label, vector_index: v.index, scale, logit_matching: m, logit_other: o, diff, baseline_diff: baseline, shift: diff - baseline, p_matching: sigmoid(diff) });
      }
    }
    opts.onQuestion?.(qi + 1, prompts.length);
  });
  decoder.setSteering(null);
  return rows;
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
