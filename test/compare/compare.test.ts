// `jacsteer compare` (src/compare/): cosines, best matches and principal angles on sets whose answers
// are known by construction: identical sets (0 degrees), orthogonal sets (90), pairs rotated by
// known angles inside a random orthonormal frame and then mixed by random invertible matrices (the
// angles of the spans do not change), tiny angles (where acos alone would lose the digits), flipped
// signs, dependent vectors; then the CLI on vector files.
import { spawnSync } from "node:child_process";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { compareVectorSets, orthonormalBasis } from "../../src/compare/compare.js";
import { encodeVectorFile } from "../../src/io/vector-file.js";
import { writeFileAtomic } from "../../src/node/safetensors-file.js";
import { makeTempDir } from "../helpers/checkpoints.js";
import { randn, rng } from "../helpers/random.js";

const e = (d: number, i: number) => Float64Array.from({ length: d }, (_, k) => (k === i ? 1 : 0));
const combo = (terms: [number, Float64Array][]) => {
  const out = new Float64Array(terms[0][1].length);
  for (const [c, v] of terms) v.forEach((x, k) => (out[k] += c * x));
  return out;
};
const DEG = Math.PI / 180;

describe("compareVectorSets", () => {
  it("identical sets: cosines 1 on the diagonal, each matches itself with sign +, all angles 0", () => {
    const A = [randn(rng(1), 12), randn(rng(2), 12), randn(rng(3), 12)];
    const res = compareVectorSets(A, A);
    res.cosines.forEach((row, i) => expect(row[i]).toBeCloseTo(1, 12));
    expect(res.bestMatches.map((m) => [m.a, m.b, Math.sign(m.cos)])).toEqual([[0, 0, 1], [1, 1, 1], [2, 2, 1]]);
    expect(res.principalAngles.length).toBe(3);
    res.principalAngles.forEach((t) => expect(t).toBeLessThan(1e-7));
  });

  it("orthogonal sets: cosines 0, all angles 90 degrees", () => {
    const d = 8;
    const res = compareVectorSets([e(d, 0), combo([[1, e(d, 1)], [2, e(d, 2)]])], [e(d, 3), e(d, 4), e(d, 5)]);
    res.cosines.flat().forEach((c) => expect(c).toBe(0));
    expect(res.principalAngles.length).toBe(2);
    res.principalAngles.forEach((t) => expect(t).toBeCloseTo(Math.PI / 2, 12));
  });

  it("a pair rotated by known angles in a random frame, then mixed: the angles come back", () => {
    const d = 10, r = rng(7);
    const Q = orthonormalBasis(Array.from({ length: 6 }, () => randn(r, d)));
    const thetas = [70 * DEG, 5 * DEG, 33 * DEG];
    const a = [0, 1, 2].map((i) => Q[i]);
    const b = thetas.map((t, i) => combo([[Math.cos(t), Q[i]], [Math.sin(t), Q[i + 3]]]));
    // Mix each set by a random invertible 3x3 matrix: the spans (and their angles) stay the same.
    const mix = (V: Float64Array[], seed: number) => {
      const M = [randn(rng(seed), 3), randn(rng(seed + 1), 3), randn(rng(seed + 2), 3)];
      return M.map((row) => combo(V.map((v, j) => [row[j], v] as [number, Float64Array])));
    };
    const res = compareVectorSets(mix(a, 20), mix(b, 30));
    const expected = [...thetas].sort((x, y) => x - y);
    res.principalAngles.forEach((t, i) => expect(Math.abs(t - expected[i])).toBeLessThan(1e-10));
    res.principalCosines.forEach((c, i) => expect(c).toBeCloseTo(Math.cos(expected[i]), 12));
    // Unmixed, the best match of a_i is b_i, with |cos| = cos(theta_i).
    const plain = compareVectorSets(a, b);
    plain.bestMatches.forEach((m, i) => {
      expect(m.b).toBe(i);
      expect(m.cos).toBeCloseTo(Math.cos(thetas[i]), 12);
    });
  });

  it("tiny angles keep their digits (computed from sines, not acos)", () => {
    const d = 5, t = 1e-7;
    const res = compareVectorSets([e(d, 0)], [combo([[Math.cos(t), e(d, 0)], [Math.sin(t), e(d, 1)]])]);
    expect(Math.abs(res.principalAngles[0] - t) / t).toBeLessThan(1e-6);
  });

  it("sign: B = -A matches with sign -, angles still 0; norms do not matter", () => {
    const A = [randn(rng(4), 9), randn(rng(5), 9)];
    const res = compareVectorSets(A, A.map((v, i) => v.map((x) => -(i + 2) * x)));
    res.bestMatches.forEach((m, i) => {
      expect(m.b).toBe(i);
      expect(m.cos).toBeCloseTo(-1, 6);
    });
    res.principalAngles.forEach((t) => expect(t).toBeLessThan(1e-3 * DEG));
  });

  it("different sizes give min(rank) angles; dependent vectors lower the rank", () => {
    const d = 6;
    const res = compareVectorSets([e(d, 0), e(d, 1), e(d, 2)], [combo([[1, e(d, 1)], [1, e(d, 4)]])]);
    expect(res.principalAngles.length).toBe(1);
    expect(res.principalAngles[0]).toBeCloseTo(45 * DEG, 12);
    const dep = compareVectorSets([e(d, 0), combo([[2, e(d, 0)]]), e(d, 1)], [e(d, 0), e(d, 1)]);
    expect(dep.rankA).toBe(2);
    expect(dep.principalAngles).toEqual([0, 0]);
  });

  it("errors: zero vectors and different lengths are named", () => {
    expect(() => compareVectorSets([new Float64Array(3)], [e(3, 0)])).toThrow(/A0 is a zero vector/);
    expect(() => compareVectorSets([e(3, 0)], [e(4, 0)])).toThrow(/B0 has length 4, but A0 has length 3/);
  });
});

