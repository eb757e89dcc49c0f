// KV-cache steered decoding against full recomputation (Qwen3Model.hiddenStates + logits on the whole
// growing sequence, no cache) and against the independent float64 reference.
import { afterAll, describe, expect, it } from "vitest";
import { writeTempCheckpoint, SMALL_SHAPE, type TempCheckpoint } from "../helpers/checkpoints.js";
import { loadTestModel, maxRelErr } from "../helpers/model.js";
import { loadRefWeights, refHiddenStates, refLogits } from "../helpers/qwen3-reference.js";
import { randn, rng } from "../helpers/random.js";
import { fromArray } from "../../src/autodiff/tensor.js";
import { SteeredDecoder } from "../../src/generation/decoder.js";
import { generateTokens } from "../../src/generation/generate.js";
import { argmax } from "../../src/generation/sampling.js";
import type { Qwen3Model } from "../../src/model/qwen3.js";

const cleanup: TempCheckpoint[] = [];
afterAll(() => cleanup.forEach((c) => c.remove()));

/** Logits of the last position of `tokens`, recomputed from scratch through the autodiff-op model. */
function recomputeLastLogits(model: Qwen3Model, tokens: number[], steer?: { layer: number; vector: Float32Array }): Float32Array {
  const ctx = model.ctx;
  // Qwen3Model caches RoPE tables per length on the heap: make them outside the scope below.
  model.ropeTables(tokens.length);
  return ctx.noGrad(() =>
    ctx.rt.heap.scope(() => {
      const s = steer && { layer: steer.layer, vector: fromArray(ctx, steer.vector, [steer.vector.length]) };
      const states = model.hiddenStates(tokens, s);
      const all = model.logits(states[states.length - 1]).toArray();
      const V = model.config.vocabSize;
      return all.slice((tokens.length - 1) * V);
    }),
  );
}

const SHAPES = {
  "GQA 2, head_dim != hidden/heads": SMALL_SHAPE,
  "GQA 4, untied, 3 layers": { ...SMALL_SHAPE, num_hidden_layers: 3, num_attention_heads: 4, num_key_value_heads: 1, head_dim: 8, tie_word_embeddings: false },
};

