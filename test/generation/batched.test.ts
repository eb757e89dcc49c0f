// Batched generation on the engine's forward (src/generation/batched.ts) against the autodiff decoder
// (generateTokens on SteeredDecoder, itself tested against full recomputation and the float64
// reference): logits at every step to float32 tolerance and the same tokens, greedy and sampled,
// steered and not, prompts of different lengths, an end-of-sequence id that stops some sequences early;
// bitwise the same for 1, 2 and 3 threads and any batch size; BF16 weights, tied and untied heads.
import { afterAll, describe, expect, it } from "vitest";
import { writeTempCheckpoint, SMALL_SHAPE, type TempCheckpoint } from "../helpers/checkpoints.js";
import { loadTestModel, maxRelErr } from "../helpers/model.js";
import { randn, rng } from "../helpers/random.js";
import { SteeredDecoder } from "../../src/generation/decoder.js";
import { generateTokens } from "../../src/generation/generate.js";
import { generateBatched, type BatchedSequence } from "../../src/generation/batched.js";
import { ForwardModel } from "../../src/engine/forward.js";
import { createParallelGemm } from "../../src/node/thread-pool.js";

const cleanup: TempCheckpoint[] = [];
afterAll(() => cleanup.forEach((c) => c.remove()));

const SHAPES = {
  "BF16, tied": { shape: SMALL_SHAPE, dtype: "BF16" as const },
  "F32, GQA 4, untied, 3 layers": { shape: { ...SMALL_SHAPE, num_hidden_layers: 3, num_attention_heads: 4, num_key_value_heads: 1, head_dim: 8, tie_word_embeddings: false }, dtype: "F32" as const },
};

