// Comparing two sets of steering vectors (e.g. singular vectors against MELBO or CAA vectors):
// - cosine similarities between every vector of A and every vector of B;
// - best matches: for each vector of A, the vector of B with the largest |cos|, and the sign of cos
//   (singular vectors have an arbitrary sign, so |cos| is what says "same direction");
// - principal angles between span(A) and span(B): with orthonormal bases Qa, Qb (rows), the singular
//   values of Qa Qb^T are the cosines of the angles. Small angles are computed from sines instead
//   (Knyazev & Argentati: the singular values of Qb - (Qb Qa^T) Qa), since acos loses half the digits
//   near 0 degrees.
// Everything is float64 on the host; sets are a few dozen vectors.
import { svd } from "../linalg/dense.js";
import { InputError } from "../model/qwen3.js";

export interface BestMatch {
  /** index into A */
  a: number;
  /** index into B of the largest |cos| */
  b: number;
  /** signed cosine */
  cos: number;
}

export interface CompareResult {
  /** cosines[i][j] = cos(A_i, B_j) */
  cosines: number[][];
  bestMatches: BestMatch[];
  /** radians, ascending; min(rankA, rankB) of them */
  principalAngles: number[];
  /** cosines of the principal angles, descending */
  principalCosines: number[];
  rankA: number;
  rankB: number;
}

/** Relative size below which a Gram-Schmidt residual counts as linearly dependent (float32 inputs). */
export const RANK_TOL = 1e-5;

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/** Orthonormal rows spanning the given vectors (modified Gram-Schmidt, twice); dependent ones are dropped. */
export function orthonormalBasis(vectors: readonly ArrayLike<number>[], tol = RANK_TOL): Float64Array[] {
  const basis: Float64Array[] = [];
  for (const v of vectors) {
    const x = Float64Array.from(v);
    const before = Math.sqrt(dot(x, x));
    if (before === 0) continue;
    for (let pass = 0; pass < 2; pass++) {
      for (const q of basis) {
        const c = dot(q, x);
        for (let i = 0; i < x.length; i++) x[i] -= c * q[i];
      }
    }
    const after = Math.sqrt(dot(x, x));
    if (after <= tol * before) continue;
    for (let i = 0; i < x.length; i++) x[i] /= after;
    basis.push(x);
  }
  return basis;
}

/** Principal angles (radians, ascending) between the spans of two orthonormal row bases. */
export function principalAngles(Qa: readonly Float64Array[], Qb: readonly Float64Array[]): { angles: number[]; cosines: number[] } {
  // The angles are symmetric in A and B; with the larger basis as "A", Qb - (Qb Qa^T) Qa has exactly
  // kb singular values, the sines of the kb angles.
  const [big, small] = Qa.length >= Qb.length ? [Qa, Qb] : [Qb, Qa];
  const k = small.length;
  if (k === 0) return { angles: [], cosines: [] };
  const C = big.map((qa) => small.map((qb) => dot(qa, qb))); // [kbig][k]
  const cosines = svd(C, k).values.map((c) => Math.min(1, c));
  const d = small[0].length;
  const residual = small.map((qb, j) => {
    const r = Float64Array.from(qb);
    big.forEach((qa, i) => {
      const c = C[i][j];
      for (let t = 0; t < d; t++) r[t] -= c * qa[t];
    });
    return r;
  });
  // Singular values of the k x d residual = those of its d x k transpose (rows of length k).
  const columns = Array.from({ length: d }, (_, t) => Float64Array.from({ length: k }, (_, j) => residual[j][t]));
  const sines = svd(columns, k).values.map((s) => Math.min(1, s)); // descending
  const angles = cosines.map((c, i) => (c * c < 0.5 ? Math.acos(c) : Math.asin(sines[k - 1 - i])));
  return { angles, cosines };
}

