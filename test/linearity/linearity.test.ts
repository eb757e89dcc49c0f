// The linear-regime check (src/linearity/): ratio ||Delta(r v) - r J v|| / ||r J v|| against an
// independent float64 reference (test/helpers/qwen3-reference.ts: Delta from two float64 forwards, J v by
// central differences of the same), the crossing radius; a reference at radii off by 0.5% is told apart
// (the check can fail); the interpolation on synthetic power laws; the CLI (--json, --out, the report
// section, threads bitwise, clear errors, no partial files).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { SteeringEngine } from "../../src/engine/steering-engine.js";
import { crossing, linearity, unitVectors } from "../../src/linearity/linearity.js";
import { renderReport } from "../../src/report/report.js";
import { parseLinearity } from "../../src/report/linearity.js";
import { SMALL_SHAPE, makeTempDir, writeTempCheckpoint, type TempCheckpoint } from "../helpers/checkpoints.js";
import { loadTestModel } from "../helpers/model.js";
import { loadRefWeights, refTarget } from "../helpers/qwen3-reference.js";
import { randn, rng } from "../helpers/random.js";
import { expectInputError, jacsteer } from "../helpers/cli.js";

const cleanup: TempCheckpoint[] = [];
const engines: SteeringEngine[] = [];
afterAll(async () => {
  for (const e of engines) await e.close();
  cleanup.forEach((c) => c.remove());
});

const prompts = [[3, 1, 4, 1, 5, 9, 2], [2, 7, 1, 8, 2, 8]];
const S = 0, T = 2, K = 3;

describe("linearity against a float64 reference", async () => {
  const ck = writeTempCheckpoint({ ...SMALL_SHAPE, num_hidden_layers: 3 }, { seed: 31, dtype: "F32" });
  cleanup.push(ck);
  const { rt, ckpt } = await loadTestModel(ck.dir, { head: false });
  const engine = await SteeringEngine.create(rt, ckpt.config, ckpt.tensors, prompts, { sourceLayer: S, targetLayer: T, positions: K });
  engines.push(engine);
  const ref = loadRefWeights(ckpt.config, ckpt.tensors);
  const d = engine.inputDim;
  const r0 = rng(5);
  const { units } = unitVectors([randn(r0, d), randn(r0, d)], "test");
  const radii = [0.05, 0.1, 0.2, 0.5, 1, 2, 4, 8];
  const result = await linearity(engine, units, { radii, target: 0.5 });

  const refTargetAll = (sv: ArrayLike<number>) => prompts.flatMap((p) => Array.from(refTarget(ref, p, S, T, K, sv)));
  const refRatios = (v: Float32Array, rs: number[]) => {
    const base = refTargetAll(new Float64Array(d));
    const eps = 1e-5;
    const plus = refTargetAll(Array.from(v, (x) => eps * x)), minus = refTargetAll(Array.from(v, (x) => -eps * x));
    const jv = plus.map((x, i) => (x - minus[i]!) / (2 * eps));
    return rs.map((r) => {
      const t = refTargetAll(Array.from(v, (x) => r * x));
      let num = 0, den = 0;
      t.forEach((x, i) => {
        num += (x - base[i]! - r * jv[i]!) ** 2;
        den += (r * jv[i]!) ** 2;
      });
      return Math.sqrt(num / den);
    });
  };

  it("ratios over the radii and the crossing radius match to 2e-3; radii off by 0.5% are told apart", () => {
    units.forEach((v, j) => {
      const want = refRatios(v, radii);
      result.ratios[j]!.forEach((x, k) => expect(Math.abs(x - want[k]!) / want[k]!, `vector ${j} radius ${radii[k]}: ${x} vs ${want[k]}`).toBeLessThan(2e-3));
      const c = crossing(radii, want, 0.5);
      expect(result.status[j]).toBe(c.status);
      if (c.radius !== null) expect(Math.abs(result.radiusAtTarget[j]! - c.radius) / c.radius).toBeLessThan(2e-3);
      const off = refRatios(v, radii.map((r) => r * 1.005));
      expect(Math.max(...result.ratios[j]!.map((x, k) => Math.abs(x - off[k]!) / off[k]!))).toBeGreaterThan(2e-3);
    });
    expect(result.passes).toBe(radii.length + 1);
  });

  it("||Delta|| ~ r ||J v|| at the smallest radius, and the ratio grows like r there", () => {
    units.forEach((_, j) => {
      expect(Math.abs(result.deltaNorms[j]![0]! / (radii[0]! * result.jvNorms[j]!) - 1)).toBeLessThan(0.05);
      const slope = Math.log(result.ratios[j]![1]! / result.ratios[j]![0]!) / Math.log(radii[1]! / radii[0]!);
      expect(Math.abs(slope - 1)).toBeLessThan(0.1);
    });
  });
});