for (const [name, { shape, dtype }] of Object.entries(SHAPES)) {
  describe(`batched generation (${name})`, async () => {
    const ck = writeTempCheckpoint(shape, { seed: 6, dtype, tied: shape.tie_word_embeddings ?? true });
    cleanup.push(ck);
    const { model, ckpt, rt } = await loadTestModel(ck.dir);
    const d = model.config.hiddenSize;
    const prompts = [[3, 1, 4, 1, 5, 9, 2, 6], [7, 7], [11, 12, 13, 14, 15]];
    const direction = randn(rng(12), d);
    const layer = 0;
    const seqs: BatchedSequence[] = [];
    for (const scale of [0, 3, -2]) for (const p of prompts) seqs.push({ prompt: p, steer: direction.map((x) => x * scale) });
    seqs.push({ prompt: prompts[1]!, steer: null });
    const maxNewTokens = 10;

    /** Today's code, one sequence at a time: tokens and the logits of every step. */
    const reference = (sampling: { temperature: number; topP: number; eos?: number[] }) => {
      const decoder = new SteeredDecoder(model, 40);
      return seqs.map((s) => {
        decoder.setSteering(s.steer ? { layer, vector: s.steer } : null);
        const logits: Float32Array[] = [];
        const res = generateTokens(decoder, s.prompt, { maxNewTokens, seed: 4, ...sampling, eosTokenIds: sampling.eos, onLogits: (l) => logits.push(l.slice()) });
        return { ...res, logits };
      });
    };
    const batched = async (threads: number, sampling: { temperature: number; topP: number; eos?: number[] }, activationBytes?: number, headMode?: "stream", weights: "resident" | "stream" = "resident") => {
      const gemm = await createParallelGemm(rt, threads, { minParallelFlops: 0 });
      const fm = await ForwardModel.create(rt, ckpt.config, ckpt.tensors, { gemm, fullHead: true, headMode, weights });
      try {
        const logits: Float32Array[][] = seqs.map(() => []);
        const res = await generateBatched(fm, seqs, { maxNewTokens, seed: 4, layer, ...sampling, eosTokenIds: sampling.eos, activationBytes, onLogits: (s, l) => logits[s]!.push(l.slice()) });
        return res.map((r, i) => ({ ...r, logits: logits[i]! }));
      } finally {
        await fm.close();
      }
    };

    for (const sampling of [{ temperature: 0, topP: 1 }, { temperature: 1.5, topP: 0.9 }]) {
      it(`the reference decoder's tokens and logits (${sampling.temperature ? "sampled" : "greedy"}); bitwise the same for 1, 2, 3 threads and one sequence per batch`, async () => {
        const want = reference(sampling);
        const got = await batched(1, sampling);
        got.forEach((g, i) => {
          expect(g.tokens, `sequence ${i}`).toEqual(want[i]!.tokens);
          expect(g.logits.length).toBe(want[i]!.logits.length);
          g.logits.forEach((l, step) => expect(maxRelErr(l, want[i]!.logits[step]!), `sequence ${i} step ${step}`).toBeLessThan(1e-4));
        });
        // not vacuous: steering changes the tokens of some sequence
        expect(got.slice(0, 3).map((g) => g.tokens)).not.toEqual(got.slice(3, 6).map((g) => g.tokens));
        for (const t of [2, 3]) expect(await batched(t, sampling)).toEqual(got);
        expect(await batched(2, sampling, 1)).toEqual(got);
        // The LM head read from the checkpoint at every step (as on the 14B shape): the same, bitwise.
        expect(await batched(2, sampling, undefined, "stream")).toEqual(got);
        // Streamed layers (BF16: packed per product, or read directly for one row) against resident
        // ones (BF16: packed into panels once at load): bitwise, batched and one sequence at a time.
        expect(await batched(2, sampling, undefined, undefined, "stream")).toEqual(got);
        expect(await batched(2, sampling, 1, undefined, "stream")).toEqual(got);
      });
    }

    it("the whole LM head counts in the weight plan: auto streams the layers when layers and head pass the budget", async () => {
      const scoredOnly = await ForwardModel.create(rt, ckpt.config, ckpt.tensors, { scoredTokens: [1] });
      const layers = scoredOnly.weightPlan.residentBytes;
      const withHead = await ForwardModel.create(rt, ckpt.config, ckpt.tensors, { fullHead: true, residentBudgetBytes: layers + 1 });
      const withoutHead = await ForwardModel.create(rt, ckpt.config, ckpt.tensors, { scoredTokens: [1], residentBudgetBytes: layers + 1 });
      expect([withHead.weightPlan.mode, withoutHead.weightPlan.mode]).toEqual(["stream", "resident"]);
    });

    it("an end-of-sequence id stops the sequences that emit it (and only those), as the reference", async () => {
      const greedy = reference({ temperature: 0, topP: 1 });
      const eos = [greedy[0]!.tokens[2]!];
      const want = reference({ temperature: 0, topP: 1, eos });
      const got = await batched(2, { temperature: 0, topP: 1, eos });
      expect(got.map((g) => [g.tokens, g.stop])).toEqual(want.map((w) => [w.tokens, w.stop]));
      expect(got.some((g) => g.stop === "eos") && got.some((g) => g.stop === "length")).toBe(true);
    });
  });
}

describe("the LM head streamed block by block", () => {
  it("allLogitsAt: bitwise the resident head's, over several blocks of rows, for 1 and 5 rows; auto keeps a small head resident", async () => {
    // vocab 9000: three blocks of 4096 rows, the last one short.
    const ck = writeTempCheckpoint({ ...SMALL_SHAPE, vocab_size: 9000 }, { seed: 8, dtype: "BF16" });
    cleanup.push(ck);
    const { ckpt, rt } = await loadTestModel(ck.dir);
    const lines: string[] = [];
    const resident = await ForwardModel.create(rt, ckpt.config, ckpt.tensors, { fullHead: true, log: (l) => lines.push(l) });
    const streamed = await ForwardModel.create(rt, ckpt.config, ckpt.tensors, { fullHead: true, headMode: "stream", log: (l) => lines.push(l) });
    expect(lines.filter((l) => /LM head .* is read from the checkpoint/.test(l)).length).toBe(1);
    const d = ckpt.config.hiddenSize;
    const h = rt.heap.allocF32(6 * d);
    rt.heap.f32(h, 6 * d).set(randn(rng(3), 6 * d));
    for (const rows of [[4], [0, 1, 2, 3, 5]]) {
      const a = await resident.allLogitsAt(h, rows), b = await streamed.allLogitsAt(h, rows);
      expect(b.length).toBe(rows.length * 9000);
      expect(Buffer.from(b.buffer).equals(Buffer.from(a.buffer))).toBe(true);
    }
    await resident.close();
    await streamed.close();
  });
});