/** Compare two vector sets; `labels` name the vectors in errors (e.g. "a.safetensors:2"). */
export function compareVectorSets(
  A: readonly ArrayLike<number>[],
  B: readonly ArrayLike<number>[],
  labels: { a: (i: number) => string; b: (j: number) => string } = { a: (i) => `A${i}`, b: (j) => `B${j}` },
): CompareResult {
  if (A.length === 0 || B.length === 0) throw new InputError("compare: a vector set is empty");
  const d = A[0].length;
  for (const [set, name] of [[A, "a"], [B, "b"]] as const) {
    set.forEach((v, i) => {
      if (v.length !== d) throw new InputError(`${(name === "a" ? labels.a : labels.b)(i)} has length ${v.length}, but ${labels.a(0)} has length ${d}: the sets live in different spaces`);
    });
  }
  const norms = (set: readonly ArrayLike<number>[], label: (i: number) => string) =>
    set.map((v, i) => {
      const n = Math.sqrt(dot(v, v));
      if (!(n > 0)) throw new InputError(`${label(i)} is a zero vector: its cosine with anything is undefined`);
      return n;
    });
  const na = norms(A, labels.a), nb = norms(B, labels.b);
  const cosines = A.map((a, i) => B.map((b, j) => dot(a, b) / (na[i] * nb[j])));
  const bestMatches = cosines.map((row, i) => {
    let j = 0;
    for (let t = 1; t < row.length; t++) if (Math.abs(row[t]) > Math.abs(row[j])) j = t;
    return { a: i, b: j, cos: row[j] };
  });
  const Qa = orthonormalBasis(A), Qb = orthonormalBasis(B);
  const { angles, cosines: principalCosines } = principalAngles(Qa, Qb);
  return { cosines, bestMatches, principalAngles: angles, principalCosines, rankA: Qa.length, rankB: Qb.length };
}

export interface SetInfo {
  /** how the set was named on the command line */
  name: string;
  /** file row of each vector */
  rows: number[];
  method?: string;
}

const deg = (r: number) => (r * 180) / Math.PI;

/** The readable report: cosine matrix, best matches, principal angles in degrees. */
export function formatComparison(res: CompareResult, a: SetInfo, b: SetInfo): string {
  const la = (i: number) => `A${a.rows[i]}`, lb = (j: number) => `B${b.rows[j]}`;
  const w = Math.max(7, ...b.rows.map((r) => `B${r}`.length + 1));
  const lw = Math.max(...a.rows.map((r) => `A${r}`.length));
  const out: string[] = [];
  const describe = (s: SetInfo, tag: string) => `${tag} = ${s.name}: ${s.rows.length} vector(s)${s.method ? `, method ${s.method}` : ""}`;
  out.push(describe(a, "A"), describe(b, "B"), "");
  out.push("cosine similarity (rows: A, columns: B)");
  out.push(" ".repeat(lw) + b.rows.map((_, j) => lb(j).padStart(w)).join(""));
  res.cosines.forEach((row, i) => out.push(la(i).padEnd(lw) + row.map((c) => c.toFixed(3).padStart(w)).join("")));
  out.push("", "best match in B for each vector of A (largest |cos|)");
  for (const m of res.bestMatches) {
    out.push(`  ${la(m.a).padEnd(lw)} -> ${lb(m.b).padEnd(w - 1)} |cos| ${Math.abs(m.cos).toFixed(4)}  sign ${m.cos >= 0 ? "+" : "-"}  (${deg(Math.acos(Math.min(1, Math.abs(m.cos)))).toFixed(2)} deg)`);
  }
  out.push("", `principal angles between span(A) (rank ${res.rankA}) and span(B) (rank ${res.rankB}), degrees`);
  out.push("  " + res.principalAngles.map((t) => deg(t).toFixed(2)).join("  "));
  return out.join("\n") + "\n";
}

/** The --json form. */
export function comparisonJson(res: CompareResult, a: SetInfo, b: SetInfo): Record<string, unknown> {
  return {
    a: { name: a.name, rows: a.rows, method: a.method ?? null, rank: res.rankA },
    b: { name: b.name, rows: b.rows, method: b.method ?? null, rank: res.rankB },
    cosines: res.cosines,
    best_matches: res.bestMatches.map((m) => ({ a: a.rows[m.a], b: b.rows[m.b], cos: m.cos, abs_cos: Math.abs(m.cos), sign: m.cos >= 0 ? 1 : -1 })),
    principal_angles_deg: res.principalAngles.map(deg),
    principal_cosines: res.principalCosines,
  };
}
