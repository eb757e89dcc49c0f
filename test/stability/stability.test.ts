// Stability analysis on constructed runs with known answers (vectors rotated by chosen angles, bands
// of chosen gaps), with the thresholds crossed by a hair on either side; `jacsteer stability` end to
// end on the bundled tiny model (each run equals `power-iter` with that seed, bitwise); bad inputs.
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { makeTempDir } from "../helpers/checkpoints.js";
import { expectInputError } from "../helpers/cli.js";
import { BUNDLED_TINY, jacsteer } from "../generation/fixtures.js";
import { analyzeStability, promptSubsets, type StabilityRun } from "../../src/stability/stability.js";
import { decodeVectorFile } from "../../src/io/vector-file.js";
import { openSafetensorsFile } from "../../src/node/safetensors-file.js";
import type { StabilityFile } from "../../src/cli/stability.js";

const work = makeTempDir("jacsteer-stability-");
afterAll(() => rmSync(work, { recursive: true, force: true }));

const D = 6;
const e = (i: number) => Float64Array.from({ length: D }, (_, j) => (j === i ? 1 : 0));
/** cos(t) e_i + sin(t) e_j */
const rot = (i: number, j: number, t: number) => Float64Array.from({ length: D }, (_, k) => (k === i ? Math.cos(t) : k === j ? Math.sin(t) : 0));

describe("analyzeStability", () => {
  const sigmas = [10, 8, 7.9, 5]; // gaps: 0.2, 0.0125 (near-tied), 0.367
  const base: StabilityRun = { label: "a", vectors: [e(0), e(1), e(2), e(3)], singularValues: sigmas };

  it("a band rotated inside itself: its vectors are not reproducible, the band is", () => {
    const t = Math.PI / 4;
    const other: StabilityRun = { label: "b", vectors: [e(0), rot(1, 2, t), rot(2, 1, -t).map((x) => -x), e(3).map((x) => -x)], singularValues: sigmas };
    const r = analyzeStability([base, other]);
    expect(r.bands).toEqual([{ first: 1, last: 2, min_principal_cos: expect.closeTo(1, 12), reproducible: true }]);
    expect(r.vectors.map((v) => v.status)).toEqual(["reproducible", "reproducible band", "reproducible band", "reproducible"]);
    expect(r.vectors[1].min_best_cos).toBeCloseTo(Math.SQRT1_2, 12);
    expect(r.vectors.map((v) => v.relative_gap)).toEqual([0.2, (8 - 7.9) / 8, (7.9 - 5) / 7.9, null]);
    expect(r.reproducible_count).toBe(4);
  });

  it("thresholds: |cos| and the gap crossed by a hair either way", () => {
    const at = (c: number) => analyzeStability([base, { label: "b", vectors: [rot(0, 5, Math.acos(c)), e(1), e(2), e(3)], singularValues: sigmas }], { cos: 0.9 });
    expect(at(0.9 + 1e-6).vectors[0].status).toBe("reproducible");
    expect(at(0.9 - 1e-6).vectors[0].status).toBe("not reproducible");
    // the best match is found whichever vector of the other run it is
    const swapped = analyzeStability([base, { label: "b", vectors: [e(3), e(2), e(1), e(0)], singularValues: sigmas }]);
    expect(swapped.vectors.every((v) => v.min_best_cos === 1)).toBe(true);
    // gap 0.05 exactly is not near-tied; just below is
    const gapRun = (g: number) => analyzeStability([{ ...base, singularValues: [10, 10 * (1 - g), 5, 2] }, { ...base, label: "b", singularValues: [10, 10 * (1 - g), 5, 2] }], { gap: 0.05 });
    expect(gapRun(0.05 + 1e-9).bands).toEqual([]);
    expect(gapRun(0.05 - 1e-9).bands.map((b) => [b.first, b.last])).toEqual([[0, 1]]);
  });

  it("a band whose subspace turns out of it is not reproducible; principal cosines from a direct 2x2 computation", () => {
    // run b's band spans e1 and cos(t) e2 + sin(t) e5: principal cosines 1 and cos(t)
    const t = Math.acos(0.8);
    const r = analyzeStability([base, { label: "b", vectors: [e(0), e(1), rot(2, 5, t), e(3)], singularValues: sigmas }]);
    expect(r.bands[0].min_principal_cos).toBeCloseTo(0.8, 12);
    expect(r.bands[0].reproducible).toBe(false);
    expect(r.vectors[2].status).toBe("not reproducible");
    expect(r.vectors[1].status).toBe("reproducible");
  });

  it("prompt subsets: seeded, distinct draws of the requested size", () => {
    const a = promptSubsets(10, 4, 5, 1);
    expect(promptSubsets(10, 4, 5, 1)).toEqual(a);
    expect(a.every((s) => s.length === 5 && new Set(s).size === 5 && s.every((x) => x >= 0 && x < 10))).toBe(true);
    expect(new Set(a.map((s) => s.join())).size).toBeGreaterThan(1);
  });
});

