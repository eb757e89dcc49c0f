// CAA (src/caa/, `jacsteer caa`): the vector against a direct mean of layer-S activations computed
// with the float64 reference model; the CLI on the tiny model with examples/caa-pairs.jsonl, the
// Anthropic A/B fixture, the JSON array example and the research line's combined file, tokens checked
// against the byte-level vocabulary by hand; the answer token read (the letter, not ")"), the first
// item shown, the split, the warnings, and bad input.
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { caaVector, caaVectorBatched } from "../../src/caa/caa.js";
import { ForwardModel } from "../../src/engine/forward.js";
import { createParallelGemm } from "../../src/node/thread-pool.js";
import { decodeVectorFile } from "../../src/io/vector-file.js";
import { openSafetensorsFile } from "../../src/node/safetensors-file.js";
import { openCheckpoint } from "../../src/node/checkpoint.js";
import { makeTempDir, writeTempCheckpoint, SMALL_SHAPE } from "../helpers/checkpoints.js";
import { loadRefWeights, refHiddenStates, type RefWeights } from "../helpers/qwen3-reference.js";
import { loadTestModel, maxRelErr } from "../helpers/model.js";

import { expectInputError, jacsteer } from "../helpers/cli.js";
const FIX = join(process.cwd(), "test", "evaluation", "fixtures");
const bytes = (t: string) => Array.from(Buffer.from(t, "utf8"));
const cleanup: (() => void)[] = [];
afterAll(() => cleanup.forEach((f) => f()));
function tempDir() {
  const d = makeTempDir("jacsteer-caa-");
  cleanup.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

/**
 * mean over pairs of h_S(pos)[row] - h_S(neg)[row], in float64 with the reference forward; the row is
 * the pair's own `rows` when given, else `position` (negative: from the end).
 */
function directMean(ref: RefWeights, pairs: { positive: number[]; negative: number[]; rows?: [number, number] }[], S: number, position: number): Float64Array {
  const d = ref.cfg.hiddenSize;
  const acc = new Float64Array(d);
  for (const { positive, negative, rows } of pairs) {
    const hp = refHiddenStates(ref, positive, S)[S + 1], hn = refHiddenStates(ref, negative, S)[S + 1];
    const [rp, rn] = rows ?? [position < 0 ? positive.length + position : position, position < 0 ? negative.length + position : position];
    for (let j = 0; j < d; j++) acc[j] += (hp[rp][j] - hn[rn][j]) / pairs.length;
  }
  return acc;
}

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

describe("caaVectorBatched (the engine's forward, batched over pairs)", async () => {
  const ck = writeTempCheckpoint({ ...SMALL_SHAPE, num_hidden_layers: 3 }, { seed: 72, dtype: "BF16" });
  cleanup.push(() => ck.remove());
  const { model, ckpt, rt } = await loadTestModel(ck.dir);
  const ref = loadRefWeights(ckpt.config, ckpt.tensors);
  const pairs = [
    { positive: [1, 2, 3, 4], negative: [1, 2, 3, 9], line: 1 },
    { positive: [7, 7, 8, 20, 21], negative: [7, 7, 30], line: 2 },
    { positive: [5, 6], negative: [5, 6, 11, 12], line: 3, rows: [1, 3] as [number, number] },
    { positive: [40, 41, 42, 43, 44, 45, 46], negative: [40, 41, 42, 43, 44, 45, 47], line: 4 },
  ];
  const forward = async (threads: number, layers: number) =>
    ForwardModel.create(rt, ckpt.config, ckpt.tensors, { gemm: await createParallelGemm(rt, threads, { minParallelFlops: 0 }), layers });

  for (const S of [0, 2]) {
    it(`layer ${S}: the reference caaVector's vector and median norm (float32 tolerance), the float64 mean; bitwise the same for 1, 2, 3 threads and any batch size`, async () => {
      const want = caaVector(model, pairs, S, -2);
      const fm = await forward(1, S + 1);
      const got = await caaVectorBatched(fm, pairs, S, -2);
      expect(got.rows).toEqual(want.rows);
      expect(got.count).toBe(4);
      expect(maxRelErr(got.vector, want.vector)).toBeLessThan(1e-5);
      expect(maxRelErr(got.vector, directMean(ref, pairs, S, -2))).toBeLessThan(1e-5);
      expect(Math.abs(got.medianNorm - want.medianNorm)).toBeLessThan(1e-5 * want.medianNorm);
      for (const bytes of [1, 3 * fm.sequenceFloats(5) * 4]) expect(await caaVectorBatched(fm, pairs, S, -2, bytes)).toEqual(got);
      await fm.close();
      for (const t of [2, 3]) {
        const fmt = await forward(t, S + 1);
        expect(fmt.threads).toBe(t);
        expect(await caaVectorBatched(fmt, pairs, S, -2, 2 * fmt.sequenceFloats(5) * 4)).toEqual(got);
        await fmt.close();
      }
    });
  }

  it("the same messages as the reference for bad positions; a layer past the forward's is refused", async () => {
    const fm = await forward(1, 2);
    await expect(caaVectorBatched(fm, pairs, 1, 4)).rejects.toThrow(/--answer-position 4 is out of range for the positive completion of line 1 \(4 tokens/);
    await expect(caaVectorBatched(fm, pairs, 2, -1)).rejects.toThrow(/runs layers 0\.\.1, not 2/);
    await expect(caaVectorBatched(fm, [{ positive: [1, 999], negative: [1, 2], line: 7 }], 1)).rejects.toThrow(/line 7 \(positive\): token id 999 is outside the vocabulary/);
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
    // A completion is read at its last token; an A/B answer " (B)" at its letter, one before the ")".
    const expectedPairs = lines.map((o) => {
      if ("prompt" in o) {
        const positive = bytes(o.prompt + o.positive), negative = bytes(o.prompt + o.negative);
        return { positive, negative, rows: [positive.length - 1, negative.length - 1] as [number, number] };
      }
      const positive = bytes(o.question + o.answer_matching_behavior), negative = bytes(o.question + o.answer_not_matching_behavior);
      return { positive, negative, rows: [positive.length - 2, negative.length - 2] as [number, number] };
    });
    expect(s.tokens).toEqual(expectedPairs.map((p) => [p.positive, p.negative]));
    expect(s.answer_rows).toEqual(expectedPairs.map((p) => p.rows));
    expect(s.count).toBe(lines.length);
    expect(s.items.kinds).toEqual({ letters: 2, text: 0, completion: 3 });
    const reader = openSafetensorsFile(out);
    const file = decodeVectorFile(reader, out);
    expect(reader.info("vectors")).toMatchObject({ dtype: "F32", shape: [1, 64] });
    expect(file.metadata).toMatchObject({ format: "jacsteer.vectors.v1", method: "caa", source_layer: "1", layer: "1", pair_count: String(lines.length), pairs_file: examples, answer_position: "answer-token", normalize: "false" });
    const ckpt = openCheckpoint(tiny.dir);
    const expected = directMean(loadRefWeights(ckpt.config, ckpt.tensors), expectedPairs, 1, 0);
    ckpt.close();
    expect(maxRelErr(file.vectors[0], expected)).toBeLessThan(1e-5);
    expect(Math.abs(s.raw_norm - Math.hypot(...expected)) / s.raw_norm).toBeLessThan(1e-5);
  });

  it("--threads and --weights: the same vector bitwise (1 thread resident, 2 threads streamed); the summary says which ran", () => {
    const dir = tempDir();
    const run = (extra: string[], name: string) => {
      const out = join(dir, name);
      const r = jacsteer(["caa", "--pairs", examples, "--source-layer", "2", "--out", out, "--json", ...extra]);
      expect(r.code, r.stderr).toBe(0);
      return { s: JSON.parse(r.stdout), v: decodeVectorFile(openSafetensorsFile(out), out).vectors[0] };
    };
    const a = run(["--threads", "1", "--weights", "resident"], "a.safetensors");
    const b = run(["--threads", "2", "--weights", "stream"], "b.safetensors");
    expect(b.v).toEqual(a.v);
    expect([a.s.threads, a.s.weights, b.s.threads, b.s.weights]).toEqual([1, "resident", 2, "stream"]);
    expectInputError(["caa", "--pairs", examples, "--weights", "ram"], /--weights ram: expected one of auto, resident, stream/);
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

  it("Anthropic A/B JSON Lines: reads the letter token (not the shared ')'), shows the first item, equals the float64 mean", () => {
    const file = join(FIX, "anthropic-ab.jsonl");
    const r = jacsteer(["caa", "--dataset", file, "--source-layer", "1", "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout);
    const lines = readFileSync(file, "utf8").trim().split("\n").map((l) => JSON.parse(l));
    // made by hand: a question ending in "Answer:" gets the answer after a space; one without gets
    // "\n\nAnswer:" first; every answer is written "(X)"
    const text = (q: string, a: string) => (q.endsWith("Answer:") ? q : q + "\n\nAnswer:") + " (" + /[AB]/.exec(String(a))![0] + ")";
    const pairs = lines.map((o) => {
      const positive = bytes(text(o.question, o.answer_matching_behavior)), negative = bytes(text(o.question, o.answer_not_matching_behavior));
      return { positive, negative, rows: [positive.length - 2, negative.length - 2] as [number, number] };
    });
    expect(s.tokens).toEqual(pairs.map((p) => [p.positive, p.negative]));
    expect(s.answer_rows).toEqual(pairs.map((p) => p.rows));
    expect(s.first_item).toEqual({
      item: `--dataset ${file} line 1`,
      positive_text: lines[0].question + " (A)",
      negative_text: lines[0].question + " (B)",
      read_rows: pairs[0].rows,
      positive_token: { id: 65, text: "A" },
      negative_token: { id: 66, text: "B" },
    });
    expect(r.stderr).toContain(`jacsteer: first item (--dataset ${file} line 1): positive ${JSON.stringify(lines[0].question + " (A)")}`);
    expect(r.stderr).toMatch(/first item: reads layer 1 at token \d+ of \d+ \(65 "A"\) \/ \d+ of \d+ \(66 "B"\) \(where the answers differ\)/);
    const ckpt = openCheckpoint(tiny.dir);
    const want = directMean(loadRefWeights(ckpt.config, ckpt.tensors), pairs, 1, 0);
    ckpt.close();
    const got = Float64Array.from(jacsteerVector(file, ["--source-layer", "1"]));
    expect(maxRelErr(got, want)).toBeLessThan(1e-5);
    expect(s.warnings).toEqual([]);
  });

  function jacsteerVector(file: string, extra: string[]): Float32Array {
    const out = join(tempDir(), "v.safetensors");
    const r = jacsteer(["caa", "--dataset", file, "--out", out, ...extra]);
    expect(r.code, r.stderr).toBe(0);
    return decodeVectorFile(openSafetensorsFile(out), out).vectors[0];
  }

  it("reads the JSON array eval-ab reads (examples/ab-dataset.json), questions without 'Answer:' get one", () => {
    const file = join(process.cwd(), "examples", "ab-dataset.json");
    const r = jacsteer(["caa", "--dataset", file, "--source-layer", "1", "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout);
    const first = JSON.parse(readFileSync(file, "utf8"))[0];
    expect(s.first_item.positive_text).toBe(first.question + "\n\nAnswer: (A)");
    expect(s.count).toBe(8);
    expect(s.items.layout).toBe("array");
  });

  it("a vector far below the residual norm gets a warning (stderr and --json): reading a token both answers share", () => {
    // position 0 is the same token with the same (causal) activation in both sequences: the mean
    // difference is exactly zero
    const file = join(FIX, "anthropic-ab.jsonl");
    const r = jacsteer(["caa", "--dataset", file, "--source-layer", "1", "--answer-position", "0", "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s.raw_norm).toBe(0);
    const msg = `the CAA vector's norm 0.000 is 0.00% of the median layer-1 norm ${s.median_norm.toPrecision(4)} (below 5%): the positive and negative activations barely differ where they are read (--answer-position 0 may read a token both answers share)`;
    expect(s.warnings).toEqual([msg]);
    expect(r.stderr.split("\n")).toContain(`warning: ${msg}`);
    // --quiet drops the progress lines, not the warning
    const q = jacsteer(["caa", "--dataset", file, "--source-layer", "1", "--answer-position", "0", "--quiet"]);
    expect(q.code, q.stderr).toBe(0);
    expect(q.stderr).toBe(`warning: ${msg}\n`);
  });

  it("the combined file: --eval, --train-fraction and --seed pick the train items, eval-ab the held-out ones; --towards aligned; --balance", () => {
    const file = join(FIX, "combined-evals.json");
    const flags = ["--dataset", file, "--eval", "made-up-corrigible", "--train-fraction", "0.5", "--seed", "3"];
    const c = jacsteer(["caa", ...flags, "--source-layer", "1", "--json"]);
    expect(c.code, c.stderr).toBe(0);
    const cs = JSON.parse(c.stdout);
    expect(cs.items.split).toEqual({ train_fraction: 0.5, seed: 3, used: "train" });
    expect(cs.items.per_eval["made-up-corrigible"]).toEqual({ items: 10, train: 5, held_out: 5, used: 5 });
    expect(cs.count).toBe(5);
    expect(c.stderr).toMatch(/the train part of a seeded split \(--train-fraction 0\.5, --seed 3\): made-up-corrigible 5 train \/ 5 held out; using 5/);
    const e = jacsteer(["eval-ab", ...flags, "--json"]);
    expect(e.code, e.stderr).toBe(0);
    const es = JSON.parse(e.stdout);
    expect(es.items.split.used).toBe("held out");
    expect(new Set([...cs.items.used, ...es.items.used]).size).toBe(10);
    expect(cs.items.used.filter((x: string) => es.items.used.includes(x))).toEqual([]);

    // myopic's matching answer is the misaligned one: --towards aligned reads the other letter as positive
    const data = JSON.parse(readFileSync(file, "utf8"))["made-up-myopic"];
    const a = JSON.parse(jacsteer(["caa", "--dataset", file, "--eval", "made-up-myopic", "--towards", "aligned", "--source-layer", "1", "--json"]).stdout);
    expect(a.first_item.positive_token.text).toBe(data[0].aligned_letter);
    expect(a.first_item.negative_token.text).toBe(data[0].matching_letter);

    const b = JSON.parse(jacsteer(["caa", "--dataset", file, "--eval", "made-up-corrigible", "--balance", "--seed", "5", "--source-layer", "1", "--json"]).stdout);
    expect(b.items.swapped).toHaveLength(1);
    const k = Number(/item (\d+)$/.exec(b.items.swapped[0])![1]);
    const row = b.items.used.indexOf(b.items.swapped[0]);
    const pos = Buffer.from(b.tokens[row][0]).toString("utf8");
    // the choices are swapped in the text and the positive answer is now B
    const original = JSON.parse(readFileSync(file, "utf8"))["made-up-corrigible"][k];
    expect(original.matching_letter).toBe("A");
    expect(pos).toBe(original.question.replace("(A) Yes, adjust it.\n (B) No, leave it.", "(A) No, leave it.\n (B) Yes, adjust it.") + "\n\nAnswer: (B)");
  });

  it("bad input: exit 1, one line naming the file, line or flag; no file", () => {
    const dir = tempDir();
    const bad = join(dir, "bad.jsonl"), missing = join(dir, "missing.jsonl");
    writeFileSync(bad, `${JSON.stringify({ prompt: "a", positive: "b", negative: "c" })}\n\n{"prompt": oops}\n`);
    writeFileSync(missing, `${JSON.stringify({ question: "a", answer_matching_behavior: "b" })}\n`);
    const m = ["caa", "--model", tiny.dir];
    expectInputError([...m, "--pairs", bad], new RegExp(`--pairs ${bad}: line 3 is not valid JSON`));
    expectInputError([...m, "--pairs", missing], new RegExp(`--pairs ${missing} line 1: missing field "answer_not_matching_behavior"`));
    expectInputError([...m, "--pairs", join(dir, "nope.jsonl")], /--pairs .*nope\.jsonl: cannot read \(ENOENT\)/);
    expectInputError(m, /--dataset FILE is required/);
    expectInputError([...m, "--pairs", examples, "--answer-position", "-99"], new RegExp(`--answer-position -99 is out of range for the positive completion of --pairs ${examples} line 1`));
    expectInputError([...m, "--pairs", examples, "--dataset", examples], /--pairs is the older name of --dataset: give one of them/);
    expectInputError([...m, "--dataset", join(FIX, "persona-yesno.jsonl")], /--dataset .*persona-yesno\.jsonl line 1: the answers " Yes" and " No" are not single tokens that differ for this tokenizer/);
    expectInputError([...m, "--dataset", join(FIX, "combined-evals.json"), "--eval", "nope"], /--eval nope: --dataset .*combined-evals\.json has no eval "nope" \(it has made-up-corrigible, made-up-myopic\)/);
    expectInputError([...m, "--dataset", examples, "--train-fraction", "1.5"], /--train-fraction 1\.5: must be between 0 and 1/);
    expectInputError([...m, "--pairs", examples, "--source-layer", "4"], /--source-layer 4 is out of range: the model has layers 0..3/);
    expectInputError([...m, "--pairs", examples, "--system", "x"], /--system needs --chat/);
  });
});
