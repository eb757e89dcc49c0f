// Token positions beyond "the last K" (src/jacobian/positions.ts) in the steering Jacobian: an
// explicit list selects the same rows as last-K when it names them; a permuted list permutes J's
// rows; weights multiply J's rows (a uniform weight w scales every singular value by w);
// --all-positions is K = prompt length; bad choices fail with the flag named. Then the same through
// `jacsteer power-iter` (built CLI in dist/).
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { rmSync } from "node:fs";
import { afterAll, describe, expect, it } from "vitest";
import { SteeringJacobian, type SteeringSite } from "../../src/jacobian/steering-jacobian.js";
import { joinNegativeValues } from "../../src/cli/args.js";
import { positionsFromFlags, resolvePositions, type Positions } from "../../src/jacobian/positions.js";
import { svd } from "../../src/linalg/dense.js";
import { openSafetensorsFile } from "../../src/node/safetensors-file.js";
import { decodeVectorFile } from "../../src/io/vector-file.js";
import { makeTempDir, writeTempCheckpoint, SMALL_SHAPE, type TempCheckpoint } from "../helpers/checkpoints.js";
import { loadRefWeights, refHiddenStates } from "../helpers/qwen3-reference.js";
import { loadTestModel, maxRelErr, explicitJacobian } from "../helpers/model.js";
import { randn, rng } from "../helpers/random.js";

const cleanup: (() => void)[] = [];
afterAll(() => cleanup.forEach((f) => f()));

const explicitJ = explicitJacobian;

