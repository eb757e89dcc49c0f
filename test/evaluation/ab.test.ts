// A/B evaluation: dataset parsing, prompt construction, logit differences against the float64
// reference, scale 0 against the baseline, and the summary statistics against direct computations.
import { afterAll, describe, expect, it } from "vitest";
import { parseAbDataset, answerLetter } from "../../src/evaluation/dataset.js";
import { buildAbPrompt, DEFAULT_ANSWER_PREFIX, unescapeFlagText } from "../../src/evaluation/prompt.js";
import { evaluateAb, leastSquares, summarizeAb, type AbRow } from "../../src/evaluation/ab.js";
import { SteeredDecoder } from "../../src/generation/decoder.js";
import { loadTokenizerFromDir } from "../../src/node/tokenizer-files.js";
import type { TextTokenizer } from "../../src/tokenizer/index.js";
import { loadTestModel } from "../helpers/model.js";
import { loadRefWeights, refHiddenStates, refLogits } from "../helpers/qwen3-reference.js";
import { randn, rng } from "../helpers/random.js";
import { BUNDLED_TINY, BYTE_SHAPE, byteLevelCheckpoint, type Fixture } from "../generation/fixtures.js";

const cleanup: Fixture[] = [];
afterAll(() => cleanup.forEach((c) => c.remove()));

const bytes = (s: string) => Array.from(new TextEncoder().encode(s));

describe("A/B datasets", () => {
  it("reads JSON arrays and JSON Lines with the answer spellings of the Anthropic / CAA files", () => {
    const items = [
      { question: "Q0?", answer_matching_behavior: "(A)", answer_not_matching_behavior: "(B)" },
      { question: "Q1?", answer_matching_behavior: " (B)", answer_not_matching_behavior: " (A)", extra: 1 },
      { question: "Q2?", answer_matching_behavior: "A", answer_not_matching_behavior: "B" },
      { question: "Q3?", answer_matching_behavior: ["(B) No"], answer_not_matching_behavior: "(A) Yes" },
    ];
    const want = [["A", "B"], ["B", "A"], ["A", "B"], ["B", "A"]];
    for (const text of [JSON.stringify(items), items.map((o) => JSON.stringify(o)).join("\n") + "\n\n"]) {
      const qs = parseAbDataset(text, "d.json");
      expect(qs.map((q) => [q.matching, q.other])).toEqual(want);
      expect(qs.map((q) => q.index)).toEqual([0, 1, 2, 3]);
      expect(qs[1].question).toBe("Q1?");
    }
    expect(answerLetter(" Yes")).toBeNull();
    expect(answerLetter("A.")).toBe("A");
  });

  const bad: [string, string, RegExp][] = [
    ["empty", "  ", /d\.json: the file is empty/],
    ["broken JSON", "[{", /d\.json: not valid JSON/],
    ["broken line", '{"question": "x"}\n{oops', /d\.json: line 2 is not valid JSON/],
    ["no questions", "[]", /no questions/],
    ["not an object", "[1]", /question 0: expected an object/],
    ["no question", '[{"answer_matching_behavior": "(A)", "answer_not_matching_behavior": "(B)"}]', /question 0: "question" must be a non-empty string/],
    ["no letter", '[{"question": "q", "answer_matching_behavior": " Yes", "answer_not_matching_behavior": "(B)"}]', /question 0: "answer_matching_behavior" " Yes" has no answer letter/],
    ["same letters", '[{"question": "q", "answer_matching_behavior": "(A)", "answer_not_matching_behavior": "A"}]', /both answers are "A"/],
  ];
  for (const [name, text, msg] of bad) {
    it(`rejects ${name} with a message naming the file`, () => {
      expect(() => parseAbDataset(text, "d.json")).toThrow(msg);
      try {
        parseAbDataset(text, "d.json");
      } catch (e) {
        expect((e as Error).name).toBe("InputError");
      }
    });
  }
});

