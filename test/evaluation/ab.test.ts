// A/B evaluation: logit differences against the float64 reference, scale 0 against the baseline, and
// the summary statistics (and their fit warnings) against direct computations. Dataset parsing and
// prompt construction: dataset.test.ts, prompt.test.ts.
import { afterAll, describe, expect, it } from "vitest";
import { parseDataset } from "../../src/evaluation/dataset.js";
import { buildItemPrompt, unescapeFlagText } from "../../src/evaluation/prompt.js";
import { evaluateAb, evaluateAbBatched, leastSquares, summarizeAb, toAbPrompt, type AbRow } from "../../src/evaluation/ab.js";
import { ForwardModel } from "../../src/engine/forward.js";
import { createParallelGemm } from "../../src/node/thread-pool.js";
import { SteeredDecoder } from "../../src/generation/decoder.js";
import { loadTokenizerFromDir } from "../../src/node/tokenizer-files.js";
import { loadTestModel } from "../helpers/model.js";
import { loadRefWeights, refHiddenStates, refLogits } from "../helpers/qwen3-reference.js";
import { randn, rng } from "../helpers/random.js";
import { BYTE_SHAPE, byteLevelCheckpoint, type Fixture } from "../generation/fixtures.js";

const cleanup: Fixture[] = [];
afterAll(() => cleanup.forEach((c) => c.remove()));

