// Which singular vectors are reproducible: the same Jacobian solved several times (other random
// starts, other subsets of the prompts) and the runs compared. The research line found that only the
// top few vectors reproduce; many others sit in bands of near-tied singular values, where any
// rotation inside the band is an equally good answer, so a single vector of such a band is
// arbitrary while the band's subspace may still be stable. Hence two tests:
//   - a vector is reproducible when, in every other run, some vector has |cos| >= cosTol with it;
//   - a band (consecutive vectors whose singular values are within gapTol of each other, relative to
//     the larger) is reproducible when, for every pair of runs, every principal angle between the
//     two runs' band subspaces has cos >= cosTol.
// Float64 on the host; a few runs of a few dozen vectors.
import { orthonormalBasis, principalAngles } from "../compare/compare.js";

/** |cos| a vector must reach with its best match in every other run. */
export const DEFAULT_STABILITY_COS = 0.9;
/** Relative gap (sigma_i - sigma_{i+1}) / sigma_i below which two singular values count as near-tied. */
export const DEFAULT_STABILITY_GAP = 0.05;

export interface StabilityRun {
  label: string;
  vectors: readonly ArrayLike<number>[];
  singularValues: readonly number[];
}

export interface StabilityVector {
  index: number;
  /** mean over runs */
  sigma: number;
  /** mean over runs of (sigma_i - sigma_{i+1}) / sigma_i; null for the last vector (its successor was not computed) */
  relative_gap: number | null;
  /** [run][other run]: the largest |cos| of run's vector i with any vector of the other run (1 on the diagonal) */
  best_cos: number[][];
  /** the smallest of best_cos over every pair of distinct runs */
  min_best_cos: number;
  reproducible: boolean;
  /** the near-tied band it belongs to (index into bands), or null */
  band: number | null;
  status: "reproducible" | "reproducible band" | "not reproducible";
}

export interface StabilityBand {
  first: number;
  last: number;
  /** smallest cosine of a principal angle between two runs' band subspaces, over all pairs of runs */
  min_principal_cos: number;
  reproducible: boolean;
}

export interface StabilityResult {
  cos_threshold: number;
  gap_threshold: number;
  vectors: StabilityVector[];
  bands: StabilityBand[];
  /** vectors counted as reproducible, alone or within a reproducible band */
  reproducible_count: number;
}

function absCos(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let ab = 0, aa = 0, bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  return aa > 0 && bb > 0 ? Math.abs(ab) / Math.sqrt(aa * bb) : 0;
}

export function analyzeStability(runs: readonly StabilityRun[], opts: { cos?: number; gap?: number } = {}): StabilityResult {
  const cosTol = opts.cos ?? DEFAULT_STABILITY_COS, gapTol = opts.gap ?? DEFAULT_STABILITY_GAP;
  if (runs.length < 2) throw new RangeError("analyzeStability: at least two runs are needed");
  const n = Math.min(...runs.map((r) => r.vectors.length));
  const R = runs.length;
  const meanOf = (f: (r: StabilityRun) => number) => runs.reduce((s, r) => s + f(r), 0) / R;
  const sigma = Array.from({ length: n }, (_, i) => meanOf((r) => r.singularValues[i]));
  const gaps = Array.from({ length: n }, (_, i) => (i + 1 < n ? meanOf((r) => (r.singularValues[i] - r.singularValues[i + 1]) / r.singularValues[i]) : null));

  // Bands: maximal stretches of consecutive near-tied values.
  const bands: StabilityBand[] = [];
  const bandOf = new Array<number | null>(n).fill(null);
  for (let i = 0; i < n; ) {
    let j = i;
    while (j + 1 < n && gaps[j] !== null && gaps[j]! < gapTol) j++;
    if (j > i) {
      let minCos = 1;
      for (let a = 0; a < R; a++) {
        for (let b = a + 1; b < R; b++) {
          const qa = orthonormalBasis(runs[a].vectors.slice(i, j + 1));
          const qb = orthonormalBasis(runs[b].vectors.slice(i, j + 1));
          const { cosines } = principalAngles(qa, qb);
          minCos = Math.min(minCos, ...cosines, qa.length === qb.length ? 1 : 0);
        }
      }
      for (let k = i; k <= j; k++) bandOf[k] = bands.length;
      bands.push({ first: i, last: j, min_principal_cos: minCos, reproducible: minCos >= cosTol });
    }
    i = j + 1;
  }

  const vectors: StabilityVector[] = Array.from({ length: n }, (_, i) => {
    const best = runs.map((ra, a) => runs.map((rb, b) => (a === b ? 1 : Math.max(...rb.vectors.slice(0, n).map((w) => absCos(ra.vectors[i], w))))));
    let minBest = 1;
    for (let a = 0; a < R; a++) for (let b = 0; b < R; b++) if (a !== b) minBest = Math.min(minBest, best[a][b]);
    const reproducible = minBest >= cosTol;
    const band = bandOf[i];
    const status = reproducible ? "reproducible" : band !== null && bands[band].reproducible ? "reproducible band" : "not reproducible";
    return { index: i, sigma: sigma[i], relative_gap: gaps[i], best_cos: best, min_best_cos: minBest, reproducible, band, status };
  });
  return { cos_threshold: cosTol, gap_threshold: gapTol, vectors, bands, reproducible_count: vectors.filter((v) => v.status !== "not reproducible").length };
}

/** `count` subsets of `size` of 0..P-1 (sorted), drawn without replacement from a seeded generator. */
export function promptSubsets(P: number, count: number, size: number, seed: number): number[][] {
  let s = (seed * 2654435761 + 0x9e3779b9) >>> 0;
  const next = () => {
    // mulberry32: a small, well-mixed 32-bit generator; the subsets only need to be reproducible
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  return Array.from({ length: count }, () => {
    const idx = Array.from({ length: P }, (_, i) => i);
    for (let i = P - 1; i > 0; i--) {
      const j = Math.floor(next() * (i + 1));
      [idx[i], idx[j]] = [idx[j], idx[i]];
    }
    return idx.slice(0, size).sort((a, b) => a - b);
  });
}
