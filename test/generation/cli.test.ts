// `jacsteer generate` end to end (the built CLI in dist/: run `npx tsc -p tsconfig.build.json` first).
// Greedy tokens are checked against the independent float64 reference forward, steered and not.
import { existsSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { writeTempCheckpoint, makeTempDir, SMALL_SHAPE, type TempCheckpoint } from "../helpers/checkpoints.js";
import { loadRefWeights, refHiddenStates, refLogits, type RefWeights } from "../helpers/qwen3-reference.js";
import { randn, rng } from "../helpers/random.js";
import { openCheckpoint } from "../../src/node/checkpoint.js";
import { TINY_MODEL_SHAPE } from "../../src/checkpoint/write-random.js";
import { BUNDLED_TINY, byteLevelCheckpoint, jacsteer, writeVectors, type Fixture } from "./fixtures.js";

const cleanup: (Fixture | TempCheckpoint)[] = [];
afterAll(() => cleanup.forEach((c) => c.remove()));
const work = makeTempDir("jacsteer-gen-cli-");
cleanup.push({ dir: work, remove: () => rmSync(work, { recursive: true, force: true }) });

/** Each greedy token must be a maximiser of the float64 reference logits (to 1e-4 of the logit range: f32 vs f64 near-ties). */
function expectGreedyUnderReference(ref: RefWeights, prompt: number[], tokens: number[], steer?: { layer: number; sv: Float32Array }) {
  const seq = [...prompt];
  for (const [step, tok] of tokens.entries()) {
    const logits = refLogits(ref, [refHiddenStates(ref, seq, undefined, steer).at(-1)!.at(-1)!])[0];
    const max = Math.max(...logits);
    const range = max - Math.min(...logits);
    expect(max - logits[tok], `step ${step}: token ${tok}`).toBeLessThanOrEqual(1e-4 * range);
    seq.push(tok);
  }
}

type GenRow = { vector: string | null; vector_index: number | null; scale: number | null; layer: number | null; prompt: number; prompt_tokens: number[]; tokens: number[]; text: string | null; stop: string };

describe("jacsteer generate on a tiny byte-level model (the bundled one, rebuilt in a temp dir)", () => {
  const tiny = byteLevelCheckpoint();
  cleanup.push(tiny);
  const d = TINY_MODEL_SHAPE.hidden_size;
  const vfile = writeVectors(join(work, "v.safetensors"), [randn(rng(1), d), randn(rng(2), d)], { source_layer: "2" });
  const ckpt = openCheckpoint(tiny.dir);
  const ref = loadRefWeights(ckpt.config, ckpt.tensors);
  ckpt.close();

  it("greedy tokens follow the float64 reference, unsteered and steered (scale * vector at the layer from the file's metadata)", () => {
    const r = jacsteer(["generate", "--model", tiny.dir, "--prompt", "Hi!", "--max-new-tokens", "6", "--vectors", `${vfile}:1`, "--scales", "-4,0,4", "--json"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/--layer 2 \(the vector files' source_layer\)/);
    const rows: GenRow[] = JSON.parse(r.stdout);
    expect(rows.map((x) => [x.vector, x.scale, x.layer])).toEqual([[`${vfile}:1`, -4, 2], [`${vfile}:1`, 0, 2], [`${vfile}:1`, 4, 2]]);
    const v = randn(rng(2), d);
    for (const row of rows) {
      expect(row.prompt_tokens).toEqual([72, 105, 33]);
      expect(row.tokens).toHaveLength(6);
      expect(row.text).toBe(new TextDecoder().decode(Uint8Array.from(row.tokens)));
      expectGreedyUnderReference(ref, row.prompt_tokens, row.tokens, { layer: 2, sv: v.map((x) => x * row.scale!) });
    }
    // scale 0 is the unsteered run
    const plain = jacsteer(["generate", "--model", tiny.dir, "--prompt", "Hi!", "--max-new-tokens", "6", "--json"]);
    expect(plain.code, plain.stderr).toBe(0);
    const p: GenRow[] = JSON.parse(plain.stdout);
    expect(p).toHaveLength(1);
    expect(p[0].vector).toBeNull();
    expect(p[0].tokens).toEqual(rows[1].tokens);
  });

  it("stops at the checkpoint's end-of-sequence id (generation_config.json), which ends the text; --ignore-eos runs on", () => {
    const withEos = byteLevelCheckpoint();
    cleanup.push(withEos);
    const run = (extra: string[]) => {
      const r = jacsteer(["generate", "--model", withEos.dir, "--prompt", "Hi!", "--max-new-tokens", "8", ...extra]);
      expect(r.code, r.stderr).toBe(0);
      return r;
    };
    const free: GenRow = JSON.parse(run(["--json"]).stdout)[0];
    const eos = free.tokens[3];
    const cut = free.tokens.indexOf(eos);
    writeFileSync(join(withEos.dir, "generation_config.json"), JSON.stringify({ eos_token_id: [eos] }));
    const stopped: GenRow = JSON.parse(run(["--json"]).stdout)[0];
    expect(stopped.stop).toBe("eos");
    expect(stopped.tokens).toEqual(free.tokens.slice(0, cut + 1));
    expect(stopped.text).toBe(new TextDecoder().decode(Uint8Array.from(free.tokens.slice(0, cut))));
    expect(run([]).stdout).toBe(`=== unsteered ===\n${stopped.text}\n\n`);
    expect(JSON.parse(run(["--json", "--ignore-eos"]).stdout)[0].tokens).toEqual(free.tokens);
  });

  it("streams labelled text per (vector, scale, prompt) combination; --layer overrides; chat prompts", () => {
    const r = jacsteer(["generate", "--model", tiny.dir, "--prompt", "ab", "--prompt", "cd", "--chat", "--max-new-tokens", "4", "--vectors", vfile, "--scales", "-3,3", "--layer", "0"]);
    expect(r.code, r.stderr).toBe(0);
    const labels = r.stdout.split("\n").filter((l) => l.startsWith("=== "));
    const expected: string[] = [];
    for (const row of [0, 1]) for (const s of [-3, 3]) for (const p of [0, 1]) expected.push(`=== vector ${row} (${vfile}:${row}) scale ${s}, prompt ${p} ===`);
    expect(labels).toEqual(expected);
    // one warning per vector used away from its file's source_layer, and one for the missing scale 0
    const warnings = r.stderr.split("\n").filter((l) => l.startsWith("warning: "));
    expect(warnings).toEqual([
      `warning: ${vfile}:0 was computed at source_layer 2 (its file's metadata) but is added at layer 0 (--layer)`,
      `warning: ${vfile}:1 was computed at source_layer 2 (its file's metadata) but is added at layer 0 (--layer)`,
      "warning: --scales -3,3 has no 0: there is no unsteered generation to compare the steered ones with (add 0, e.g. --scales -3,0,3)",
    ]);
    const j = jacsteer(["generate", "--model", tiny.dir, "--prompt", "ab", "--prompt", "cd", "--chat", "--max-new-tokens", "4", "--vectors", vfile, "--scales", "-3,3", "--layer", "0", "--json"]);
    const rows: GenRow[] = JSON.parse(j.stdout);
    // the streamed text of each block is the JSON text
    const blocks = r.stdout.split(/^=== .* ===\n/m).slice(1).map((b) => b.replace(/\n\n$/, ""));
    expect(blocks).toEqual(rows.map((x) => x.text));
    const chatPrompt = new TextDecoder().decode(Uint8Array.from(rows[0].prompt_tokens));
    expect(chatPrompt).toBe("<|im_start|>user\nab<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
    for (const row of rows) expectGreedyUnderReference(ref, row.prompt_tokens, row.tokens, { layer: 0, sv: randn(rng(row.vector_index! + 1), d).map((x) => x * row.scale!) });
  });

  it.skipIf(!existsSync(join(BUNDLED_TINY, "config.json")))("runs on the bundled tiny model with no --model", () => {
    const r = jacsteer(["generate", "--prompt", "Hello", "--max-new-tokens", "3", "--json"]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)[0].tokens).toHaveLength(3);
  });
  if (!existsSync(join(BUNDLED_TINY, "config.json"))) process.stderr.write(`\n!!!!! ${BUNDLED_TINY} has no weights yet (node dist/scripts/make-tiny-model.js): the no---model test is skipped\n`);
});

describe("jacsteer generate on a temp checkpoint without a tokenizer", () => {
  const ck = writeTempCheckpoint(SMALL_SHAPE, { seed: 9 });
  cleanup.push(ck);
  const vfile = writeVectors(join(work, "small.safetensors"), [randn(rng(5), SMALL_SHAPE.hidden_size)]);
  const wrongDim = writeVectors(join(work, "wrong.safetensors"), [randn(rng(5), 7)]);
  const base = ["generate", "--model", ck.dir, "--tokens", "1,2,3,4"];

  it("prints token ids, follows the reference, samples reproducibly by seed", () => {
    const r = jacsteer([...base, "--max-new-tokens", "5"]);
    expect(r.code, r.stderr).toBe(0);
    const ids = r.stdout.split("\n")[1].split(" ").map(Number);
    expect(ids).toHaveLength(5);
    const ckpt = openCheckpoint(ck.dir);
    expectGreedyUnderReference(loadRefWeights(ckpt.config, ckpt.tensors), [1, 2, 3, 4], ids);
    ckpt.close();
    const sample = (seed: string) => JSON.parse(jacsteer([...base, "--max-new-tokens", "16", "--temperature", "50", "--top-p", "0.95", "--seed", seed, "--json"]).stdout)[0];
    const a = sample("1"), b = sample("1"), c = sample("2");
    expect(a.text).toBeNull();
    expect(b.tokens).toEqual(a.tokens);
    expect(c.tokens).not.toEqual(a.tokens);
    // a big scale changes a greedy generation
    const steered = JSON.parse(jacsteer([...base, "--max-new-tokens", "5", "--vectors", vfile, "--scales", "0,60", "--layer", "0", "--json"]).stdout);
    expect(steered[0].tokens).toEqual(ids);
    expect(steered[1].tokens).not.toEqual(ids);
  });

  const bad: [string, string[], RegExp][] = [
    ["bad --scales", ["--vectors", vfile, "--scales", "1,,2"], /--scales 1,,2: expected comma-separated numbers/],
    ["non-numeric --scales", ["--vectors", vfile, "--scales", "-1,x"], /--scales -1,x/],
    ["repeated scale", ["--vectors", vfile, "--scales", "1,1"], /--scales 1,1: 1 is given twice/],
    ["vector of the wrong dimension", ["--vectors", wrongDim, "--scales", "1"], /--vectors .*wrong\.safetensors: vectors have length 7, the model's hidden size is 32/],
    ["missing vector file", ["--vectors", join(work, "nope.safetensors"), "--scales", "1"], /--vectors .*nope\.safetensors: file .* does not exist/],
    ["row out of range", ["--vectors", `${vfile}:3`, "--scales", "1"], /row 3 out of range/],
    ["--vectors without --scales", ["--vectors", vfile], /--vectors needs --scales/],
    ["--scales without --vectors", ["--scales", "1"], /--scales needs --vectors/],
    ["--layer out of range", ["--vectors", vfile, "--scales", "1", "--layer", "2"], /--layer 2 is out of range: the model has layers 0\.\.1/],
    ["negative temperature", ["--temperature", "-1"], /--temperature -1/],
    ["top-p out of range", ["--temperature", "1", "--top-p", "1.5"], /--top-p 1\.5: must be in \(0, 1\]/],
    ["token outside the vocabulary", ["--tokens", "1,99"], /token id 99 is outside the vocabulary \[0, 50\)/],
    ["missing model", ["--model", join(work, "no-model")], /no-model/],
    ["bad --weights", ["--weights", "gpu"], /--weights gpu: expected one of auto, resident, stream/],
  ];
  for (const [name, extra, msg] of bad) {
    it(`exit 1 with one line: ${name}`, () => {
      const args = extra[0] === "--model" ? ["generate", ...extra, "--tokens", "1"] : [...base, ...extra];
      const r = jacsteer(args);
      expect(r.code, r.stderr).toBe(1);
      const lines = r.stderr.trim().split("\n");
      expect(lines, r.stderr).toHaveLength(1);
      expect(lines[0]).toMatch(/^jacsteer: error: /);
      expect(lines[0]).toMatch(msg);
      expect(r.stdout).toBe("");
    });
  }

  it("--help lists the flags", () => {
    const r = jacsteer(["generate", "--help"]);
    expect(r.code).toBe(0);
    for (const flag of ["--vectors", "--scales", "--layer", "--max-new-tokens", "--temperature", "--top-p", "--seed", "--chat", "--json", "--threads", "--weights"]) expect(r.stdout).toContain(flag);
  });

  it("the same tokens for --threads 1 (resident) and --threads 2 (streamed weights), greedy and sampled", () => {
    for (const sampling of [[], ["--temperature", "1.2", "--seed", "5"]]) {
      const run = (extra: string[]) => {
        const r = jacsteer([...base, "--tokens", "7,8", "--max-new-tokens", "5", "--json", ...sampling, ...extra]);
        expect(r.code, r.stderr).toBe(0);
        return { rows: (JSON.parse(r.stdout) as GenRow[]).map((x) => x.tokens), stderr: r.stderr };
      };
      const one = run(["--threads", "1", "--weights", "resident"]);
      const two = run(["--threads", "2", "--weights", "stream"]);
      expect(two.rows).toEqual(one.rows);
      expect(two.stderr).toMatch(/weights streamed from the checkpoint every pass/);
      expect(two.stderr).toMatch(/threads 2/);
    }
  });
});