describe("A/B prompts", () => {
  it("are question + answer prefix (or the chat rendering + prefix); letter ids are the next token", async () => {
    const tok = await loadTokenizerFromDir(BUNDLED_TINY);
    const [q] = parseAbDataset('[{"question": "Pick one.\\n (A) x\\n (B) y", "answer_matching_behavior": "(B)", "answer_not_matching_behavior": "(A)"}]', "d");
    const plain = buildAbPrompt(tok, q, { chat: false, answerPrefix: DEFAULT_ANSWER_PREFIX.plain });
    expect(plain.text).toBe("Pick one.\n (A) x\n (B) y\n\nAnswer: (");
    expect(plain.tokens).toEqual(bytes(plain.text));
    expect([plain.matchingId, plain.otherId]).toEqual([66, 65]);
    expect(plain.letterMerged).toBe(false);
    const chat = buildAbPrompt(tok, q, { chat: true, system: "Be good.", answerPrefix: DEFAULT_ANSWER_PREFIX.chat });
    expect(chat.text).toBe("<|im_start|>system\nBe good.<|im_end|>\n<|im_start|>user\nPick one.\n (A) x\n (B) y<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n(");
    expect(chat.tokens).toEqual(bytes(chat.text));
    expect(unescapeFlagText("\\n\\nAnswer:\\t(\\\\n")).toBe("\n\nAnswer:\t(\\n");
  });

  it("flags a tokenizer that merges the letter with the prefix and scores the letter's own token", () => {
    // A toy tokenizer: characters are ids 0..255, but "(A" and "(B" are single tokens 300, 301.
    const encode = (text: string) => {
      const out: number[] = [];
      for (let i = 0; i < text.length; i++) {
        if (text[i] === "(" && (text[i + 1] === "A" || text[i + 1] === "B")) out.push(300 + text.charCodeAt(++i) - 65);
        else out.push(text.charCodeAt(i));
      }
      return out;
    };
    const tok = { encode, decode: () => "", eosTokenIds: [], vocabSize: 302, hasChatTemplate: false } as unknown as TextTokenizer;
    const [q] = parseAbDataset('[{"question": "q", "answer_matching_behavior": "A", "answer_not_matching_behavior": "B"}]', "d");
    const p = buildAbPrompt(tok, q, { chat: false, answerPrefix: " (" });
    expect(p.letterMerged).toBe(true);
    expect([p.matchingId, p.otherId]).toEqual([65, 66]);
    expect(buildAbPrompt(tok, q, { chat: false, answerPrefix: " " }).letterMerged).toBe(false);
  });
});

