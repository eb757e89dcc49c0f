// CAA (src/caa/, `jacsteer caa`): the vector against a direct mean of layer-S activations computed
// with the float64 reference model; the pairs file's two forms and its errors; the CLI on the tiny
// model with examples/caa-pairs.jsonl, tokens checked against the byte-level vocabulary by hand.
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { caaVector, parsePairs } from "../../src/caa/caa.js";
import { decodeVectorFile } from "../../src/io/vector-file.js";
import { openSafetensorsFile } from "../../src/node/safetensors-file.js";
import { openCheckpoint } from "../../src/node/checkpoint.js";
import { makeTempDir, writeTempCheckpoint, SMALL_SHAPE } from "../helpers/checkpoints.js";
import { loadRefWeights, refHiddenStates, type RefWeights } from "../helpers/qwen3-reference.js";
import { loadTestModel, maxRelErr } from "../helpers/model.js";

import { expectInputError, jacsteer } from "../helpers/cli.js";
const cleanup: (() => void)[] = [];
afterAll(() => cleanup.forEach((f) => f()));
function tempDir() {
  const d = makeTempDir("jacsteer-caa-");
  cleanup.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

/** mean over pairs of h_S(pos)[row] - h_S(neg)[row], in float64 with the reference forward. */
function directMean(ref: RefWeights, pairs: { positive: number[]; negative: number[] }[], S: number, position: number): Float64Array {
  const d = ref.cfg.hiddenSize;
  const acc = new Float64Array(d);
  for (const { positive, negative } of pairs) {
    const hp = refHiddenStates(ref, positive, S)[S + 1], hn = refHiddenStates(ref, negative, S)[S + 1];
    const rp = position < 0 ? positive.length + position : position, rn = position < 0 ? negative.length + position : position;
    for (let j = 0; j < d; j++) acc[j] += (hp[rp][j] - hn[rn][j]) / pairs.length;
  }
  return acc;
}

describe("pairs files", () => {
  it("reads both forms and skips blank lines", () => {
    const text = [
      JSON.stringify({ prompt: "p", positive: " yes", negative: " no" }),
      "",
      JSON.stringify({ question: "q?", answer_matching_behavior: " (A)", answer_not_matching_behavior: " (B)", extra: 1 }),
    ].join("\n");
    expect(parsePairs(text, "F")).toEqual([
      { prompt: "p", positive: " yes", negative: " no", form: "completion", line: 1 },
      { prompt: "q?", positive: " (A)", negative: " (B)", form: "ab", line: 3 },
    ]);
  });

  it("errors name the file and line", () => {
    const good = JSON.stringify({ prompt: "p", positive: "a", negative: "b" });
    expect(() => parsePairs(`${good}\n{"prompt": "x",`, "--pairs F")).toThrow(/^--pairs F: line 2 is not valid JSON/);
    expect(() => parsePairs(`${good}\n${JSON.stringify({ prompt: "p", positive: "a" })}`, "--pairs F")).toThrow(/^--pairs F: line 2: missing field "negative"$/);
    expect(() => parsePairs(JSON.stringify({ question: "q", answer_matching_behavior: "A", answer_not_matching_behavior: 2 }), "--pairs F")).toThrow(/line 1: field "answer_not_matching_behavior" must be a string/);
    expect(() => parsePairs("[1, 2]", "--pairs F")).toThrow(/line 1: expected a JSON object/);
    expect(() => parsePairs(JSON.stringify({ text: "x" }), "--pairs F")).toThrow(/line 1: expected \{"prompt", "positive", "negative"\} or \{"question"/);
    expect(() => parsePairs("\n\n", "--pairs F")).toThrow(/--pairs F: no pairs/);
    expect(() => parsePairs(JSON.stringify({ prompt: "p", positive: "", negative: "b" }), "--pairs F")).toThrow(/line 1: empty completion/);
  });
});

describe("caaVector", async () => {
  const ck = writeTempCheckpoint({ ...SMALL_SHAPE, num_hidden_layers: 3 }, { seed: 71 });
  cleanup.push(() => ck.remove());
  const { model, ckpt } = await loadTestModel(ck.dir);
  const ref = loadRefWeights(ckpt.config, ckpt.tensors);
  const pairs = [
    { positive: [1, 2, 3, 4], negative: [1, 2, 3, 9], line: 1 },
    { positive: [7, 7, 8, 20, 21], negative: [7, 7, 30], line: 2 },
    { positive: [5, 6], negative: [5, 6, 11, 12], line: 3 },
  ];

  for (const [S, position] of [[1, -1], [0, -2], [2, 1]] as const) {
    it(`equals the direct float64 mean at layer ${S}, answer position ${position}`, () => {
      const res = caaVector(model, pairs, S, position);
      expect(res.count).toBe(3);
      expect(maxRelErr(res.vector, directMean(ref, pairs, S, position))).toBeLessThan(1e-5);
    });
  }

  it("one pair: exactly that difference; a pair with equal sequences: zero", () => {
    const one = caaVector(model, [pairs[0]], 1);
    expect(maxRelErr(one.vector, directMean(ref, [pairs[0]], 1, -1))).toBeLessThan(1e-5);
    const same = caaVector(model, [{ positive: [1, 2], negative: [1, 2], line: 1 }], 1);
    expect(Array.from(same.vector).every((x) => x === 0)).toBe(true);
  });

  it("an answer position outside a sequence names the flag and the line", () => {
    expect(() => caaVector(model, pairs, 1, -3)).toThrow(/--answer-position -3 is out of range for the positive completion of line 3 \(2 tokens/);
    expect(() => caaVector(model, pairs, 1, 3)).toThrow(/--answer-position 3 is out of range for the negative completion of line 2 \(3 tokens/);
  });
});

describe("jacsteer caa", () => {
  // The bundled tiny model (models/tiny: byte-level vocabulary, chat template), the default --model.
  const tiny = { dir: join(process.cwd(), "models", "tiny") };
  const examples = join(process.cwd(), "examples", "caa-pairs.jsonl");

  it("on the tiny model with examples/caa-pairs.jsonl: the direct mean at the last token, byte-level tokens", () => {
    const out = join(tempDir(), "caa.safetensors");
    const r = jacsteer(["caa", "--pairs", examples, "--source-layer", "1", "--out", out, "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout);
    // Independent tokenization: the tiny model's vocabulary is the 256 bytes, and a completion is
    // appended to its prompt as text.
    const lines = readFileSync(examples, "utf8").split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l));
    const bytes = (t: string) => Array.from(Buffer.from(t, "utf8"));
    const expectedPairs = lines.map((o) =>
      "prompt" in o
        ? { positive: bytes(o.prompt + o.positive), negative: bytes(o.prompt + o.negative) }
        : { positive: bytes(o.question + o.answer_matching_behavior), negative: bytes(o.question + o.answer_not_matching_behavior) },
    );
    expect(s.tokens).toEqual(expectedPairs.map((p) => [p.positive, p.negative]));
    expect(s.count).toBe(lines.length);
    expect(s.forms).toEqual({ completion: 3, ab: 2 });
    const reader = openSafetensorsFile(out);
    const file = decodeVectorFile(reader, out);
    expect(reader.info("vectors")).toMatchObject({ dtype: "F32", shape: [1, 64] });
    expect(file.metadata).toMatchObject({ format: "jacsteer.vectors.v1", method: "caa", source_layer: "1", layer: "1", pair_count: String(lines.length), pairs_file: examples, answer_position: "-1", normalize: "false" });
    const ckpt = openCheckpoint(tiny.dir);
    const expected = directMean(loadRefWeights(ckpt.config, ckpt.tensors), expectedPairs, 1, -1);
    ckpt.close();
    expect(maxRelErr(file.vectors[0], expected)).toBeLessThan(1e-5);
    expect(Math.abs(s.raw_norm - Math.hypot(...expected)) / s.raw_norm).toBeLessThan(1e-5);
  });

  it("--normalize writes a unit vector in the same direction; --chat and --answer-position change what is read", () => {
    const dir = tempDir();
    const plain = join(dir, "a.safetensors"), unit = join(dir, "b.safetensors");
    expect(jacsteer(["caa", "--model", tiny.dir, "--pairs", examples, "--source-layer", "2", "--out", plain]).code).toBe(0);
    const r = jacsteer(["caa", "--model", tiny.dir, "--pairs", examples, "--source-layer", "2", "--normalize", "--out", unit]);
    expect(r.code, r.stderr).toBe(0);
    const a = decodeVectorFile(openSafetensorsFile(plain), plain), b = decodeVectorFile(openSafetensorsFile(unit), unit);
    const na = Math.hypot(...a.vectors[0]);
    expect(Math.abs(Math.hypot(...b.vectors[0]) - 1)).toBeLessThan(1e-6);
    expect(maxRelErr(b.vectors[0], a.vectors[0].map((x) => x / na))).toBeLessThan(1e-6);
    expect(Number(b.metadata.raw_norm)).toBeCloseTo(na, 4);
    const chat = JSON.parse(jacsteer(["caa", "--model", tiny.dir, "--pairs", examples, "--source-layer", "2", "--chat", "--system", "Be brief.", "--answer-position", "-2", "--json"]).stdout);
    expect(chat.tokens[0][0].length).toBeGreaterThan(s0Length(examples) + 20);
    expect(chat.answer_rows[0]).toEqual([chat.tokens[0][0].length - 2, chat.tokens[0][1].length - 2]);
  });

  function s0Length(file: string): number {
    const o = JSON.parse(readFileSync(file, "utf8").split("\n")[0]);
    return Buffer.from(o.prompt + o.positive, "utf8").length;
  }

  it("bad input: exit 1, one line naming the file, line or flag; no file", () => {
    const dir = tempDir();
    const bad = join(dir, "bad.jsonl"), missing = join(dir, "missing.jsonl");
    writeFileSync(bad, `${JSON.stringify({ prompt: "a", positive: "b", negative: "c" })}\n\n{"prompt": oops}\n`);
    writeFileSync(missing, `${JSON.stringify({ question: "a", answer_matching_behavior: "b" })}\n`);
    const m = ["caa", "--model", tiny.dir];
    expectInputError([...m, "--pairs", bad], new RegExp(`--pairs ${bad}: line 3 is not valid JSON`));
    expectInputError([...m, "--pairs", missing], new RegExp(`--pairs ${missing}: line 1: missing field "answer_not_matching_behavior"`));
    expectInputError([...m, "--pairs", join(dir, "nope.jsonl")], /--pairs .*nope\.jsonl: cannot read \(ENOENT\)/);
    expectInputError(m, /--pairs FILE\.jsonl is required/);
    expectInputError([...m, "--pairs", examples, "--answer-position", "-99"], /--answer-position -99 is out of range for the positive completion of line 1/);
    expectInputError([...m, "--pairs", examples, "--source-layer", "4"], /--source-layer 4 is out of range: the model has layers 0..3/);
    expectInputError([...m, "--pairs", examples, "--system", "x"], /--system needs --chat/);
  });
});