describe("jacsteer compare", () => {
  const dir = makeTempDir("jacsteer-compare-");
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const BIN = join(process.cwd(), "bin", "jacsteer.js");
  const run = (args: string[]) => spawnSync(process.execPath, [BIN, "compare", ...args], { encoding: "utf8", timeout: 60_000 });
  const d = 16;
  const write = (name: string, vectors: Float64Array[], method: string) => {
    const path = join(dir, name);
    writeFileAtomic(path, encodeVectorFile({ vectors: vectors.map((v) => Float32Array.from(v)), metadata: { method } }));
    return path;
  };
  const t = 30 * DEG;
  const a = write("a.safetensors", [e(d, 0), e(d, 1), e(d, 2)], "power-iter/jvp");
  const b = write("b.safetensors", [combo([[-Math.cos(t), e(d, 1)], [Math.sin(t), e(d, 5)]]), e(d, 7)], "melbo");

  it("--json: cosines, best matches with sign, principal angles in degrees", () => {
    const r = run([a, b, "--json"]);
    expect(r.status, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s.a).toMatchObject({ rows: [0, 1, 2], method: "power-iter/jvp", rank: 3 });
    expect(s.b).toMatchObject({ rows: [0, 1], method: "melbo", rank: 2 });
    expect(s.cosines[1][0]).toBeCloseTo(-Math.cos(t), 6);
    expect(s.best_matches[1]).toMatchObject({ a: 1, b: 0, sign: -1 });
    expect(s.best_matches[1].abs_cos).toBeCloseTo(Math.cos(t), 6);
    expect(s.principal_angles_deg[0]).toBeCloseTo(30, 4);
    expect(s.principal_angles_deg[1]).toBeCloseTo(90, 4);
  });

  it("FILE:ROW picks one row; the table names rows by their file index", () => {
    const r = run([`${a}:1`, b]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/cosine similarity \(rows: A, columns: B\)/);
    expect(r.stdout).toMatch(/A1 +-0\.866 +0\.000/);
    expect(r.stdout).toMatch(/A1 -> B0 +\|cos\| 0\.8660 +sign -/);
    expect(r.stdout).toMatch(/principal angles between span\(A\) \(rank 1\) and span\(B\) \(rank 2\), degrees\n +30\.00/);
  });

  it("bad input: exit 1 with one line", () => {
    const other = write("c.safetensors", [e(d + 1, 0)], "caa");
    for (const [args, re] of [
      [[a], /compare needs exactly two vector files, A and B \(got 1\)/],
      [[a, join(dir, "nope.safetensors")], /B .*nope\.safetensors: file does not exist/],
      [[`${a}:3`, b], /A .*a\.safetensors:3: row 3 out of range \(the file has 3 vectors: rows 0\.\.2, or -3\.\.-1 counting from the end\)/],
      [[`${a}:-4`, b], /A .*a\.safetensors:-4: row -4 out of range/],
      [[a, other], /has vectors of length 16 but B .* has length 17/],
      [[a, b, "--bogus"], /Unknown option '--bogus'/],
    ] as [string[], RegExp][]) {
      const r = run(args);
      expect(r.status, r.stderr).toBe(1);
      const lines = r.stderr.trim().split("\n");
      expect(lines.length).toBe(1);
      expect(lines[0]).toMatch(/^jacsteer: error: /);
      expect(lines[0]).toMatch(re);
    }
  });
});