describe("A/B logit differences", async () => {
  const ck = byteLevelCheckpoint(BYTE_SHAPE, 4);
  cleanup.push(ck);
  const { model, ckpt } = await loadTestModel(ck.dir);
  const tok = await loadTokenizerFromDir(ck.dir);
  const ref = loadRefWeights(ckpt.config, ckpt.tensors);
  const questions = parseAbDataset(
    JSON.stringify([
      { question: "Is it? (A) yes (B) no", answer_matching_behavior: "(A)", answer_not_matching_behavior: "(B)" },
      { question: "Or not? (A) yes (B) no", answer_matching_behavior: "(B)", answer_not_matching_behavior: "(A)" },
      { question: "Third (A) (B) (C)", answer_matching_behavior: "C", answer_not_matching_behavior: "A" },
    ]),
    "inline",
  );
  const prompts = questions.map((q) => buildAbPrompt(tok, q, { chat: false, answerPrefix: " (" }));
  const decoder = new SteeredDecoder(model, 64);
  const d = BYTE_SHAPE.hidden_size;
  const vectors = [0, 1].map((i) => ({ index: i, label: `v:${i}`, vector: randn(rng(30 + i), d) }));
  const scales = [-3, 0, 2.5];
  const rows = evaluateAb(decoder, prompts, { layer: 1, vectors, scales });

  it("equal the float64 reference's logits at the last position, per vector and scale", () => {
    expect(rows).toHaveLength(questions.length * (1 + vectors.length * scales.length));
    for (const r of rows) {
      const p = prompts[r.question];
      const sv = r.vector_index === null ? undefined : { layer: 1, sv: vectors[r.vector_index].vector.map((x) => x * r.scale) };
      const logits = refLogits(ref, [refHiddenStates(ref, p.tokens, undefined, sv).at(-1)!.at(-1)!])[0];
      const m = logits[r.matching.charCodeAt(0)], o = logits[r.other.charCodeAt(0)];
      expect(r.matching_id).toBe(r.matching.charCodeAt(0));
      expect(Math.abs(r.logit_matching - m)).toBeLessThan(1e-4 * (1 + Math.abs(m)));
      expect(Math.abs(r.logit_other - o)).toBeLessThan(1e-4 * (1 + Math.abs(o)));
      expect(Math.abs(r.diff - (m - o))).toBeLessThan(2e-4 * (1 + Math.abs(m - o)));
    }
  });

  it("scale 0 gives exactly the unsteered baseline; other scales move it", () => {
    const base = rows.filter((r) => r.vector === null);
    for (const r of rows.filter((x) => x.scale === 0 && x.vector !== null)) {
      expect(r.diff).toBe(base[r.question].diff);
      expect(r.shift).toBe(0);
    }
    expect(rows.filter((r) => r.scale !== 0).every((r) => r.shift !== 0)).toBe(true);
  });

  it("the summary equals a direct computation from the rows", () => {
    const s = summarizeAb(rows);
    expect(s.rows.map((r) => [r.vector_index, r.scale])).toEqual([[0, -3], [0, 0], [0, 2.5], [1, -3], [1, 0], [1, 2.5]]);
    for (const g of [s.baseline, ...s.rows]) {
      const mine = rows.filter((r) => r.vector_index === g.vector_index && (g.vector_index === null || r.scale === g.scale));
      const diffs = mine.map((r) => r.diff);
      expect(g.n).toBe(3);
      expect(g.share_matching).toBe(diffs.filter((x) => x > 0).length / 3);
      expect(g.share_other).toBe(diffs.filter((x) => x < 0).length / 3);
      expect(g.mean_diff).toBeCloseTo((diffs[0] + diffs[1] + diffs[2]) / 3, 12);
      expect(g.mean_shift).toBeCloseTo(mine.reduce((a, r) => a + r.diff - rows.find((b) => b.vector === null && b.question === r.question)!.diff, 0) / 3, 12);
      expect(g.mean_p_matching).toBeCloseTo(diffs.reduce((a, x) => a + 1 / (1 + Math.exp(-x)), 0) / 3, 12);
    }
    for (const lin of s.linearity) {
      const pts = s.rows.filter((r) => r.vector_index === lin.vector_index);
      const direct = normalEquationsFit(pts.map((p) => p.scale), pts.map((p) => p.mean_diff));
      expect(lin.slope).toBeCloseTo(direct.slope, 10);
      expect(lin.intercept).toBeCloseTo(direct.intercept, 10);
      expect(lin.r2).toBeCloseTo(direct.r2, 10);
    }
  });
});

/** Least squares by the 2x2 normal equations (Cramer's rule) and R^2 as the squared correlation. */
function normalEquationsFit(x: number[], y: number[]) {
  const n = x.length, sx = x.reduce((a, b) => a + b), sy = y.reduce((a, b) => a + b);
  const sxx = x.reduce((a, b) => a + b * b, 0), sxy = x.reduce((a, b, i) => a + b * y[i], 0), syy = y.reduce((a, b) => a + b * b, 0);
  const det = n * sxx - sx * sx;
  const intercept = (sy * sxx - sx * sxy) / det, slope = (n * sxy - sx * sy) / det;
  const r = (n * sxy - sx * sy) / Math.sqrt((n * sxx - sx * sx) * (n * syy - sy * sy));
  return { slope, intercept, r2: r * r };
}

describe("leastSquares", () => {
  it("fits exact lines, handles degenerate inputs", () => {
    const f = leastSquares([-2, 0, 1, 4], [-3, 1, 3, 9]);
    expect(f.slope).toBeCloseTo(2, 12);
    expect(f.intercept).toBeCloseTo(1, 12);
    expect(f.r2).toBeCloseTo(1, 12);
    expect(leastSquares([1, 1], [2, 3])).toEqual({ slope: null, intercept: null, r2: null });
    expect(leastSquares([1, 2], [5, 5])).toEqual({ slope: 0, intercept: 5, r2: null });
    const noisy = leastSquares([0, 1, 2, 3], [0, 2, 1, 3]);
    const direct = normalEquationsFit([0, 1, 2, 3], [0, 2, 1, 3]);
    expect(noisy.slope).toBeCloseTo(direct.slope, 12);
    expect(noisy.intercept).toBeCloseTo(direct.intercept, 12);
    expect(noisy.r2).toBeCloseTo(direct.r2, 12);
    expect(noisy.r2).toBeLessThan(0.99);
    const rows = [{ vector_index: null }] as unknown as AbRow[];
    expect(() => summarizeAb(rows.slice(1))).toThrow(/no baseline/);
  });
});