for (const [name, shape] of Object.entries(SHAPES)) {
  describe(`KV-cache decoding (${name})`, async () => {
    const ck = writeTempCheckpoint(shape, { seed: 5, tied: shape.tie_word_embeddings ?? true });
    cleanup.push(ck);
    const { model, ckpt } = await loadTestModel(ck.dir);
    const d = model.config.hiddenSize;
    const decoder = new SteeredDecoder(model, 40);
    const prompt = [3, 1, 4, 1, 5, 9, 2, 6];
    const steerLayer = 0;
    const direction = randn(rng(11), d);

    for (const scale of [0, 3]) {
      it(`logits at every step equal a full recomputation, greedy tokens their argmax (${scale ? `steered, scale ${scale}` : "unsteered"})`, () => {
        const steer = scale ? { layer: steerLayer, vector: direction.map((x) => x * scale) } : undefined;
        decoder.setSteering(steer ?? null);
        const stepLogits: Float32Array[] = [];
        const res = generateTokens(decoder, prompt, { maxNewTokens: 12, temperature: 0, topP: 1, seed: 0, onLogits: (l) => stepLogits.push(l.slice()) });
        expect(res.tokens.length).toBe(12);
        expect(decoder.length).toBe(prompt.length + 11);
        res.tokens.forEach((tok, step) => {
          const seq = [...prompt, ...res.tokens.slice(0, step)];
          const full = recomputeLastLogits(model, seq, steer);
          expect(maxRelErr(stepLogits[step], full), `step ${step}`).toBeLessThan(1e-4);
          expect(tok, `step ${step}`).toBe(argmax(full));
        });
      });
    }

    it("prefill (every position) and chunked appends match the float64 reference, steered", () => {
      const ref = loadRefWeights(ckpt.config, ckpt.tensors);
      const sv = direction.map((x) => x * 2);
      const tokens = [7, 0, 13, 21, 2, 2, 40, 8, 11, 5];
      const theirs = refLogits(ref, refHiddenStates(ref, tokens, undefined, { layer: 1, sv }).at(-1)!).flatMap((r) => Array.from(r));
      decoder.reset();
      decoder.setSteering({ layer: 1, vector: sv });
      const ours = decoder.append(tokens, { allLogits: true });
      expect(maxRelErr(ours, theirs)).toBeLessThan(1e-4);
      // Three chunks (Tq = 4, 1, 5 queries over a growing cache) give the same rows.
      decoder.reset();
      const chunks = [decoder.append(tokens.slice(0, 4), { allLogits: true }), decoder.append(tokens.slice(4, 5), { allLogits: true }), decoder.append(tokens.slice(5), { allLogits: true })];
      const joined = new Float32Array(ours.length);
      let off = 0;
      for (const c of chunks) {
        joined.set(c, off);
        off += c.length;
      }
      expect(maxRelErr(joined, theirs)).toBeLessThan(1e-4);
      // Prefill in chunks of 3 rows (as long prompts run) gives the same rows and last row.
      const chunked = new SteeredDecoder(model, 40, 3);
      chunked.setSteering({ layer: 1, vector: sv });
      expect(maxRelErr(chunked.append(tokens, { allLogits: true }), theirs)).toBeLessThan(1e-4);
      chunked.reset();
      expect(maxRelErr(chunked.append(tokens), theirs.slice(-model.config.vocabSize))).toBeLessThan(1e-4);
      expect(chunked.length).toBe(tokens.length);
      // and the steering matters at this scale (the comparison above is not vacuous)
      const unsteered = refLogits(ref, refHiddenStates(ref, tokens).at(-1)!).flatMap((r) => Array.from(r));
      expect(maxRelErr(unsteered, theirs)).toBeGreaterThan(1e-2);
    });

    it("scale 0 gives exactly the unsteered run; a big scale changes the tokens", () => {
      const opts = { maxNewTokens: 10, temperature: 0, topP: 1, seed: 0 };
      decoder.setSteering(null);
      const plainLogits: Float32Array[] = [];
      const plain = generateTokens(decoder, prompt, { ...opts, onLogits: (l) => plainLogits.push(l.slice()) });
      decoder.setSteering({ layer: steerLayer, vector: direction.map((x) => x * 0) });
      const zeroLogits: Float32Array[] = [];
      const zero = generateTokens(decoder, prompt, { ...opts, onLogits: (l) => zeroLogits.push(l.slice()) });
      expect(zero.tokens).toEqual(plain.tokens);
      zeroLogits.forEach((l, i) => expect(Array.from(l)).toEqual(Array.from(plainLogits[i])));
      decoder.setSteering({ layer: steerLayer, vector: direction.map((x) => x * 50) });
      const big = generateTokens(decoder, prompt, opts);
      expect(big.tokens).not.toEqual(plain.tokens);
    });

    it("sampling: the same seed reproduces, another seed differs; eos stops", () => {
      decoder.setSteering(null);
      const opts = { maxNewTokens: 20, temperature: 20, topP: 1, seed: 42 };
      const a = generateTokens(decoder, prompt, opts);
      const b = generateTokens(decoder, prompt, opts);
      const c = generateTokens(decoder, prompt, { ...opts, seed: 43 });
      expect(b.tokens).toEqual(a.tokens);
      expect(c.tokens).not.toEqual(a.tokens);
      const eos = a.tokens[5];
      const stopped = generateTokens(decoder, prompt, { ...opts, eosTokenIds: [eos] });
      const first = a.tokens.indexOf(eos);
      expect(stopped.stop).toBe("eos");
      expect(stopped.tokens).toEqual(a.tokens.slice(0, first + 1));
    });
  });
}

describe("SteeredDecoder guards", () => {
  it("refuses to run past its capacity and rejects a vector of the wrong length", async () => {
    const ck = writeTempCheckpoint(SMALL_SHAPE, { seed: 2 });
    cleanup.push(ck);
    const { model } = await loadTestModel(ck.dir);
    const dec = new SteeredDecoder(model, 5);
    expect(() => dec.append([1, 2, 3, 4, 5, 6])).toThrow(/capacity 5/);
    expect(() => dec.setSteering({ layer: 0, vector: new Float32Array(3) })).toThrow(/length 3/);
    expect(() => dec.setSteering({ layer: 9, vector: new Float32Array(SMALL_SHAPE.hidden_size) })).toThrow(/layer 9/);
  });
});