describe("jacsteer stability", () => {
  const base = ["stability", "--model", BUNDLED_TINY, "--tokens", "72,101,108,108,111,44,32,119,111,114,108,100", "--tokens", "84,104,101,32,99,97,116,32,115,97,116", "--num-vectors", "4"];

  it("every run equals power-iter with its seed (bitwise); converged seeds agree on every vector", () => {
    const out = join(work, "s.json");
    const r = jacsteer([...base, "--seeds", "0,3", "--tol", "1e-6", "--out", out, "--json"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/stability: run 2\/2 .*\| done/);
    const file: StabilityFile = JSON.parse(readFileSync(out, "utf8"));
    expect(file.runs.map((x) => x.seed)).toEqual([0, 3]);
    expect(file.vectors.every((v) => v.min_best_cos > 0.999 && v.status === "reproducible")).toBe(true);
    const pi = join(work, "pi.safetensors");
    const p = jacsteer(["power-iter", "--model", BUNDLED_TINY, "--tokens", "72,101,108,108,111,44,32,119,111,114,108,100", "--tokens", "84,104,101,32,99,97,116,32,115,97,116", "--num-vectors", "4", "--seed", "3", "--tol", "1e-6", "--out", pi, "--quiet"]);
    expect(p.code, p.stderr).toBe(0);
    const reader = openSafetensorsFile(pi);
    const set = decodeVectorFile(reader, pi);
    reader.close?.();
    expect(file.runs[1].singular_values.map(Math.fround)).toEqual(set.singularValues); // the vector file stores F32
  }, 120_000);

  it("with prompts long enough for blocks smaller than --num-vectors, a run is still power-iter's (its block size)", () => {
    // 2 x 36 tokens = 72 rows: power-iter's automatic block is 3 vectors, not 6; at --tol 1e-2 another
    // block size gives other Ritz values.
    const long = Array.from({ length: 2 }, (_, p) => Array.from({ length: 36 }, (_, i) => 32 + ((i * 7 + p * 13) % 90)).join(","));
    const run = ["--model", BUNDLED_TINY, ...long.flatMap((t) => ["--tokens", t]), "--num-vectors", "6", "--tol", "1e-2"];
    const r = jacsteer(["stability", ...run, "--seeds", "0,1", "--json", "--quiet"]);
    expect(r.code, r.stderr).toBe(0);
    const file = JSON.parse(r.stdout) as StabilityFile;
    const pi = join(work, "pi-long.safetensors");
    const p = jacsteer(["power-iter", ...run, "--seed", "1", "--out", pi, "--quiet"]);
    expect(p.code, p.stderr).toBe(0);
    const reader = openSafetensorsFile(pi);
    const set = decodeVectorFile(reader, pi);
    reader.close?.();
    expect(file.runs[1].products).toBe(Number(set.metadata.products ?? file.runs[1].products));
    expect(file.runs[1].singular_values.map(Math.fround)).toEqual(set.singularValues);
  }, 120_000);

  it("prompt subsets: runs on subsets, labelled", () => {
    const r = jacsteer([...base, "--seeds", "0", "--prompt-subsets", "2", "--json", "--quiet"]);
    expect(r.code, r.stderr).toBe(0);
    const file = JSON.parse(r.stdout) as StabilityFile;
    expect(file.runs.length).toBe(3);
    expect(file.runs[1].prompts.length).toBe(1);
    expect(file.runs[1].label).toMatch(/^subset 1 \(prompts \d\), seed 0$/);
  }, 120_000);

  it("bad input: one line naming the flag, exit 1, no output file", () => {
    expectInputError([...base, "--seeds", "0"], /--seeds 0 without --prompt-subsets: one run only/, ".json");
    expectInputError([...base, "--seeds", "0,x"], /--seeds 0,x: expected comma-separated/, ".json");
    expectInputError([...base, "--subset-frac", "0.5"], /--subset-frac needs --prompt-subsets/, ".json");
    expectInputError([...base, "--cos", "1.5"], /--cos 1\.5: must be in/, ".json");
    expectInputError(["stability", "--model", BUNDLED_TINY, "--tokens", "1,2,3,4", "--prompt-subsets", "2"], /--prompt-subsets 2: needs at least 2 prompts/, ".json");
  }, 120_000);
});
