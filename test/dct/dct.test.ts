// Exponential DCT (src/dct/dct.ts) against the same algorithm written again in float64 PyTorch
// (test/python/dct_reference.py, on reference/qwen3_minimal.py): the calibrated radius and every value
// of the objective history to 1e-4 relative, the final directions; a run whose target ratio is off by
// 5e-4 lands outside that tolerance (the check can fail). Then the algorithm's own invariants, the
// calibration's errors, and the CLI (--json, the vector file, threads bitwise, clear errors).
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { SteeringEngine } from "../../src/engine/steering-engine.js";
import { DCT_DEFAULTS, FTOL, MAX_BRACKET_STEPS, MAX_CALIBRATION_EVALS, XTOL, calibrateRadius, exponentialDct, seededInit, type DctResult } from "../../src/dct/dct.js";
import { resolvePositions, type Positions } from "../../src/jacobian/positions.js";
import { SMALL_SHAPE, makeTempDir, writeTempCheckpoint, type TempCheckpoint } from "../helpers/checkpoints.js";
import { loadTestModel } from "../helpers/model.js";
import { itWithTorch, runPython } from "../helpers/torch.js";
import { expectInputError, jacsteer } from "../helpers/cli.js";
import { openSafetensorsFile } from "../../src/node/safetensors-file.js";
import { decodeVectorFile } from "../../src/io/vector-file.js";

const cleanup: TempCheckpoint[] = [];
const engines: SteeringEngine[] = [];
afterAll(async () => {
  for (const e of engines) await e.close();
  cleanup.forEach((c) => c.remove());
});

const prompts = [[3, 1, 4, 1, 5, 9, 2], [2, 7, 1, 8, 2, 8]];
const S = 0, T = 2;
const positions: Positions = { kind: "list", indices: [-2, -1, 3], weights: [1, 1.5, 0.5] };
const m = 3, iterations = 4, nCal = 6, seed = 11;

describe("exponential DCT", async () => {
  const ck = writeTempCheckpoint({ ...SMALL_SHAPE, num_hidden_layers: 3 }, { seed: 21, dtype: "F32" });
  cleanup.push(ck);
  const { rt, ckpt } = await loadTestModel(ck.dir, { head: false });
  const engine = await SteeringEngine.create(rt, ckpt.config, ckpt.tensors, prompts, { sourceLayer: S, targetLayer: T, positions });
  engines.push(engine);
  const d = engine.inputDim;
  const init = seededInit(seed, d, engine.outputDim, m, nCal);
  const radiusStart = 0.5;
  const result: DctResult = await exponentialDct(engine, { numVectors: m, iterations, targetRatio: 0.5, calibrationVectors: nCal, seed, radiusStart, init });

  const reference = (overrides: Record<string, unknown> = {}) => {
    const rows = prompts.map((p, i) => resolvePositions(positions, p.length, `prompt ${i + 1}`).rows);
    const input = {
      model: ck.dir, prompts, source_layer: S, target_layer: T, rows, weights: (positions as { weights: readonly number[] }).weights,
      calibration: init.calibration.map((w) => Array.from(w)), V: init.V.map((v) => Array.from(v)), U: init.U.map((u) => Array.from(u)),
      iterations, target_ratio: 0.5, radius_start: radiusStart, radius: null,
      xtol: XTOL, ftol: FTOL, max_bracket: MAX_BRACKET_STEPS, max_evals: MAX_CALIBRATION_EVALS, ...overrides,
    };
    return JSON.parse(runPython(["test/python/dct_reference.py"], { input: JSON.stringify(input) })) as { radius: number; ratio: number; objective: number[]; terms: number[]; V: number[][] };
  };
  const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);

  itWithTorch("calibrated radius and objective history match float64 PyTorch to 1e-4; a target ratio off by 5e-4 does not", () => {
    const ref = reference();
    expect(rel(result.radius, ref.radius)).toBeLessThan(1e-4);
    expect(result.objective.length).toBe(iterations + 1);
    result.objective.forEach((x, i) => expect(rel(x, ref.objective[i]!), `objective ${i}: ${x} vs ${ref.objective[i]}`).toBeLessThan(1e-4));
    // final directions: our rows are sorted by term; match each to the reference's factor
    result.order.forEach((k, i) => {
      const v = result.vectors[i]!, w = ref.V[k]!;
      expect(Math.abs(v.reduce((s, x, j) => s + x * w[j]!, 0))).toBeGreaterThan(1 - 1e-6);
      expect(rel(result.terms[i]!, ref.terms[k]!)).toBeLessThan(1e-4);
    });
    const off = reference({ target_ratio: 0.5 * (1 + 5e-4), iterations: 0 });
    expect(rel(result.radius, off.radius)).toBeGreaterThan(1e-4);
  }, 600_000);

  itWithTorch("with a given radius: the same objective history as PyTorch", async () => {
    const R = 1.3;
    const ours = await exponentialDct(engine, { numVectors: m, iterations, targetRatio: 0.5, calibrationVectors: nCal, seed, radiusStart, init, radius: R });
    const ref = reference({ radius: R });
    expect(ours.calibration).toBeNull();
    ours.objective.forEach((x, i) => expect(rel(x, ref.objective[i]!)).toBeLessThan(1e-4));
  }, 600_000);

  it("invariants: the ratio at the calibrated radius is the target, unit orthonormal rows sorted by term, the pass count", async () => {
    expect(Math.abs(result.calibration!.ratio - 0.5)).toBeLessThan(1e-5);
    const ev = result.calibration!.evaluations;
    expect(ev.at(-1)!.radius).toBeCloseTo(result.radius, 12);
    for (let i = 0; i < m; i++) {
      for (let j = 0; j <= i; j++) {
        const c = result.vectors[i]!.reduce((s, x, k) => s + x * result.vectors[j]![k]!, 0);
        expect(Math.abs(c - (i === j ? 1 : 0))).toBeLessThan(1e-12);
      }
    }
    for (let i = 1; i < m; i++) expect(result.terms[i]!).toBeLessThanOrEqual(result.terms[i - 1]!);
    expect(result.passes).toEqual({ jv: 1, calibration: ev.length, iterations, final: 1 });
    // the same seed reproduces the run bit for bit
    const again = await exponentialDct(engine, { numVectors: m, iterations, targetRatio: 0.5, calibrationVectors: nCal, seed, radiusStart });
    expect(again.vectors).toEqual(result.vectors);
    expect(again.objective).toEqual(result.objective);
  });

  it("calibration: the same root from a start far below or far above; S = T (a linear map) is one clear error", async () => {
    const lo = await calibrateRadius(engine, init.calibration, 0.5, 1e-3);
    const hi = await calibrateRadius(engine, init.calibration, 0.5, 1e3);
    expect(rel(lo.radius, result.radius)).toBeLessThan(1e-5);
    expect(rel(hi.radius, result.radius)).toBeLessThan(1e-5);
    const same = await SteeringEngine.create(rt, ckpt.config, ckpt.tensors, prompts, { sourceLayer: 1, targetLayer: 1, positions: 2 });
    engines.push(same);
    await expect(calibrateRadius(same, init.calibration, 0.5, 1)).rejects.toThrow(/calibration: the ratio stays below 0.5 up to R = .*: the map is still linear; give --radius/);
  });
});

