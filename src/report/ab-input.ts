// Reading `jacsteer eval-ab` results for the report: either the `--json` summary (per vector and scale
// statistics plus the least-squares fit) or the `--out` file (one row per question, vector and scale),
// from which the same summary is recomputed, with the spread over questions as well.
import { InputError } from "../model/qwen3.js";
import { summarizeAb, type AbRow, type AbSummary } from "../evaluation/ab.js";

export interface AbInput {
  file: string;
  kind: "summary" | "rows";
  summary: AbSummary;
  /** per (vector_index, scale): standard error of the mean diff over questions (rows files only) */
  standardErrors?: Map<string, number>;
  meta: { dataset?: string; model?: string; layer?: number | null; questions?: number; chat?: boolean; answerPrefix?: string };
}

const isObj = (x: unknown): x is Record<string, unknown> => typeof x === "object" && x !== null && !Array.isArray(x);
const isNum = (x: unknown): x is number => typeof x === "number" && Number.isFinite(x);
const isIndex = (x: unknown) => x === null || (isNum(x) && Number.isInteger(x) && x >= 0);

export const abKey = (vectorIndex: number, scale: number) => `${vectorIndex}\u0000${scale}`;

function isAbRow(r: unknown): r is AbRow {
  return isObj(r) && isNum(r.question) && isNum(r.diff) && isNum(r.scale) && isNum(r.shift) && isNum(r.p_matching) && isIndex(r.vector_index) && (r.vector === null || typeof r.vector === "string");
}

function isSummaryRow(r: unknown): boolean {
  return isObj(r) && isNum(r.mean_diff) && isNum(r.scale) && isNum(r.n) && isIndex(r.vector_index) && (r.vector === null || typeof r.vector === "string");
}

function metaOf(o: Record<string, unknown>, questions: number | undefined): AbInput["meta"] {
  return {
    dataset: typeof o.dataset === "string" ? o.dataset : undefined,
    model: typeof o.model === "string" ? o.model : undefined,
    layer: isNum(o.layer) ? o.layer : null,
    questions,
    chat: typeof o.chat === "boolean" ? o.chat : undefined,
    answerPrefix: typeof o.answer_prefix === "string" ? o.answer_prefix : undefined,
  };
}

/** Parse the text of an eval-ab result; `file` and `flag` name it in errors. */
export function parseAbResult(textContent: string, file: string, flag = "--ab"): AbInput {
  let o: unknown;
  try {
    o = JSON.parse(textContent);
  } catch (e) {
    throw new InputError(`${flag} ${file}: not JSON (${(e as Error).message}); expected the output of jacsteer eval-ab --json or --out`);
  }
  const kindError = () => new InputError(`${flag} ${file}: not an eval-ab result (expected the --json summary or the --out rows file of jacsteer eval-ab)`);
  if (!isObj(o) || !Array.isArray(o.rows)) throw kindError();
  if (Array.isArray(o.questions) && o.rows.every(isAbRow)) {
    const rows = o.rows as AbRow[];
    if (!rows.some((r) => r.vector_index === null)) throw new InputError(`${flag} ${file}: no unsteered (baseline) rows`);
    const summary = summarizeAb(rows);
    const standardErrors = new Map<string, number>();
    const groups = new Map<string, number[]>();
    for (const r of rows) {
      if (r.vector_index === null) continue;
      const k = abKey(r.vector_index, r.scale);
      (groups.get(k) ?? groups.set(k, []).get(k)!).push(r.diff);
    }
    for (const [k, diffs] of groups) {
      const n = diffs.length;
      const mean = diffs.reduce((a, b) => a + b, 0) / n;
      const variance = n > 1 ? diffs.reduce((s, d) => s + (d - mean) ** 2, 0) / (n - 1) : 0;
      standardErrors.set(k, Math.sqrt(variance / n));
    }
    return { file, kind: "rows", summary, standardErrors, meta: metaOf(o, o.questions.length) };
  }
  if (isObj(o.baseline) && isSummaryRow(o.baseline) && o.rows.every(isSummaryRow) && Array.isArray(o.linearity)) {
    const summary: AbSummary = { baseline: o.baseline as unknown as AbSummary["baseline"], rows: o.rows as AbSummary["rows"], linearity: o.linearity as AbSummary["linearity"] };
    for (const l of summary.linearity) {
      if (!isObj(l) || !isIndex(l.vector_index) || typeof l.vector !== "string") throw kindError();
    }
    return { file, kind: "summary", summary, meta: metaOf(o, isNum(o.questions) ? o.questions : undefined) };
  }
  throw kindError();
}
