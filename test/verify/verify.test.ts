// jacsteer verify's judgement on synthetic cases whose right answer is known by construction.
import { describe, expect, it } from "vitest";
import { compareRuns, notCheckedWarning, verifyVectorSets, principalAngles } from "../../src/verify/verify.js";
import type { VectorSet } from "../../src/io/vector-file.js";
import { orthonormalize, gaussianStream } from "../../src/linalg/dense.js";

const d = 24;
const meta = { model_config: "[24,48,2,4,2,12,50]", source_layer: "0", target_layer: "1", positions: "4", tokens: "[[1,2,3,4,5]]", at_sha256: "" };

function basis(seed: number, n: number): Float64Array[] {
  const g = gaussianStream(seed);
  return orthonormalize(Array.from({ length: n }, () => Float64Array.from({ length: d }, () => g())));
}

function set(vectors: Float64Array[], sigmas: number[], metadata: Record<string, string>, residuals?: number[]): VectorSet {
  return { vectors: vectors.map((v) => Float32Array.from(v)), singularValues: sigmas, residuals, metadata };
}

/** cos(t) a + sin(t) b */
function rotate(a: Float64Array, b: Float64Array, deg: number): Float64Array<ArrayBufferLike> {
  const t = (deg * Math.PI) / 180;
  return a.map((x, i) => Math.cos(t) * x + Math.sin(t) * b[i]);
}

describe("verify", () => {
  const V = basis(1, 6);
  const sig = [10, 7, 5, 3.1, 3.0999, 1];

  it("passes a result identical to the reference", () => {
    const r = verifyVectorSets(set(V.slice(0, 5), sig.slice(0, 5), meta), set(V.slice(0, 5), sig.slice(0, 5), { ...meta, dtype: "float64" }));
    expect(r.verdict).toBe("PASS");
    expect(Math.max(...r.principalAnglesDeg)).toBeLessThan(1e-3);
  });

  it("fails a scaled sigma (1%) against a float64 reference, passes it against bfloat16", () => {
    const scaled = sig.map((s, i) => (i === 1 ? s * 1.01 : s));
    expect(verifyVectorSets(set(V, scaled, meta), set(V, sig, { ...meta, dtype: "float64" })).verdict).toBe("FAIL");
    expect(verifyVectorSets(set(V, scaled, meta), set(V, sig, { ...meta, dtype: "bfloat16" })).verdict).toBe("PASS");
  });

  it("fails a well-separated vector rotated by 2 degrees", () => {
    const W: Float64Array<ArrayBufferLike>[] = V.map((v) => Float64Array.from(v));
    W[0] = rotate(V[0], V[5], 2);
    const r = verifyVectorSets(set(W, sig, meta), set(V, sig, { ...meta, dtype: "float32" }));
    expect(r.verdict).toBe("FAIL");
    expect(r.rows[0].vectorOk).toBe(false);
    expect(r.rows[1].vectorOk).toBe(true);
  });

  it("judges a near-tied pair as a subspace: rotation within the pair passes, out of it fails", () => {
    const W: Float64Array<ArrayBufferLike>[] = V.map((v) => Float64Array.from(v));
    W[3] = rotate(V[3], V[4], 30);
    W[4] = rotate(V[4], V[3], -30);
    const r = verifyVectorSets(set(W, sig, meta), set(V, sig, { ...meta, dtype: "float32" }));
    expect(r.clusters.map((c) => c.members)).toEqual([[3, 4]]);
    expect(r.rows[3].absCos).toBeLessThan(0.9);
    expect(r.verdict).toBe("PASS");
    const X: Float64Array<ArrayBufferLike>[] = W.map((v) => Float64Array.from(v));
    X[3] = rotate(W[3], V[0], 3);
    expect(verifyVectorSets(set(X, sig, meta), set(V, sig, { ...meta, dtype: "float32" })).verdict).toBe("FAIL");
  });

  it("reports a mismatched run as such, not as a numerical failure", () => {
    const r = verifyVectorSets(set(V, sig, { ...meta, target_layer: "2" }), set(V, sig, { ...meta, dtype: "float64" }));
    expect(r.verdict).toBe("MISMATCH");
    expect(r.mismatches.map((m) => m.key)).toEqual(["target_layer"]);
    const tok = verifyVectorSets(set(V, sig, { ...meta, tokens: "[[1, 2, 3, 4, 5]]" }), set(V, sig, { ...meta }));
    expect(tok.verdict).toBe("PASS"); // same tokens, other JSON spacing
  });

  it("accepts the sign flip of a vector (sign conventions may differ)", () => {
    const W = V.map((v, i) => (i === 2 ? v.map((x) => -x) : v));
    expect(verifyVectorSets(set(W, sig, meta), set(V, sig, { ...meta, dtype: "float64" })).verdict).toBe("PASS");
  });

  it("principal angles of known subspaces", () => {
    const a = principalAngles([V[0], V[1]], [rotate(V[0], V[2], 40), V[1]]);
    expect(a[0]).toBeCloseTo(0, 6);
    expect((a[1] * 180) / Math.PI).toBeCloseTo(40, 6);
    expect((principalAngles([V[0]], [V[3]])[0] * 180) / Math.PI).toBeCloseTo(90, 6);
  });
});