describe("crossing", () => {
  const radii = [0.1, 0.2, 0.4, 0.8, 1.6];
  it("is exact for a power law between the radii, and says where it is out of range", () => {
    const c = 0.7, p = 1.3;
    const rs = radii.map((r) => c * r ** p);
    const want = (0.5 / c) ** (1 / p);
    const got = crossing(radii, rs, 0.5);
    expect(got.status).toBe("interpolated");
    expect(Math.abs(got.radius! - want) / want).toBeLessThan(1e-12);
    expect(crossing(radii, rs.map((x) => x * 100), 0.5)).toEqual({ radius: null, status: "below-range" });
    expect(crossing(radii, rs.map((x) => x / 100), 0.5)).toEqual({ radius: null, status: "not-reached" });
    expect(crossing(radii, [NaN, 1, 1, 1, 1], 0.5)).toEqual({ radius: null, status: "no-linear-part" });
  });
  it("takes the first crossing", () => {
    expect(crossing(radii, [0.1, 0.6, 0.3, 0.7, 0.9], 0.5).radius!).toBeLessThan(0.2);
  });
});

describe("jacsteer linearity (CLI) and the report section", () => {
  it("a power-iter file's own prompts and layers; --json, --out, the report, and bitwise the same on 1 and 2 threads", () => {
    const dir = makeTempDir();
    const sv = join(dir, "sv.safetensors"), out1 = join(dir, "l1.json"), out2 = join(dir, "l2.json"), html = join(dir, "r.html");
    const p = jacsteer(["power-iter", "--tokens", "5,6,7,8,9,10,11,12", "--num-vectors", "3", "--out", sv, "--quiet"]);
    expect(p.code, p.stderr).toBe(0);
    const r1 = jacsteer(["linearity", `${sv}`, "--threads", "1", "--out", out1, "--json", "--radius-fracs", "0.05,0.2,0.5,1,2"]);
    expect(r1.code, r1.stderr).toBe(0);
    expect(r1.stderr).toMatch(/using the 1 prompt\(s\) of .*sv.safetensors/);
    expect(r1.stderr).toMatch(/linearity: pass 6\/6 .*ETA/);
    const s = JSON.parse(r1.stdout);
    expect(s.vectors.length).toBe(3);
    expect(s.radii.length).toBe(5);
    expect(s.source_layer).toBe(1);
    const r2 = jacsteer(["linearity", `${sv}:1`, "--threads", "2", "--out", out2, "--quiet", "--radius-fracs", "0.05,0.2,0.5,1,2"]);
    expect(r2.code, r2.stderr).toBe(0);
    const a = JSON.parse(readFileSync(out1, "utf8")), b = JSON.parse(readFileSync(out2, "utf8"));
    expect(b.vectors[0].ratios).toEqual(a.vectors[1].ratios);
    const rep = jacsteer(["report", "--linearity", out1, "--out", html]);
    expect(rep.code, rep.stderr).toBe(0);
    const page = readFileSync(html, "utf8");
    expect(page).toMatch(/<section id="linearity">/);
    expect(page).toMatch(/radius at ratio 0.5/);
  }, 180_000);

  it("renderReport draws one figure per file and one line per direction", () => {
    const doc = {
      format: "jacsteer.linearity.v1", file: "sv.safetensors", rows: [0, 1], model: "tiny", source_layer: 1, target_layer: 3, positions: "4", position_weights: null,
      tokens: [[1, 2, 3]], method: "power-iter", target_ratio: 0.5, median_source_norm: 10, radii: [1, 2, 4], radius_fractions: [0.1, 0.2, 0.4],
      vectors: [0, 1].map((row) => ({ row, norm: 1, jv_norm: 2, ratios: [0.1, 0.3, 0.9], delta_norms: [2, 4, 8], radius_at_target: 2.7, radius_at_target_fraction: 0.27, status: "interpolated", non_monotone: false })),
      passes: 4, threads: 1, seconds: 1, kernels: "relaxed-simd",
    };
    const input = parseLinearity(JSON.stringify(doc), "l.json", "--linearity");
    const { html, figures } = renderReport({ title: "t", version: "0", spectra: [], cosines: [], ab: [], linearity: [input] });
    expect(figures).toBe(1);
    expect(html.match(/row \d: ratio 0.5 at r = 2.7/g)?.length).toBeGreaterThanOrEqual(2);
    expect(() => parseLinearity("{}", "l.json", "--linearity")).toThrow(/--linearity l.json: not a jacsteer linearity result/);
    expect(() => parseLinearity(JSON.stringify({ ...doc, vectors: [{ ...doc.vectors[0], ratios: [1] }] }), "l.json", "--linearity")).toThrow(/vectors\[0\].ratios has 1 values for 3 radii/);
  });

  it("errors: one line naming the flag or file, exit 1, no output file", () => {
    const dir = makeTempDir();
    const sv = join(dir, "sv.safetensors");
    expect(jacsteer(["power-iter", "--tokens", "5,6,7,8,9", "--num-vectors", "2", "--out", sv, "--quiet"]).code).toBe(0);
    expectInputError(["linearity", sv, "--radii", "1,0.5"], /--radii 1,0.5: the values must be increasing/, ".json");
    expectInputError(["linearity", sv, "--radii", "1", "--radius-fracs", "1"], /--radii and --radius-fracs cannot be combined/, ".json");
    expectInputError(["linearity", sv, "--target-ratio", "0"], /--target-ratio 0: must be positive/, ".json");
    expectInputError(["linearity", join(dir, "nope.safetensors")], /FILE .*nope.safetensors: file does not exist/, ".json");
    expectInputError(["linearity", `${sv}:5`], /row 5 is out of range|out of range/, ".json");
    expectInputError(["linearity", sv], /--out .*out.txt: the file name must end in .json/, ".txt");
  }, 120_000);
});
