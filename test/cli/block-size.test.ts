// power-iter --block-size and the automatic block size: the block size changes how many products block
// Lanczos needs, never what it converges to; it is recorded (file metadata, --json, the --state identity).
import { join } from "node:path";
import { rmSync } from "node:fs";
import { afterAll, describe, expect, it } from "vitest";
import { writeTempCheckpoint, makeTempDir, SMALL_SHAPE, type TempCheckpoint } from "../helpers/checkpoints.js";
import { openSafetensorsFile } from "../../src/node/safetensors-file.js";
import { decodeVectorFile } from "../../src/io/vector-file.js";
import { explicitJacobian, loadTestModel } from "../helpers/model.js";
import { SteeringJacobian } from "../../src/jacobian/steering-jacobian.js";
import { svd } from "../../src/linalg/dense.js";
import { autoBlockSize, AUTO_BLOCK_ROWS } from "../../src/engine/steering-engine.js";
import { expectInputError, jacsteer } from "../helpers/cli.js";

const cleanup: TempCheckpoint[] = [];
const dirs: string[] = [];
afterAll(() => {
  cleanup.forEach((c) => c.remove());
  dirs.forEach((d) => rmSync(d, { recursive: true, force: true }));
});

describe("autoBlockSize", () => {
  const prompt = (n: number) => Array.from({ length: n }, (_, i) => i);
  it("gives the fewest vectors whose rows reach AUTO_BLOCK_ROWS, at least 2 and at most numVectors", () => {
    expect(AUTO_BLOCK_ROWS).toBe(192);
    expect(autoBlockSize(12, [prompt(48)])).toBe(4); // 192 rows exactly
    expect(autoBlockSize(12, [prompt(47)])).toBe(5); // 188 rows are not enough
    expect(autoBlockSize(12, [prompt(30), prompt(20)])).toBe(4); // rows are summed over prompts
    expect(autoBlockSize(12, [prompt(200)])).toBe(2); // never below 2
    expect(autoBlockSize(8, [prompt(1)])).toBe(8); // never above numVectors
    expect(autoBlockSize(1, [prompt(200)])).toBe(1);
  });
});

describe("power-iter --block-size", () => {
  const ck = writeTempCheckpoint(SMALL_SHAPE, { seed: 33 });
  cleanup.push(ck);
  const dir = makeTempDir("jacsteer-block-");
  dirs.push(dir);
  const base = ["power-iter", "--model", ck.dir, "--tokens", "1,2,3,4,5,6", "--tokens", "7,8,9,10", "--source-layer", "0", "--target-layer", "1", "--positions", "3", "--num-vectors", "4", "--tol", "1e-6"];

  it("blocks of 1, 2 and 4 converge to the exact SVD's singular values; the block size is in the file, --json and the log", async () => {
    const { model } = await loadTestModel(ck.dir);
    const J = new SteeringJacobian(model, [[1, 2, 3, 4, 5, 6], [7, 8, 9, 10]], { sourceLayer: 0, targetLayer: 1, positions: 3 });
    const exact = svd(explicitJacobian(J), J.inputDim).values;
    const products: number[] = [];
    for (const b of [1, 2, 4]) {
      const out = join(dir, `b${b}.safetensors`);
      const r = jacsteer([...base, "--block-size", String(b), "--out", out, "--json"]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toContain(`method lanczos (block size ${b});`);
      const summary = JSON.parse(r.stdout);
      expect(summary.block_size).toBe(b);
      expect(summary.converged).toBe(true);
      products.push(summary.products);
      summary.singular_values.forEach((s: number, i: number) => expect(Math.abs(s - exact[i]) / exact[i]).toBeLessThan(1e-5));
      const reader = openSafetensorsFile(out);
      expect(decodeVectorFile(reader, out).metadata.block_size).toBe(String(b));
      reader.close();
    }
    // The blocks really were of different sizes: every product count is a multiple of its block size
    // and they are not all equal.
    expect(new Set(products).size).toBeGreaterThan(1);
  });

  it("without the flag the block size is chosen from the prompts' rows and said to be auto", () => {
    const r = jacsteer([...base, "--json"]);
    expect(r.code, r.stderr).toBe(0);
    // 10 rows in all: ceil(192 / 10) = 20 vectors, capped at --num-vectors 4.
    expect(r.stderr).toContain("method lanczos (block size 4, auto);");
    expect(JSON.parse(r.stdout).block_size).toBe(4);
  });

  it("refuses a block larger than --num-vectors, 0, and --block-size with --method power", () => {
    expectInputError([...base, "--block-size", "5"], /--block-size 5: must not exceed --num-vectors 4/);
    expectInputError([...base, "--block-size", "0"], /--block-size/);
    expectInputError([...base, "--method", "power", "--block-size", "2"], /--block-size applies to --method lanczos/);
  });

  it("a --resume with another --block-size is refused, naming --block-size", () => {
    const state = join(dir, "s.state");
    const r = jacsteer([...base, "--block-size", "2", "--max-iters", "2", "--state", state]);
    expect(r.code, r.stderr).toBe(0);
    expectInputError([...base, "--block-size", "1", "--resume", state], /--block-size/);
  });
});
