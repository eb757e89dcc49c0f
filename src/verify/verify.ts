// Compare a jacsteer result with a reference (typically the seed's PyTorch procedure run on a GPU).
//
// First the runs themselves: a result for other layers, positions, prompt tokens or model is reported
// as a mismatch, not as a numerical failure. A field one file does not state (a reference written by a
// user's own script may hold only vectors, sigmas and layers) is listed as not checked, not as a
// difference: absence is not disagreement. Then the numbers, judged by a perturbation model:
//   - the two Jacobians differ by about eps * ||J|| (eps from the reference's dtype: bf16 is looser than
//     float64), so by Weyl's inequality each sigma may move by eps * sigma_1;
//   - by Davis-Kahan, a singular vector may turn by sin(theta) <= (||dA|| + residuals) / gap, where
//     A = J^T J, ||dA|| ~ 2 eps sigma_1^2, and gap is the distance of sigma_i^2 to its neighbours;
//   - vectors whose sigmas are so close that this bound is useless form a cluster, and the cluster is
//     compared as a subspace (a vector is not wrong because two sigmas are nearly tied).
import { canonicalSign, dot, orthonormalize, svd } from "../linalg/dense.js";
import type { VectorSet } from "../io/vector-file.js";

/** Relative perturbation of J expected from the reference's arithmetic (jacsteer itself computes in float32). */
export const DTYPE_EPS: Record<string, number> = {
  float64: 2e-5,
  float32: 1e-4,
  float16: 1e-2,
  bfloat16: 3e-2,
};

export interface VerifyOptions {
  /** Override the dtype-derived relative perturbation eps. */
  eps?: number;
  /** A single vector must satisfy sin(angle) <= this to be judged alone; otherwise it joins a cluster. Default 0.05. */
  clusterSin?: number;
  /** Safety factor on the bounds. Default 4. */
  safety?: number;
  /** Compare only the first n vectors. */
  count?: number;
  /** Metadata keys that must agree (default RUN_KEYS). */
  runKeys?: string[];
}

/**
 * What identifies a run: if any differ, the comparison is meaningless. `model_config` is the
 * architecture (see modelConfigKey), `at_sha256` the steering point sv0 (see vectorSha256); the
 * model's directory name (`model`) is shown but not judged, since machines name directories differently.
 */
export const RUN_KEYS = ["model_config", "source_layer", "target_layer", "positions", "tokens", "at_sha256"];

export interface VectorRow {
  index: number;
  sigmaOurs: number;
  sigmaRef: number;
  sigmaRelErr: number;
  /** Allowed relative error of sigma_i. */
  sigmaTol: number;
  sigmaOk: boolean;
  absCos: number;
  sinBound: number;
  /** Cluster id; vectors in a cluster of size > 1 are judged as a subspace. */
  cluster: number;
  vectorOk: boolean;
  /** False when no spectral gap bounds this direction at the reference's precision (then not failed either). */
  directionJudged: boolean;
}

export interface ClusterRow {
  id: number;
  members: number[];
  maxAngleDeg: number;
  sinBound: number;
  ok: boolean;
  /** False when the cluster has no gap to the other compared vectors, or the bound says nothing (>= 1). */
  judged: boolean;
}

export interface VerifyReport {
  verdict: "PASS" | "FAIL" | "MISMATCH";
  mismatches: RunMismatch[];
  /** Identity keys a file does not state: neither agreeing nor differing, so not judged. */
  notChecked: UncheckedKey[];
  eps: number;
  dtype: string;
  rows: VectorRow[];
  clusters: ClusterRow[];
  /** Principal angles (degrees) between the two n-dimensional subspaces, ascending. */
  principalAnglesDeg: number[];
  summary: string;
}

function normalizeMeta(key: string, value: string | undefined): string {
  if (value === undefined || value === "") return "";
  if (key === "tokens" || key === "model_config") {
    try {
      return JSON.stringify(JSON.parse(value));
    } catch {
      return value;
    }
  }
  if (key === "at_scale" || key.endsWith("_layer") || key === "positions") {
    const n = Number(value);
    return Number.isFinite(n) ? String(n) : value;
  }
  return value;
}

