// Which token positions of layer T's output make up the target, and with what weights (CONTRACT.md
// section 1: "the last K positions" by default; an explicit list, per-position weights and all
// positions are options on top). Shared by the steering Jacobian (power iteration) and MELBO.
//
// Weights multiply the selected target rows: target = [w_1 h[r_1]; w_2 h[r_2]; ...]. So for power
// iteration J^T J = sum_i w_i^2 J_i^T J_i (each position counts with its weight SQUARED; a uniform
// weight w scales every singular value by |w|), and MELBO's loss sums ||w_i (h_i(sv) - h_i(0))||^p =
// |w_i|^p ||...||^p. Weights must be finite and non-negative.
//
// Errors are InputErrors whose message names the CLI flag (--positions, --position-list,
// --all-positions, --position-weights) and the prompt.
import { reshape, sliceRows } from "../autodiff/ops.js";
import { gatherRows } from "../autodiff/reductions.js";
import type { Tensor } from "../autodiff/tensor.js";
import { InputError } from "../model/qwen3.js";

export type PositionSpec =
  /** The last `count` positions, in order (the default form, `--positions K`). */
  | { kind: "last"; count: number; weights?: readonly number[] }
  /** Explicit positions, in the order given; negative counts from the end (-1 = last token). */
  | { kind: "list"; indices: readonly number[]; weights?: readonly number[] }
  /** Every position of each prompt. */
  | { kind: "all"; weights?: readonly number[] };

/** A number K means `{ kind: "last", count: K }`, the form SteeringSite always accepted. */
export type Positions = number | PositionSpec;

/** Positions resolved against one prompt's length. */
export interface ResolvedPositions {
  /** Row indices into the [T, d] activations, in target order. */
  rows: number[];
  /** One weight per row, or null for all ones. */
  weights: number[] | null;
  /** When the rows are one ascending run with no weights: its first row (a plain slice suffices). */
  sliceStart: number | null;
}

export function toSpec(p: Positions): PositionSpec {
  return typeof p === "number" ? { kind: "last", count: p } : p;
}

function flagOf(spec: PositionSpec): string {
  if (spec.kind === "last") return `--positions ${spec.count}`;
  if (spec.kind === "list") return `--position-list ${spec.indices.join(",")}`;
  return "--all-positions";
}

/** Checks that do not depend on the prompts. */
export function checkPositions(p: Positions): void {
  const spec = toSpec(p);
  if (spec.kind === "last" && (!Number.isInteger(spec.count) || spec.count < 1)) throw new InputError(`--positions ${spec.count} must be a positive integer`);
  if (spec.kind === "list") {
    if (spec.indices.length === 0) throw new InputError("--position-list is empty: give at least one position");
    for (const i of spec.indices) if (!Number.isInteger(i)) throw new InputError(`--position-list ${spec.indices.join(",")}: ${i} is not an integer`);
  }
  if (spec.weights) {
    if (spec.weights.length === 0) throw new InputError("--position-weights is empty");
    for (const w of spec.weights) {
      if (!Number.isFinite(w) || w < 0) throw new InputError(`--position-weights ${spec.weights.join(",")}: weight ${w} must be a finite non-negative number`);
    }
    const n = spec.kind === "last" ? spec.count : spec.kind === "list" ? spec.indices.length : null;
    if (n !== null && spec.weights.length !== n) {
      throw new InputError(`--position-weights ${spec.weights.join(",")}: ${spec.weights.length} weight(s), but ${flagOf(spec)} selects ${n} position(s)`);
    }
  }
}

