// `jacsteer melbo` end to end (built CLI in dist/): the vector file (CONTRACT.md section 3, method
// "melbo") holds orthogonal vectors of norm R with the run's metadata; progress goes to stderr; the
// summary's final losses are the objective at the written vectors (float64 reference); bad input
// exits 1 with one line naming the flag and leaves no file.
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { decodeVectorFile } from "../../src/io/vector-file.js";
import { openSafetensorsFile } from "../../src/node/safetensors-file.js";
import { openCheckpoint } from "../../src/node/checkpoint.js";
import { makeTempDir, writeTempCheckpoint, SMALL_SHAPE } from "../helpers/checkpoints.js";
import { loadRefWeights, refHiddenStates } from "../helpers/qwen3-reference.js";

import { expectInputError, jacsteer } from "../helpers/cli.js";
import { decodeStateFile, encodeStateFile } from "../../src/io/state-file.js";

const cleanup: (() => void)[] = [];
afterAll(() => cleanup.forEach((f) => f()));
function tempDir() {
  const d = makeTempDir("jacsteer-melbo-");
  cleanup.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

describe("jacsteer melbo", () => {
  const ck = writeTempCheckpoint({ ...SMALL_SHAPE, num_hidden_layers: 3 }, { seed: 61 });
  cleanup.push(() => ck.remove());
  const base = ["melbo", "--model", ck.dir, "--tokens", "1,2,3,4,5,6", "--tokens", "9,8,7,6,5", "--source-layer", "0", "--target-layer", "2"];

  it("writes orthogonal vectors of norm R with metadata; losses rise; final losses are the objective at the vectors", () => {
    const out = join(tempDir(), "m.safetensors");
    const r = jacsteer([...base, "--num-vectors", "3", "--steps", "30", "--lr", "0.02", "--seed", "5", "--out", out, "--json"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/vector 1\/3 step 1\/30: loss /);
    expect(r.stderr).toMatch(/radius R = \S+ \(default: 0\.5 x the median layer-0 norm/);
    const s = JSON.parse(r.stdout);
    const reader = openSafetensorsFile(out);
    const file = decodeVectorFile(reader, out);
    expect(reader.info("vectors")).toMatchObject({ dtype: "F32", shape: [3, SMALL_SHAPE.hidden_size] });
    expect(file.singularValues).toBeUndefined();
    expect(file.metadata).toMatchObject({
      format: "jacsteer.vectors.v1", method: "melbo", source_layer: "0", target_layer: "2", positions: "2", seed: "5",
      p: "2", q: "1", lr: "0.02", steps: "30", weight_decay: "0", betas: "0.9,0.98", amsgrad: "true", radius_default: "true",
    });
    expect(JSON.parse(file.metadata.final_losses)).toEqual(s.final_losses);
    const R = Number(file.metadata.radius);
    expect(R).toBe(s.radius);
    // Default R: half the median layer-0 norm over the 11 positions (float64 reference forward).
    const ckpt = openCheckpoint(ck.dir);
    const ref = loadRefWeights(ckpt.config, ckpt.tensors);
    const norms = [[1, 2, 3, 4, 5, 6], [9, 8, 7, 6, 5]].flatMap((t) => refHiddenStates(ref, t, 0)[1].map((row) => Math.hypot(...row))).sort((a, b) => a - b);
    expect(Math.abs(R - 0.5 * norms[5]) / R).toBeLessThan(1e-5);
    file.vectors.forEach((v, i) => {
      expect(Math.abs(Math.hypot(...v) - R) / R).toBeLessThan(1e-6);
      for (let j = 0; j < i; j++) expect(Math.abs(v.reduce((a, x, k) => a + x * file.vectors[j][k], 0)) / (R * R)).toBeLessThan(1e-6);
      expect(s.final_losses[i]).toBeGreaterThan(s.losses[i][0]);
    });
    // The final loss is the objective at the written vector, recomputed in float64.
    const sv = file.vectors[0];
    let total = 0;
    for (const t of [[1, 2, 3, 4, 5, 6], [9, 8, 7, 6, 5]]) {
      const h0 = refHiddenStates(ref, t, 2)[3];
      const h1 = refHiddenStates(ref, t, 2, { layer: 0, sv })[3];
      for (const row of [t.length - 2, t.length - 1]) total += h1[row].reduce((a, x, j) => a + (x - h0[row][j]) ** 2, 0);
    }
    expect(Math.abs(s.final_losses[0] - total) / total).toBeLessThan(1e-4);
    ckpt.close();
  });

  it("takes --radius, positions, weights and exponents; records them", () => {
    const out = join(tempDir(), "m.safetensors");
    const r = jacsteer([...base, "--num-vectors", "2", "--steps", "5", "--radius", "2.5", "--position-list", "-3,-1", "--position-weights", "1,2", "--p", "3", "--q", "2", "--weight-decay", "0.01", "--out", out]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/2 vector\(s\) of norm 2\.50000, 5 steps each/);
    const file = decodeVectorFile(openSafetensorsFile(out), out);
    expect(file.metadata).toMatchObject({ radius: "2.5", radius_default: "false", positions: "list:-3,-1", position_weights: "1,2", p: "3", q: "2", weight_decay: "0.01" });
    file.vectors.forEach((v) => expect(Math.abs(Math.hypot(...v) - 2.5)).toBeLessThan(1e-5));
  });

  it("runs on the bundled tiny model with text and chat prompts", () => {
    const r = jacsteer(["melbo", "--prompt", "Hello there", "--prompt", "Tell me a story", "--chat", "--num-vectors", "2", "--steps", "10", "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s.tokens[0].length).toBeGreaterThan(20);
    expect(s.final_losses.length).toBe(2);
    expect(r.stderr).toMatch(/using --source-layer 1 --target-layer 3/);
  });

  it("bad input: exit 1, one line naming the flag, no file", () => {
    expectInputError([...base, "--radius", "0"], /--radius 0: must be positive/);
    expectInputError([...base, "--num-vectors", "33"], /--num-vectors 33 exceeds the hidden size 32/);
    expectInputError([...base, "--position-list", "0,9"], /--position-list 0,9: position 9 is out of range for prompt 1 \(6 tokens/);
    expectInputError([...base, "--positions", "6"], /--positions 6 needs at least 6 tokens, but prompt 2 has 5/);
    expectInputError([...base, "--steps", "0"], /--steps 0: must be at least 1/);
    expectInputError([...base, "--p", "x"], /--p x: expected a finite number/);
    expectInputError([...base, "--position-weights", "1,2,3"], /--position-weights 1,2,3: 3 weight\(s\), but --positions 2 selects 2/);
    expectInputError([...base, "--source-layer", "3"], /--source-layer 3 is out of range: the model has layers 0..2/);
    expectInputError(["melbo", "--model", ck.dir, "--source-layer", "0", "--target-layer", "1"], /no prompt given/);
  });

  it("--threads and --weights: bitwise the same file; --json reports them", () => {
    const dir = tempDir();
    const run = (name: string, extra: string[]) => {
      const out = join(dir, name);
      const r = jacsteer([...base, "--num-vectors", "2", "--steps", "6", "--lr", "0.02", "--out", out, "--json", ...extra]);
      expect(r.code, r.stderr).toBe(0);
      return { bytes: readFileSync(out), s: JSON.parse(r.stdout) };
    };
    const one = run("a.safetensors", ["--threads", "1", "--weights", "resident"]);
    const two = run("b.safetensors", ["--threads", "2", "--weights", "stream"]);
    expect(one.s).toMatchObject({ threads: 1, weights: "resident" });
    expect(two.s).toMatchObject({ threads: 2, weights: "stream" });
    expect(two.s.final_losses).toEqual(one.s.final_losses);
    // The metadata records threads and weights, so compare the vectors' bytes.
    const a = decodeVectorFile(openSafetensorsFile(join(dir, "a.safetensors")), "a"), b = decodeVectorFile(openSafetensorsFile(join(dir, "b.safetensors")), "b");
    expect(b.vectors).toEqual(a.vectors);
    expectInputError([...base, "--weights", "some"], /--weights some: expected one of auto, resident, stream/);
  });

  it("--state / --resume: a run resumed from any point gives the uninterrupted run's file bit for bit", () => {
    const dir = tempDir();
    const args = [...base, "--num-vectors", "2", "--steps", "7", "--lr", "0.02", "--threads", "1"];
    const state = join(dir, "run.state"), clean = join(dir, "clean.safetensors");
    const r = jacsteer([...args, "--state", state, "--out", clean]);
    expect(r.code, r.stderr).toBe(0);
    const full = decodeStateFile(readFileSync(state), state);
    expect(full.blocks.length).toBe(2 * 8); // steps + 1 evaluations per vector
    expect(full.dim).toBe(SMALL_SHAPE.hidden_size + 1);
    // What an interruption after k evaluations leaves: the first k of them (the file is replaced whole
    // after each, so a crash cannot leave less).
    for (const k of [0, 3, 8, 11, 16]) {
      const cut = join(dir, `cut${k}.state`), out = join(dir, `out${k}.safetensors`);
      const parts = encodeStateFile({ ...full, blocks: full.blocks.slice(0, k) });
      writeFileSync(cut, Buffer.concat(parts));
      const again = jacsteer([...args, "--resume", cut, "--out", out]);
      expect(again.code, again.stderr).toBe(0);
      expect(again.stderr).toContain(`jacsteer: resuming from ${cut}: replaying its ${k} evaluations`);
      expect(Buffer.compare(readFileSync(out), readFileSync(clean)), `resumed after ${k}`).toBe(0);
      expect(decodeStateFile(readFileSync(cut), cut).blocks.length).toBe(16);
    }
  });

  it("--resume refuses another run's state with one line naming the flag; --state refuses to overwrite", () => {
    const dir = tempDir();
    const args = [...base, "--num-vectors", "1", "--steps", "3"];
    const state = join(dir, "s.state");
    expect(jacsteer([...args, "--state", state]).code).toBe(0);
    expectInputError([...args, "--resume", state, "--lr", "0.01"], /the state file .*s\.state does not belong to this run: --lr differs \(the file's run: 0\.001, this run: 0\.01\)/);
    expectInputError([...args, "--resume", state, "--steps", "4"], /does not belong to this run: --steps differs/);
    expectInputError([...args, "--resume", state, "--radius", "2"], /does not belong to this run: --radius \(or its default from the model\) differs/);
    expectInputError([...args, "--state", state], /--state .*s\.state: the file exists; add --resume/);
    const powerState = join(dir, "p.state");
    expect(jacsteer(["power-iter", "--model", ck.dir, "--tokens", "1,2,3,4,5,6", "--source-layer", "0", "--target-layer", "2", "--num-vectors", "1", "--max-iters", "2", "--state", powerState]).code).toBe(0);
    expectInputError([...args, "--resume", powerState], /does not belong to this run: the vector length differs/);
    expect(readdirSync(dir).sort()).toEqual(["p.state", "s.state"]);
  });

  it("progress lines carry the time left; --quiet silences them", () => {
    const r = jacsteer([...base, "--num-vectors", "1", "--steps", "20"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/vector 1\/1 step 20\/20: loss \S+ \| ETA \d+s\n/);
    const q = jacsteer([...base, "--num-vectors", "1", "--steps", "5", "--quiet"]);
    expect(q.code, q.stderr).toBe(0);
    expect(q.stderr).toBe("");
    expect(existsSync(join(tempDir(), "x"))).toBe(false);
  });
});