describe("verify at low precision (bfloat16 reference)", () => {
  const V = basis(7, 4);
  const sig = [8.41, 7.4, 6.89, 6.49];

  it("passes a nearly exact result whose sigmas bf16 cannot separate, saying the directions are not judged", () => {
    const W = V.map((v, i) => (i === 0 ? rotate(V[0], V[1], 0.5) : v));
    const r = verifyVectorSets(set(W, sig.map((s) => s * 1.001), meta), set(V, sig, { ...meta, dtype: "bfloat16" }));
    expect(r.verdict).toBe("PASS");
    expect(r.rows.every((row) => !row.directionJudged)).toBe(true);
    expect(r.summary).toMatch(/not judged/);
  });

  it("still fails sigmas outside the bf16 tolerance", () => {
    const r = verifyVectorSets(set(V, sig.map((s, i) => (i === 2 ? s * 1.5 : s)), meta), set(V, sig, { ...meta, dtype: "bfloat16" }));
    expect(r.verdict).toBe("FAIL");
    expect(r.rows[2].sigmaOk).toBe(false);
  });

  it("judges a cluster that has a gap to the rest, and fails it when it turned out of its span", () => {
    const s2 = [10, 9.99, 5, 4];
    const W = V.map((v) => Float64Array.from(v)) as Float64Array<ArrayBufferLike>[];
    W[0] = rotate(V[0], V[3], 20);
    const r = verifyVectorSets(set(W, s2, meta), set(V, s2, { ...meta, dtype: "float32" }));
    expect(r.clusters[0].judged).toBe(true);
    expect(r.verdict).toBe("FAIL");
  });
});

describe("verify against a partial reference (a user's own script: vectors, sigmas, layers)", () => {
  const V = basis(3, 4);
  const sig = [9, 6, 4, 2];
  const partial = { source_layer: "0", target_layer: "1", dtype: "float64" };
  // float64 reference: sigma_i may move by safety (4) * eps (2e-5) * sigma_1
  const sigmaTol = 4 * 2e-5 * sig[0];

  it("absent fields are not checked (not a MISMATCH) and the numbers are compared", () => {
    const r = verifyVectorSets(set(V, sig, meta), set(V, sig, partial));
    expect(r.verdict).toBe("PASS");
    expect(r.mismatches).toEqual([]);
    expect(r.notChecked).toEqual(["model_config", "positions", "tokens", "at_sha256"].map((key) => ({ key, absentFrom: "reference" })));
    expect(r.rows.length).toBe(4);
    expect(notCheckedWarning(r)).toBe("warning: not checked: model_config, positions, tokens, at_sha256 (absent from the reference); the numbers are compared assuming the runs agree there");
  });

  it("the verdict comes from the numbers: a sigma just outside the tolerance fails, just inside passes", () => {
    const off = (k: number) => sig.map((s, i) => (i === 1 ? s + k * sigmaTol : s));
    expect(verifyVectorSets(set(V, off(1.2), meta), set(V, sig, partial)).verdict).toBe("FAIL");
    expect(verifyVectorSets(set(V, off(0.8), meta), set(V, sig, partial)).verdict).toBe("PASS");
  });

  it("a field both state and that differs is still a MISMATCH", () => {
    const r = verifyVectorSets(set(V, sig, meta), set(V, sig, { ...partial, target_layer: "3" }));
    expect(r.verdict).toBe("MISMATCH");
    expect(r.mismatches).toEqual([{ key: "target_layer", ours: "1", reference: "3" }]);
    expect(r.rows).toEqual([]);
  });

  it("a field the result does not state is named as such", () => {
    const { tokens: _, ...noTokens } = meta;
    const r = verifyVectorSets(set(V, sig, noTokens), set(V, sig, { ...meta, dtype: "float64" }));
    expect(r.verdict).toBe("PASS");
    expect(notCheckedWarning(r)).toMatch(/not checked: tokens \(absent from the result\)/);
  });

  it("compareRuns (two jacsteer runs, for reports) still counts a one-sided field as a difference", () => {
    expect(compareRuns(meta, partial).map((m) => m.key)).toEqual(["model_config", "positions", "tokens", "at_sha256"]);
  });
});