/** The rows (and weights) the target takes from a prompt of `length` tokens; `prompt` names it in errors ("prompt 2"). */
export function resolvePositions(p: Positions, length: number, prompt: string): ResolvedPositions {
  const spec = toSpec(p);
  checkPositions(spec);
  let rows: number[];
  if (spec.kind === "last") {
    const K = spec.count;
    if (length < K) throw new InputError(`--positions ${K} needs at least ${K} tokens, but ${prompt} has ${length}`);
    rows = Array.from({ length: K }, (_, i) => length - K + i);
  } else if (spec.kind === "list") {
    const seen = new Map<number, number>();
    rows = spec.indices.map((i) => {
      const r = i < 0 ? length + i : i;
      if (r < 0 || r >= length) {
        throw new InputError(`--position-list ${spec.indices.join(",")}: position ${i} is out of range for ${prompt} (${length} tokens: 0..${length - 1}, or -${length}..-1 from the end)`);
      }
      const prev = seen.get(r);
      if (prev !== undefined) throw new InputError(`--position-list ${spec.indices.join(",")}: positions ${prev} and ${i} are the same token of ${prompt} (${length} tokens)`);
      seen.set(r, i);
      return r;
    });
  } else {
    rows = Array.from({ length }, (_, i) => i);
    if (spec.weights && spec.weights.length !== length) {
      throw new InputError(`--position-weights ${spec.weights.join(",")}: ${spec.weights.length} weight(s), but --all-positions selects ${length} for ${prompt} (weights with --all-positions need every prompt to have that many tokens)`);
    }
  }
  const weights = spec.weights ? Array.from(spec.weights) : null;
  const ascendingRun = rows.every((r, i) => i === 0 || r === rows[i - 1] + 1);
  return { rows, weights, sliceStart: !weights && ascendingRun ? rows[0] : null };
}

/**
 * The target rows of `h` [T, d] for a resolved selection, flattened to [n*d]. A contiguous unweighted
 * run is a plain slice (exactly the original last-K graph); anything else a weighted gather.
 */
export function selectTargetRows(h: Tensor, sel: ResolvedPositions): Tensor {
  const d = h.shape[1];
  const n = sel.rows.length;
  const rows = sel.sliceStart !== null ? sliceRows(h, sel.sliceStart, n) : gatherRows(h, sel.rows, sel.weights);
  return reshape(rows, [n * d]);
}

/** The `positions` metadata string: "K" for last K (as before), "list:3,7,-1", or "all". */
export function describePositions(p: Positions): string {
  const spec = toSpec(p);
  if (spec.kind === "last") return String(spec.count);
  if (spec.kind === "list") return `list:${spec.indices.join(",")}`;
  return "all";
}

/** The `position_weights` metadata string ("" when unweighted). */
export function describePositionWeights(p: Positions): string {
  const spec = toSpec(p);
  return spec.weights ? spec.weights.join(",") : "";
}

export interface PositionFlags {
  /** --positions K */
  positions?: string;
  /** --position-list 3,7,-1 */
  positionList?: string;
  /** --position-weights 0.5,1,2 */
  positionWeights?: string;
  /** --all-positions */
  allPositions?: boolean;
}

/**
 * The position choice from the CLI flags. Returns the plain number K when only --positions (or the
 * default) is used, so callers and metadata keep their original form.
 */
export function positionsFromFlags(f: PositionFlags, defaultK: number): Positions {
  const given = [f.positions !== undefined && "--positions", f.positionList !== undefined && "--position-list", f.allPositions && "--all-positions"].filter(Boolean);
  if (given.length > 1) throw new InputError(`${given.join(" and ")} cannot be combined: choose one way to select positions`);
  let spec: PositionSpec;
  if (f.positionList !== undefined) {
    const parts = f.positionList.split(",").map((s) => s.trim());
    if (parts.some((s) => !/^-?\d+$/.test(s))) throw new InputError(`--position-list ${f.positionList}: expected comma-separated integers (negative counts from the end, -1 = last token)`);
    spec = { kind: "list", indices: parts.map(Number) };
  } else if (f.allPositions) {
    spec = { kind: "all" };
  } else {
    const s = f.positions ?? String(defaultK);
    if (!/^\s*-?\d+\s*$/.test(s)) throw new InputError(`--positions ${s}: expected an integer`);
    const K = Number(s);
    if (K < 1) throw new InputError(`--positions ${s}: must be at least 1`);
    if (f.positionWeights === undefined) return K;
    spec = { kind: "last", count: K };
  }
  if (f.positionWeights !== undefined) {
    const parts = f.positionWeights.split(",").map((s) => s.trim());
    const ws = parts.map(Number);
    if (parts.some((s) => s === "") || ws.some((w) => !Number.isFinite(w) || w < 0)) {
      throw new InputError(`--position-weights ${f.positionWeights}: expected comma-separated finite non-negative numbers`);
    }
    spec = { ...spec, weights: ws };
  }
  checkPositions(spec);
  return spec;
}

/** How many target rows a prompt of `length` tokens gives (after validation). */
export function countPositions(p: Positions, length: number): number {
  const spec = toSpec(p);
  return spec.kind === "last" ? spec.count : spec.kind === "list" ? spec.indices.length : length;
}