export interface RunMismatch {
  key: string;
  ours: string;
  reference: string;
}

export interface UncheckedKey {
  key: string;
  /** Which file does not state it. */
  absentFrom: "reference" | "ours" | "both";
}

/** Identity keys stated by both files and different (mismatches), and keys one file does not state. */
export function checkRuns(ours: Record<string, string>, ref: Record<string, string>, keys = RUN_KEYS): { mismatches: RunMismatch[]; notChecked: UncheckedKey[] } {
  const mismatches: RunMismatch[] = [];
  const notChecked: UncheckedKey[] = [];
  for (const key of keys) {
    const inOurs = ours[key] !== undefined, inRef = ref[key] !== undefined;
    if (!inOurs || !inRef) {
      notChecked.push({ key, absentFrom: !inOurs && !inRef ? "both" : inRef ? "ours" : "reference" });
      continue;
    }
    if (normalizeMeta(key, ours[key]) !== normalizeMeta(key, ref[key])) mismatches.push({ key, ours: ours[key], reference: ref[key] });
  }
  return { mismatches, notChecked };
}

/** Keys on which two runs differ, a key only one of them states counted as a difference (for reports on two jacsteer runs). */
export function compareRuns(ours: Record<string, string>, ref: Record<string, string>, keys = RUN_KEYS): RunMismatch[] {
  const { mismatches, notChecked } = checkRuns(ours, ref, keys);
  const oneSided = notChecked.filter((u) => u.absentFrom !== "both").map(({ key }) => ({ key, ours: ours[key] ?? "(absent)", reference: ref[key] ?? "(absent)" }));
  return [...mismatches, ...oneSided].sort((a, b) => keys.indexOf(a.key) - keys.indexOf(b.key));
}

/** Principal angles (radians, ascending) between span(A) and span(B). */
export function principalAngles(A: Float64Array[], B: Float64Array[]): number[] {
  const QA = orthonormalize(A.map((v) => Float64Array.from(v)));
  const QB = orthonormalize(B.map((v) => Float64Array.from(v)));
  const M = QA.map((a) => QB.map((b) => dot(a, b)));
  const { values } = svd(M, QB.length);
  return values.slice(0, Math.min(QA.length, QB.length)).map((c) => Math.acos(Math.min(1, Math.max(-1, c)))).sort((x, y) => x - y);
}

