// The library's melbo (src/api/melbo.ts), which `jacsteer melbo` is now a thin layer over: bit for bit
// the MELBO building blocks assembled by hand (the independent path, since the CLI is the same code),
// and cancellable by a timer mid-run (AbortSignal.timeout), the command as well, leaving no --out file.
// (test/api/api.test.ts has the CLI's file bit for bit and the abort from onProgress.)
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as lib from "../../src/index.js";
import { openCheckpoint, type Checkpoint } from "../../src/node/checkpoint.js";
import { createNodeRuntime } from "../../src/node/runtime.js";
import { SteeringEngine } from "../../src/engine/steering-engine.js";
import { EngineMelboObjective } from "../../src/melbo/engine-objective.js";
import { MELBO_ADAMW, defaultRadius, trainMelboAsync } from "../../src/melbo/melbo.js";
import { melbo as melboCommand } from "../../src/cli/melbo.js";
import { startCommand } from "../../src/cli/output.js";
import { decodeStateFile } from "../../src/io/state-file.js";
import type { Runtime } from "../../src/runtime/runtime.js";

const TINY = join(process.cwd(), "models", "tiny");
const PROMPT = [5, 17, 33, 2, 40, 9, 11];
const SITE = { sourceLayer: 1, targetLayer: 2 };

let rt: Runtime;
let ckpt: Checkpoint;
let dir: string;
beforeAll(async () => {
  rt = await createNodeRuntime();
  ckpt = openCheckpoint(TINY);
  dir = mkdtempSync(join(tmpdir(), "jacsteer-api-melbo-"));
});
afterAll(() => {
  ckpt.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("melbo", () => {
  it("bit for bit the building blocks assembled by hand: engine objective, default radius, trainMelboAsync", async () => {
    const r = await lib.melbo({ model: ckpt, runtime: rt, prompts: [PROMPT], ...SITE, numVectors: 2, steps: 6 });
    const engine = await SteeringEngine.create(rt, ckpt.config, ckpt.tensors, [PROMPT], { ...SITE, positions: 2 }, {});
    try {
      const objective = new EngineMelboObjective(engine, { p: 2, q: 1 });
      const radius = defaultRadius(objective.sourceNorms());
      expect(r.radius).toBe(radius);
      const direct = await trainMelboAsync(ckpt.config.hiddenSize, (q) => objective.evaluate(q), { numVectors: 2, steps: 6, radius, seed: 0, adam: MELBO_ADAMW });
      expect(r.losses).toEqual(direct.losses);
      expect(r.finalLosses).toEqual(direct.finalLosses);
      direct.vectors.forEach((v, i) => expect(Array.from(r.vectors[i]!)).toEqual(Array.from(Float32Array.from(v))));
    } finally {
      await engine.close();
    }
  });

  it("a timer's abort (AbortSignal.timeout) stops a long run mid-way: AbortError, the heap as before; the command writes no --out file", async () => {
    // 2 x 200000 steps take many seconds (0.01-0.1 ms a step on the tiny model). With S = T no layer
    // runs between the steps, so nothing in the engine leaves the microtask queue: without the call's
    // own turn of the event loop before each step the timer could only fire once they are all done,
    // and the call would resolve.
    const total = 2 * 200000;
    for (const site of [SITE, { sourceLayer: 2, targetLayer: 2 }]) {
      const mark = rt.heap.mark();
      let steps = 0;
      const run = lib.melbo({ model: ckpt, runtime: rt, prompts: [PROMPT], ...site, numVectors: 2, steps: total / 2, signal: AbortSignal.timeout(1000), onProgress: () => steps++ });
      await expect(run).rejects.toBeInstanceOf(lib.AbortError);
      await expect(run).rejects.toThrow(/aborted.*timeout/);
      expect(steps, JSON.stringify(site)).toBeGreaterThan(0);
      expect(steps, JSON.stringify(site)).toBeLessThan(total);
      expect(rt.heap.mark()).toBe(mark);
    }

    // The command, run in-process with a signal: the same abort, no --out file; its --state file
    // holds the evaluations done so far (a valid state to resume from).
    startCommand({ quiet: true });
    const out = join(dir, "aborted.safetensors"), state = join(dir, "aborted.state");
    const args = ["--model", TINY, "--tokens", PROMPT.join(","), "--source-layer", "1", "--target-layer", "2", "--num-vectors", "2", "--steps", String(total / 2), "--threads", "1", "--state", state, "--out", out];
    await expect(melboCommand(args, { signal: AbortSignal.timeout(1000) })).rejects.toBeInstanceOf(lib.AbortError);
    expect(existsSync(out)).toBe(false);
    const saved = decodeStateFile(readFileSync(state), state).blocks.length;
    expect(saved).toBeGreaterThan(0);
    expect(saved).toBeLessThan(total + 2);
  });
});