describe("jacsteer dct (CLI)", () => {
  const tiny = ["--tokens", "5,6,7,8,9,10,11,12", "--source-layer", "1", "--target-layer", "3", "--num-vectors", "3", "--iterations", "3", "--calibration-vectors", "4"];

  it("--json, the vector file, and bitwise the same on 1 and 2 threads", async () => {
    const dir = makeTempDir();
    const a = join(dir, "a.safetensors"), b = join(dir, "b.safetensors");
    const r1 = jacsteer(["dct", ...tiny, "--threads", "1", "--out", a, "--json"]);
    expect(r1.code, r1.stderr).toBe(0);
    const s = JSON.parse(r1.stdout);
    expect(s.objective.length).toBe(4);
    expect(s.radius_calibrated).toBe(true);
    expect(Math.abs(s.calibration.ratio - DCT_DEFAULTS.targetRatio)).toBeLessThan(1e-4);
    expect(r1.stderr).toMatch(/dct: iteration 3\/3: objective .* ETA/);
    const r2 = jacsteer(["dct", ...tiny, "--threads", "2", "--out", b, "--quiet"]);
    expect(r2.code, r2.stderr).toBe(0);
    expect(r2.stderr).not.toMatch(/^(dct|engine|jacsteer):/m); // --quiet: warnings only
    const read = (f: string) => decodeVectorFile(openSafetensorsFile(f), f);
    const va = read(a), vb = read(b);
    expect(va.metadata.method).toBe("dct");
    expect(JSON.parse(va.metadata.objective!)).toEqual(s.objective);
    expect(Number(va.metadata.radius)).toBe(s.radius);
    expect(vb.vectors).toEqual(va.vectors);
  }, 120_000);

  it("errors: one line naming the flag, exit 1, no output file", () => {
    expectInputError(["dct", ...tiny, "--radius", "1", "--radius-start", "2"], /--radius skips the calibration; --radius-start/);
    expectInputError(["dct", ...tiny, "--num-vectors", "999"], /--num-vectors 999 exceeds the hidden size 64/);
    expectInputError(["dct", ...tiny, "--radius", "-1"], /--radius -1: must be positive/);
    expectInputError(["dct", ...tiny, "--source-layer", "3", "--target-layer", "3"], /calibration: the ratio stays below 0.5 .*give --radius/);
    expectInputError(["dct", ...tiny], /--out .*out.bin: the file name must end in .safetensors/, ".bin");
  }, 120_000);
});