export function verifyVectorSets(ours: VectorSet, ref: VectorSet, opts: VerifyOptions = {}): VerifyReport {
  const dtype = ref.metadata.dtype ?? "float32";
  const eps = opts.eps ?? DTYPE_EPS[dtype] ?? DTYPE_EPS.float32;
  const safety = opts.safety ?? 4;
  const clusterSin = opts.clusterSin ?? 0.05;
  const { mismatches, notChecked } = checkRuns(ours.metadata, ref.metadata, opts.runKeys);
  const empty = { eps, dtype, notChecked, rows: [], clusters: [], principalAnglesDeg: [] };
  if (mismatches.length) {
    return { ...empty, verdict: "MISMATCH", mismatches, summary: `MISMATCH: the runs differ in ${mismatches.map((m) => m.key).join(", ")}; numbers not compared` };
  }
  if (!ref.singularValues || !ours.singularValues) {
    return { ...empty, verdict: "MISMATCH", mismatches: [{ key: "singular_values", ours: ours.singularValues ? "present" : "absent", reference: ref.singularValues ? "present" : "absent" }], summary: "MISMATCH: both files need singular_values" };
  }
  const d = ref.vectors[0].length;
  if (ours.vectors[0].length !== d) {
    return { ...empty, verdict: "MISMATCH", mismatches: [{ key: "dimension", ours: String(ours.vectors[0].length), reference: String(d) }], summary: "MISMATCH: vectors of different length" };
  }
  const n = Math.min(opts.count ?? Infinity, ours.vectors.length, ref.vectors.length);
  const sR = ref.singularValues.slice(0, n), sO = ours.singularValues.slice(0, n);
  const s1 = sR[0];
  const resid = (set: VectorSet, i: number) => set.residuals?.[i] ?? 0;
  const dA = 2 * eps * s1 * s1; // ||J^T J perturbation||
  const vO = ours.vectors.slice(0, n).map((v) => Float64Array.from(v));
  const vR = ref.vectors.slice(0, n).map((v) => Float64Array.from(v));
  // Sign convention may differ between tools: compare |cos|; canonicalise anyway for reporting.
  vO.forEach((v) => canonicalSign(v));
  vR.forEach((v) => canonicalSign(v));
  const norm2 = (v: Float64Array) => Math.sqrt(dot(v, v));

  // Davis-Kahan bound for vector i against the other computed ones.
  const sinBoundBetween = (i: number, others: number[]) => {
    let gap = Infinity;
    for (const j of others) gap = Math.min(gap, Math.abs(sR[i] ** 2 - sR[j] ** 2));
    return (safety * dA + resid(ours, i) + resid(ref, i)) / gap;
  };
  // Clusters: consecutive vectors whose mutual bound is too weak to separate them.
  const cluster: number[] = new Array(n).fill(0);
  let cid = 0;
  for (let i = 1; i < n; i++) {
    if (sinBoundBetween(i, [i - 1]) > clusterSin || sinBoundBetween(i - 1, [i]) > clusterSin) cluster[i] = cid;
    else cluster[i] = ++cid;
  }
  const rows: VectorRow[] = [];
  for (let i = 0; i < n; i++) {
    // Weyl: |d sigma| <= ||dJ|| ~ eps sigma_1; an unconverged Ritz value is off by up to residual / (2 sigma).
    const sigmaAbsTol = safety * eps * s1 + (resid(ours, i) + resid(ref, i)) / (2 * Math.max(sR[i], 1e-300));
    const sigmaErr = Math.abs(sO[i] - sR[i]);
    const outside = Array.from({ length: n }, (_, j) => j).filter((j) => cluster[j] !== cluster[i]);
    const sinBound = Math.min(1, outside.length ? sinBoundBetween(i, outside) : 0);
    const absCos = Math.abs(dot(vO[i], vR[i])) / (norm2(vO[i]) * norm2(vR[i]));
    const alone = cluster.filter((c) => c === cluster[i]).length === 1;
    const sinErr = Math.sqrt(Math.max(0, 1 - absCos * absCos));
    rows.push({
      index: i,
      sigmaOurs: sO[i],
      sigmaRef: sR[i],
      sigmaRelErr: sigmaErr / Math.max(sR[i], 1e-300),
      sigmaTol: sigmaAbsTol / Math.max(sR[i], 1e-300),
      sigmaOk: sigmaErr <= sigmaAbsTol,
      absCos,
      sinBound,
      cluster: cluster[i],
      vectorOk: alone ? sinErr <= Math.max(sinBound, 1e-6) : true,
      directionJudged: true,
    });
  }
  // Judge each multi-member cluster as a subspace.
  const clusters: ClusterRow[] = [];
  for (let c = 0; c <= cid; c++) {
    const members = rows.filter((r) => r.cluster === c).map((r) => r.index);
    if (members.length < 2) continue;
    const outside = Array.from({ length: n }, (_, j) => j).filter((j) => cluster[j] !== c);
    // Against the unknown rest of the spectrum there is no gap to use: a cluster with nothing outside
    // it among the compared vectors, or whose bound is >= 1, cannot be judged at this precision.
    const sinBound = outside.length ? Math.min(1, Math.max(...members.map((i) => sinBoundBetween(i, outside)))) : 1;
    const judged = sinBound < 1;
    const angles = principalAngles(members.map((i) => vO[i]), members.map((i) => vR[i]));
    const maxAngle = angles[angles.length - 1];
    const ok = !judged || Math.sin(maxAngle) <= Math.max(sinBound, 1e-6);
    clusters.push({ id: c, members, maxAngleDeg: (maxAngle * 180) / Math.PI, sinBound, ok, judged });
    for (const i of members) {
      rows[i].vectorOk = ok;
      rows[i].directionJudged = judged;
    }
  }
  const principalAnglesDeg = principalAngles(vO, vR).map((a) => (a * 180) / Math.PI);
  const failed = rows.filter((r) => !r.sigmaOk || !r.vectorOk);
  const unjudged = rows.filter((r) => !r.directionJudged).map((r) => r.index);
  const verdict = failed.length ? "FAIL" : "PASS";
  const tolerance = `the ${dtype} tolerance (eps ${eps.toExponential(1)})`;
  const summary =
    verdict === "PASS"
      ? unjudged.length
        ? `PASS: ${n} singular values agree within ${tolerance}` +
          (unjudged.length < n ? `, and the vectors ${rows.filter((r) => r.directionJudged).map((r) => r.index).join(", ")}` : "") +
          `; the directions of vectors ${unjudged.join(", ")} are not judged: their sigmas are closer than ${dtype} precision can separate (see the principal angles)`
        : `PASS: ${n} singular values and vectors agree within ${tolerance}`
      : `FAIL: ${failed.map((r) => `vector ${r.index}${r.sigmaOk ? "" : " (sigma)"}${r.vectorOk ? "" : " (direction)"}`).join(", ")} outside ${tolerance}`;
  return { verdict, mismatches: [], notChecked, eps, dtype, rows, clusters, principalAnglesDeg, summary };
}