describe("A/B logit differences", async () => {
  const ck = byteLevelCheckpoint(BYTE_SHAPE, 4);
  cleanup.push(ck);
  const { model, ckpt } = await loadTestModel(ck.dir);
  const tok = await loadTokenizerFromDir(ck.dir);
  const ref = loadRefWeights(ckpt.config, ckpt.tensors);
  const questions = parseDataset(
    JSON.stringify([
      { question: "Is it? (A) yes (B) no", answer_matching_behavior: "(A)", answer_not_matching_behavior: "(B)" },
      { question: "Or not? (A) yes (B) no", answer_matching_behavior: "(B)", answer_not_matching_behavior: "(A)" },
      { question: "Third (A) (B) (C)", answer_matching_behavior: "C", answer_not_matching_behavior: "A" },
    ]),
    "inline",
  ).items;
  const prompts = questions.map((q, i) => toAbPrompt(buildItemPrompt(tok, q, { chat: false, answerPrefix: " (" }), i));
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

describe("A/B logit differences on the batched forward (evaluateAbBatched)", async () => {
  const ck = byteLevelCheckpoint(BYTE_SHAPE, 5);
  cleanup.push(ck);
  const { model, ckpt, rt } = await loadTestModel(ck.dir);
  const tok = await loadTokenizerFromDir(ck.dir);
  const ref = loadRefWeights(ckpt.config, ckpt.tensors);
  const questions = parseDataset(
    JSON.stringify([
      { question: "Is it? (A) yes (B) no", answer_matching_behavior: "(A)", answer_not_matching_behavior: "(B)" },
      { question: "A much longer second question, so that the stacked sequences differ in length? (A) yes (B) no", answer_matching_behavior: "(B)", answer_not_matching_behavior: "(A)" },
      { question: "Third (A) (B) (C)", answer_matching_behavior: "C", answer_not_matching_behavior: "A" },
      { question: "Four", answer_matching_behavior: "D", answer_not_matching_behavior: "B" },
    ]),
    "inline",
  ).items;
  const prompts = questions.map((q, i) => toAbPrompt(buildItemPrompt(tok, q, { chat: false, answerPrefix: " (" }), i));
  const scored = prompts.flatMap((p) => [p.matchingId, p.otherId]);
  const d = BYTE_SHAPE.hidden_size;
  const vectors = [0, 1, 2].map((i) => ({ index: i, label: `v:${i}`, vector: randn(rng(50 + i), d) }));
  const scales = [-3, 0, 2.5];
  const opts = { layer: 1, vectors, scales };
  const reference = evaluateAb(new SteeredDecoder(model, 128), prompts, opts);
  const forward = async (threads: number) => {
    // minParallelFlops 0: even these tiny products and attention tasks are split over the threads.
    const gemm = await createParallelGemm(rt, threads, { minParallelFlops: 0 });
    const fm = await ForwardModel.create(rt, ckpt.config, ckpt.tensors, { gemm, scoredTokens: scored });
    return fm;
  };
  const fm1 = await forward(1);
  const rows = await evaluateAbBatched(fm1, prompts, opts);
  afterAll(() => fm1.close());

  it("the same rows as the reference decoder (float32 tolerance) and the float64 reference's logits", () => {
    expect(rows.map((r) => [r.question, r.vector, r.scale])).toEqual(reference.map((r) => [r.question, r.vector, r.scale]));
    rows.forEach((r, i) => {
      const want = reference[i];
      expect(Math.abs(r.logit_matching - want.logit_matching)).toBeLessThan(1e-4 * (1 + Math.abs(want.logit_matching)));
      expect(Math.abs(r.diff - want.diff)).toBeLessThan(2e-4 * (1 + Math.abs(want.diff)));
      const p = prompts[r.question];
      const sv = r.vector_index === null ? undefined : { layer: 1, sv: vectors[r.vector_index].vector.map((x) => x * r.scale) };
      const logits = refLogits(ref, [refHiddenStates(ref, p.tokens, undefined, sv).at(-1)!.at(-1)!])[0];
      const m = logits[p.matchingId], o = logits[p.otherId];
      expect(Math.abs(r.logit_matching - m)).toBeLessThan(1e-4 * (1 + Math.abs(m)));
      expect(Math.abs(r.logit_other - o)).toBeLessThan(1e-4 * (1 + Math.abs(o)));
    });
    // not vacuous: the steering moves the differences
    expect(rows.filter((r) => r.scale !== 0).every((r) => r.shift !== 0)).toBe(true);
    expect(rows.filter((r) => r.scale === 0 && r.vector !== null).every((r) => r.shift === 0)).toBe(true);
  });

  it("bitwise the same for any batch size: one sequence per batch, a few, everything at once", async () => {
    for (const activationBytes of [1, 4 * fm1.sequenceFloats(40), 2 ** 30]) {
      const again = await evaluateAbBatched(fm1, prompts, { ...opts, activationBytes });
      expect(again).toEqual(rows);
    }
  });

  it("bitwise the same for 1, 2 and 3 threads", async () => {
    for (const t of [2, 3]) {
      const fm = await forward(t);
      try {
        expect(fm.threads).toBe(t);
        expect(await evaluateAbBatched(fm, prompts, { ...opts, activationBytes: 6 * fm.sequenceFloats(40) })).toEqual(rows);
      } finally {
        await fm.close();
      }
    }
  });

  it("unsteered only; streamed weights give the same rows as resident ones", async () => {
    const base = await evaluateAbBatched(fm1, prompts, { layer: -1, vectors: [], scales: [] });
    expect(base).toEqual(rows.filter((r) => r.vector === null));
    const streamed = await ForwardModel.create(rt, ckpt.config, ckpt.tensors, { weights: "stream", scoredTokens: scored });
    expect(streamed.weightPlan.mode).toBe("stream");
    expect(await evaluateAbBatched(streamed, prompts, { ...opts, activationBytes: 1 })).toEqual(rows);
    expect(streamed.reads.reads).toBeGreaterThan(ckpt.config.numLayers);
    // auto: resident within the budget, streamed past it, and the log line says which
    const lines: string[] = [];
    const auto = await ForwardModel.create(rt, ckpt.config, ckpt.tensors, { residentBudgetBytes: fm1.weightPlan.residentBytes - 1, scoredTokens: scored, log: (l) => lines.push(l) });
    expect(fm1.weightPlan.mode).toBe("resident");
    expect(auto.weightPlan.mode).toBe("stream");
    expect(lines.join("\n")).toMatch(/forward: weights streamed from the checkpoint every pass/);
  });

  it("refuses a token that is not scored and a steering layer outside the model", async () => {
    const other = await ForwardModel.create(rt, ckpt.config, ckpt.tensors, { scoredTokens: [prompts[0].matchingId] });
    await expect(evaluateAbBatched(other, prompts, opts)).rejects.toThrow(/is not among the scored tokens/);
    await expect(evaluateAbBatched(fm1, prompts, { ...opts, layer: 9 })).rejects.toThrow(/steering layer 9 outside 0\.\.2/);
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
    expect(unescapeFlagText("\\n\\nAnswer:\\t(\\\\n")).toBe("\n\nAnswer:\t(\\n");
  });
});

describe("fit warnings", () => {
  // rows for one question: baseline 0, and diff = f(scale) for vector 0
  const rowsFor = (scales: number[], f: (s: number) => number) =>
    [{ vector: null, vector_index: null, scale: 0, diff: 0 }, ...scales.map((scale) => ({ vector: "v:0", vector_index: 0, scale, diff: f(scale) }))].map(
      (r) => ({ question: 0, matching: "A", other: "B", matching_id: 65, other_id: 66, logit_matching: r.diff, logit_other: 0, baseline_diff: 0, shift: r.diff, p_matching: 0.5, ...r }) as AbRow,
    );

  it("a linear response: no warning", () => {
    const [l] = summarizeAb(rowsFor([-2, 0, 2], (s) => 3 * s + 1)).linearity;
    expect(l.r2).toBeCloseTo(1, 12);
    expect(l.fit_warning).toBeNull();
  });

  it("fewer than 3 scales: reported as not a fit, even though the line passes through both points", () => {
    const [l] = summarizeAb(rowsFor([-4, 4], (s) => s * s + s)).linearity;
    expect(l.r2).toBeCloseTo(1, 12);
    expect(l.fit_warning).toBe("fit from 2 scale(s), fewer than 3: the slope is not a fit (give more --scales)");
  });

  it("R^2 below 0.5: reported with its value", () => {
    // a symmetric response: the best line is flat and explains nothing
    const [l] = summarizeAb(rowsFor([-2, -1, 0, 1, 2], (s) => s * s)).linearity;
    expect(l.r2).toBeCloseTo(0, 12);
    expect(l.fit_warning).toMatch(/^R\^2 0\.000 < 0\.5: the mean difference is not linear in the scale/);
  });
});