describe("target positions in the steering Jacobian", async () => {
  const ck: TempCheckpoint = writeTempCheckpoint({ ...SMALL_SHAPE, num_hidden_layers: 3 }, { seed: 41 });
  cleanup.push(() => ck.remove());
  const { model, ckpt } = await loadTestModel(ck.dir);
  const d = ckpt.config.hiddenSize;
  const prompts = [[3, 1, 4, 1, 5, 9, 2], [2, 7, 1, 8, 2]];
  const site = (positions: Positions): SteeringSite => ({ sourceLayer: 0, targetLayer: 2, positions });
  const J3 = new SteeringJacobian(model, prompts, site(3));
  const rows3 = explicitJ(J3);

  it("an explicit list naming the last K rows gives J of last-K (negative and non-negative indices)", () => {
    // Prompts of 7 and 5 tokens: -3,-2,-1 are the last three of each.
    const Jl = new SteeringJacobian(model, prompts, site({ kind: "list", indices: [-3, -2, -1] }));
    expect(Jl.outputDim).toBe(J3.outputDim);
    expect(maxRelErr(explicitJ(Jl).flatMap((r) => Array.from(r)), rows3.flatMap((r) => Array.from(r)))).toBe(0);
    // With weights of 1 the gather path runs (not the slice): still the same J.
    const Jw = new SteeringJacobian(model, prompts, site({ kind: "last", count: 3, weights: [1, 1, 1] }));
    expect(maxRelErr(explicitJ(Jw).flatMap((r) => Array.from(r)), rows3.flatMap((r) => Array.from(r)))).toBe(0);
  });

  it("a permuted list permutes J's rows, block by block", () => {
    const Jp = new SteeringJacobian(model, prompts, site({ kind: "list", indices: [-1, -3, -2] }));
    const rp = explicitJ(Jp);
    const order = [2, 0, 1]; // new block b is old block order[b]
    for (let p = 0; p < prompts.length; p++) {
      for (let b = 0; b < 3; b++) {
        for (let c = 0; c < d; c++) expect(rp[(p * 3 + b) * d + c]).toEqual(rows3[(p * 3 + order[b]) * d + c]);
      }
    }
  });

  it("weights multiply J's rows; a uniform weight w scales every singular value by w", () => {
    const w = [0.5, 2, 3];
    const Jw = new SteeringJacobian(model, prompts, site({ kind: "last", count: 3, weights: w }));
    const rw = explicitJ(Jw);
    rw.forEach((row, i) => {
      const wi = w[Math.floor(i / d) % 3];
      expect(maxRelErr(row, rows3[i].map((x) => wi * x))).toBeLessThan(1e-6);
    });
    const Ju = new SteeringJacobian(model, prompts, site({ kind: "last", count: 3, weights: [2.5, 2.5, 2.5] }));
    const s0 = svd(rows3, d).values, su = svd(explicitJ(Ju), d).values;
    su.forEach((s, i) => expect(Math.abs(s - 2.5 * s0[i])).toBeLessThan(1e-5 * s0[0]));
    // J^T J weights positions by w^2: the normal product agrees with the explicit weighted J.
    const v = randn(rng(3), d);
    const jtjv = Jw.normalProduct(v, "jvp");
    const jv = rw.map((row) => row.reduce((s, x, k) => s + x * v[k], 0));
    const exact = Array.from({ length: d }, (_, k) => rw.reduce((s, row, i) => s + row[k] * jv[i], 0));
    expect(maxRelErr(jtjv, exact)).toBeLessThan(1e-5);
    // The seed's double VJP differentiates through the weighted gather's transpose too.
    const Jl = new SteeringJacobian(model, prompts, site({ kind: "list", indices: [-1, 0, 2], weights: [2, 0.5, 1] }));
    expect(maxRelErr(Jl.normalProduct(v, "double-vjp"), Jl.normalProduct(v, "jvp"))).toBeLessThan(1e-5);
  });

  it("--all-positions equals K = prompt length, and rows match the float64 reference model", () => {
    const one = [prompts[0]];
    const Ja = new SteeringJacobian(model, one, site({ kind: "all" }));
    const Jk = new SteeringJacobian(model, one, site(one[0].length));
    const ra = explicitJ(Ja);
    expect(maxRelErr(ra.flatMap((r) => Array.from(r)), explicitJ(Jk).flatMap((r) => Array.from(r)))).toBe(0);
    // Prompts of different lengths: each contributes all of its rows.
    const Jb = new SteeringJacobian(model, prompts, site({ kind: "all" }));
    expect(Jb.outputDim).toBe((7 + 5) * d);
    // Targets with weights and a list, against the float64 reference forward.
    const spec: Positions = { kind: "list", indices: [0, -1, 2], weights: [1.5, 0.25, 2] };
    const Jl = new SteeringJacobian(model, prompts, site(spec));
    const ref = loadRefWeights(ckpt.config, ckpt.tensors);
    Jl.targets().forEach((t, p) => {
      const h = refHiddenStates(ref, prompts[p], 2, { layer: 0, sv: new Float64Array(d) })[3];
      const L = prompts[p].length;
      const rows = [0, L - 1, 2];
      const expected = rows.flatMap((r, i) => Array.from(h[r], (x) => x * (spec.weights as number[])[i]));
      expect(maxRelErr(t, expected)).toBeLessThan(1e-4);
    });
  });

  it("bad positions fail with the flag named", () => {
    const bad = (positions: Positions, re: RegExp) => expect(() => new SteeringJacobian(model, prompts, site(positions))).toThrow(re);
    bad({ kind: "list", indices: [1, 6] }, /--position-list 1,6: position 6 is out of range for prompt 2 \(5 tokens/);
    bad({ kind: "list", indices: [-8] }, /--position-list -8: position -8 is out of range for prompt 1 \(7 tokens/);
    bad({ kind: "list", indices: [4, -1] }, /--position-list 4,-1: positions 4 and -1 are the same token of prompt 2/);
    bad({ kind: "list", indices: [] }, /--position-list is empty/);
    bad({ kind: "last", count: 2, weights: [1, 2, 3] }, /--position-weights 1,2,3: 3 weight\(s\), but --positions 2 selects 2/);
    bad({ kind: "last", count: 2, weights: [1, -2] }, /--position-weights 1,-2: weight -2 must be a finite non-negative number/);
    bad({ kind: "all", weights: [1, 1, 1, 1, 1, 1, 1] }, /--position-weights .*--all-positions selects 5 for prompt 2/);
    bad(6, /--positions 6 needs at least 6 tokens, but prompt 2 has 5/);
    bad(0, /--positions 0 must be a positive integer/);
  });

  it("flags: parsing, conflicts and the plain number form", () => {
    expect(positionsFromFlags({}, 4)).toBe(4);
    expect(positionsFromFlags({ positions: "3" }, 4)).toBe(3);
    expect(positionsFromFlags({ positionList: "3, 7,-1" }, 4)).toEqual({ kind: "list", indices: [3, 7, -1] });
    expect(positionsFromFlags({ allPositions: true, positionWeights: "1,2" }, 4)).toEqual({ kind: "all", weights: [1, 2] });
    expect(positionsFromFlags({ positionWeights: "0.5,1" }, 2)).toEqual({ kind: "last", count: 2, weights: [0.5, 1] });
    expect(() => positionsFromFlags({ positions: "2", allPositions: true }, 4)).toThrow(/--positions and --all-positions cannot be combined/);
    expect(() => positionsFromFlags({ positionList: "1,x" }, 4)).toThrow(/--position-list 1,x: expected comma-separated integers/);
    expect(() => positionsFromFlags({ positionWeights: "1,,2" }, 3)).toThrow(/--position-weights 1,,2: expected comma-separated/);
    expect(() => positionsFromFlags({ positionWeights: "1,2" }, 4)).toThrow(/2 weight\(s\), but --positions 4 selects 4/);
    expect(joinNegativeValues(["--position-list", "-2,-1", "--positions", "3", "--chat", "-1"], { "position-list": { type: "string" }, positions: { type: "string" }, chat: { type: "boolean" } })).toEqual([
      "--position-list=-2,-1",
      "--positions",
      "3",
      "--chat",
      "-1", // a boolean flag takes no value: -1 stays an argument (and parseArgs rejects it)
    ]);
    expect(resolvePositions({ kind: "list", indices: [-2, -1] }, 5, "prompt 1")).toEqual({ rows: [3, 4], weights: null, sliceStart: 3 });
  });
});

describe("jacsteer power-iter with position flags", () => {
  const BIN = join(process.cwd(), "bin", "jacsteer.js");
  const run = (args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8", timeout: 120_000 });
  const ck = writeTempCheckpoint(SMALL_SHAPE, { seed: 42 });
  cleanup.push(() => ck.remove());
  const base = ["power-iter", "--model", ck.dir, "--tokens", "1,2,3,4,5,6", "--source-layer", "0", "--target-layer", "1", "--num-vectors", "2", "--tol", "1e-7", "--max-iters", "300", "--json"];

  it("--position-list -2,-1 = --positions 2; --position-weights 3,3 triples sigma; metadata records the choice", () => {
    const dir = makeTempDir("jacsteer-pos-");
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const plain = run([...base, "--positions", "2"]);
    expect(plain.status, plain.stderr).toBe(0);
    const out = join(dir, "w.safetensors");
    const listed = run([...base, "--position-list", "-2,-1", "--position-weights", "3,3", "--out", out]);
    expect(listed.status, listed.stderr).toBe(0);
    const a = JSON.parse(plain.stdout), b = JSON.parse(listed.stdout);
    a.singular_values.forEach((s: number, i: number) => expect(Math.abs(b.singular_values[i] - 3 * s) / (3 * s)).toBeLessThan(1e-5));
    expect(b.positions).toBe("list:-2,-1");
    const r = openSafetensorsFile(out);
    expect(decodeVectorFile(r, out).metadata).toMatchObject({ positions: "list:-2,-1", position_weights: "3,3" });
    const all = JSON.parse(run([...base, "--all-positions"]).stdout);
    const six = JSON.parse(run([...base, "--positions", "6"]).stdout);
    all.singular_values.forEach((s: number, i: number) => expect(Math.abs(s - six.singular_values[i]) / s).toBeLessThan(1e-5));
  });

  it("a position out of range: exit 1, one line naming the flag", () => {
    const r = run([...base, "--position-list", "0,9"]);
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split("\n").pop()).toMatch(/^jacsteer: error: --position-list 0,9: position 9 is out of range for prompt 1 \(6 tokens/);
  });
});