/** The one warning line for identity keys that could not be checked, or null when all were. */
export function notCheckedWarning(r: VerifyReport): string | null {
  if (!r.notChecked.length) return null;
  const side = (w: UncheckedKey["absentFrom"]) => (w === "both" ? "either file" : w === "ours" ? "the result" : "the reference");
  const groups = (["reference", "ours", "both"] as const)
    .map((w) => [w, r.notChecked.filter((u) => u.absentFrom === w).map((u) => u.key)] as const)
    .filter(([, keys]) => keys.length)
    .map(([w, keys]) => `${keys.join(", ")} (absent from ${side(w)})`);
  return `warning: not checked: ${groups.join("; ")}; the numbers are compared assuming the runs agree there`;
}

/** A fixed-width table for people. */
export function formatReport(r: VerifyReport): string {
  const lines: string[] = [];
  if (r.mismatches.length) {
    lines.push("runs differ:");
    for (const m of r.mismatches) lines.push(`  ${m.key}: ours ${m.ours} | reference ${m.reference}`);
  } else {
    lines.push(`reference dtype ${r.dtype}; eps ${r.eps.toExponential(1)} (relative perturbation allowed in J)`);
    lines.push("  i  sigma(ours)    sigma(ref)     rel.err    |cos|       sin bound  cluster  ok");
    for (const row of r.rows) {
      lines.push(
        `${String(row.index).padStart(3)}  ${row.sigmaOurs.toPrecision(8).padEnd(13)}  ${row.sigmaRef.toPrecision(8).padEnd(13)}  ${row.sigmaRelErr.toExponential(2).padEnd(9)}  ${row.absCos.toFixed(7)}  ${row.sinBound.toExponential(2).padEnd(9)}  ${String(row.cluster).padStart(7)}  ${!row.sigmaOk || !row.vectorOk ? "NO" : row.directionJudged ? "yes" : "sigma only"}`,
      );
    }
    for (const c of r.clusters) {
      lines.push(
        c.judged
          ? `cluster ${c.id} (vectors ${c.members.join(", ")}: near-tied sigmas) compared as a subspace: largest angle ${c.maxAngleDeg.toFixed(4)} deg, bound ${((Math.asin(Math.min(1, c.sinBound)) * 180) / Math.PI).toFixed(4)} deg: ${c.ok ? "ok" : "NO"}`
          : `cluster ${c.id} (vectors ${c.members.join(", ")}): no spectral gap bounds it at this precision; largest angle ${c.maxAngleDeg.toFixed(4)} deg, not judged`,
      );
    }
    lines.push(`principal angles between the subspaces (deg): ${r.principalAnglesDeg.map((a) => a.toFixed(4)).join(" ")}`);
  }
  lines.push(r.summary);
  return lines.join("\n") + "\n";
}
