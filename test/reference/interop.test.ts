// The PyTorch reference against jacsteer's own files and results: it reads a checkpoint written by
// jacsteer's TypeScript writer (BF16, sharded, untied), and jacsteer's CLI and the reference agree on
// the same Jacobian (`jacsteer verify` passes, and the numbers agree directly). Uses the built CLI in
// dist/ (npm test builds first).
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { writeTempCheckpoint, SMALL_SHAPE, type TempCheckpoint } from "../helpers/checkpoints.js";
import { REPO, describeTorch, dot, flatten, qwen3ForwardF64, readSafetensors, relMaxErr, runScript } from "./util.js";

const BIN = join(REPO, "bin", "jacsteer.js");
const TOKENS = [[1, 2, 3, 4, 5, 6, 7], [9, 8, 7, 6, 5]];

describeTorch("PyTorch reference vs jacsteer", () => {
  let ck: TempCheckpoint;
  let tmp = "";
  beforeAll(() => {
    ck = writeTempCheckpoint(SMALL_SHAPE, { dtype: "BF16", seed: 7, shards: 2, tied: false });
    tmp = mkdtempSync(join(tmpdir(), "jacsteer-interop-"));
  });
  afterAll(() => {
    ck?.remove();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it("reads a BF16, sharded, untied checkpoint written by jacsteer like the float64 TypeScript forward", () => {
    expect(existsSync(join(ck.dir, "model.safetensors.index.json"))).toBe(true);
    const dump = join(tmp, "fwd.safetensors");
    runScript("forward_dump.py", ["--model", ck.dir, "--tokens", TOKENS[0].join(","), "--dtype", "float64", "--out", dump]);
    const f = readSafetensors(dump);
    const ref = qwen3ForwardF64(ck.dir, TOKENS[0]);
    for (let l = 0; l <= SMALL_SHAPE.num_hidden_layers; l++) {
      expect(relMaxErr(f.tensors.get(`hidden_states.${l}`)!.data, flatten(ref.hidden[l])), `hidden_states.${l}`).toBeLessThan(1e-6);
    }
    expect(relMaxErr(f.tensors.get("logits")!.data, flatten(ref.logits))).toBeLessThan(1e-6);
  });

  it("jacsteer power-iter agrees with reference/power_iteration.py (float64) and `jacsteer verify` passes", () => {
    if (!existsSync(join(REPO, "dist", "src"))) throw new Error("dist/ is not built: run `npm run build` (npm test does)");
    const refFile = join(tmp, "ref.safetensors"), oursFile = join(tmp, "ours.safetensors");
    const run = ["--model", ck.dir, ...TOKENS.flatMap((t) => ["--tokens", t.join(",")]), "--source-layer", "0", "--target-layer", "1", "--positions", "3", "--num-vectors", "3", "--max-iters", "300"];
    const ref = JSON.parse(runScript("power_iteration.py", [...run, "--tol", "1e-10", "--dtype", "float64", "--out", refFile, "--json"])) as { singular_values: number[] };
    const r = spawnSync(process.execPath, [BIN, "power-iter", ...run, "--tol", "1e-6", "--threads", "1", "--out", oursFile, "--json"], { encoding: "utf8", timeout: 110_000 });
    expect(r.status, r.stderr.slice(-2000)).toBe(0);
    const ours = JSON.parse(r.stdout) as { singular_values: number[] };
    // jacsteer computes in float32: sigmas to ~1e-5, well separated vectors nearly parallel
    for (let i = 0; i < 3; i++) expect(Math.abs(ours.singular_values[i] - ref.singular_values[i]) / ref.singular_values[0], `sigma ${i}`).toBeLessThan(1e-4);
    const A = readSafetensors(oursFile).tensors.get("vectors")!, B = readSafetensors(refFile).tensors.get("vectors")!;
    const d = SMALL_SHAPE.hidden_size;
    const s = ref.singular_values;
    for (let i = 0; i < 3; i++) {
      const gap = Math.min(i > 0 ? s[i - 1] - s[i] : Infinity, i < 2 ? s[i] - s[i + 1] : Infinity) / s[0];
      if (gap < 0.02) continue;
      const a = A.data.slice(i * d, (i + 1) * d), b = B.data.slice(i * d, (i + 1) * d);
      expect(dot(a, b) / Math.sqrt(dot(a, a) * dot(b, b)), `cos ${i} (same sign convention)`).toBeGreaterThan(0.999);
    }
    const v = spawnSync(process.execPath, [BIN, "verify", "--result", oursFile, "--reference", refFile], { encoding: "utf8", timeout: 60_000 });
    expect(v.status, v.stdout + v.stderr).toBe(0);
    expect(v.stdout).toMatch(/PASS/);
  });
});
