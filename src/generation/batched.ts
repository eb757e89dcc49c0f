// Generation for many sequences at once on the engine's forward (src/engine/forward.ts): every
// (vector, scale, prompt) sequence of a run decoded together, each step one matrix product per
// projection over all sequences' new rows, with a KV cache per sequence built from the same
// decoder-layer code (layerForward's `kv`). Steering as in decoder.ts: scale * vector added to layer
// S's output at every position, prompt and generated. The tokens chosen are those of
// generateTokens on the autodiff decoder (the reference the tests compare against) up to float32
// rounding; each sequence samples from its own stream seeded by `seed`, as generateTokens does.
import { chunkByBudget, DEFAULT_ACTIVATION_BUDGET, type ForwardModel } from "../engine/forward.js";
import { createRng } from "./prng.js";
import { chooseToken, type SamplingOptions } from "./sampling.js";
import type { GenerationResult } from "./generate.js";

export interface BatchedSequence {
  prompt: readonly number[];
  /** scale * vector, already multiplied (f32), added to layer `layer`'s output; null: unsteered. */
  steer: Float32Array | null;
}

export interface BatchedGenerateOptions extends SamplingOptions {
  maxNewTokens: number;
  seed: number;
  /** Layer whose output receives each sequence's steer (ignored when no sequence is steered). */
  layer: number;
  eosTokenIds?: readonly number[];
  /** Token `token` chosen for sequence `seq` at step `step`. */
  onToken?: (seq: number, token: number, step: number) => void;
  /** The logits sequence `seq`'s token at `step` was chosen from (a view, valid during the call). */
  onLogits?: (seq: number, logits: Float32Array, step: number) => void;
  /** Activation memory of one batch (default DEFAULT_ACTIVATION_BUDGET). */
  activationBytes?: number;
}

/** Generate for every sequence; results in the order given. The model needs every layer and fullHead. */
export async function generateBatched(model: ForwardModel, seqs: readonly BatchedSequence[], opts: BatchedGenerateOptions): Promise<GenerationResult[]> {
  if (!Number.isInteger(opts.maxNewTokens) || opts.maxNewTokens < 0) throw new RangeError(`maxNewTokens ${opts.maxNewTokens} must be a non-negative integer`);
  const L = model.config.numLayers, d = model.config.hiddenSize, V = model.config.vocabSize;
  if (model.numLayers !== L) throw new Error(`generateBatched: the forward runs ${model.numLayers} of ${L} layers (generation needs all)`);
  const steered = seqs.some((s) => s.steer);
  const S = steered ? opts.layer : L - 1;
  if (steered && (!Number.isInteger(S) || S < 0 || S >= L)) throw new Error(`steering layer ${S} outside 0..${L - 1}`);
  const results: GenerationResult[] = seqs.map(() => ({ tokens: [], stop: "length" }));
  if (opts.maxNewTokens === 0 || seqs.length === 0) return results;
  const eos = new Set(opts.eosTokenIds ?? []);
  const rngs = seqs.map(() => createRng(opts.seed));
  const budget = (opts.activationBytes ?? DEFAULT_ACTIVATION_BUDGET) / 4;
  const rt = model.rt, heap = rt.heap;
  const mark = heap.mark();
  try {
    // The last token chosen is never run, so a sequence needs prompt + maxNewTokens - 1 positions.
    const cache = model.allocCache(seqs.map((s) => s.prompt.length + opts.maxNewTokens - 1));
    const steer = seqs.map((s) => {
      if (!s.steer) return 0;
      if (s.steer.length !== d) throw new Error(`steering vector of length ${s.steer.length}, hidden size is ${d}`);
      const p = heap.allocF32(d);
      heap.f32(p, d).set(s.steer);
      return p;
    });
    const past = seqs.map(() => 0);
    /** Run `tokens[k]` of sequence `which[k]` at its next positions; the logits of each one's last row. */
    const pass = async (which: readonly number[], tokens: readonly (readonly number[])[]): Promise<Float32Array[]> => {
      const logits: Float32Array[] = [];
      const items = which.map((seq, k) => ({ seq, toks: tokens[k]! }));
      for (const batch of chunkByBudget(items, (it) => model.sequenceFloats(it.toks.length, past[it.seq]!), budget)) {
        const m = heap.mark();
        try {
          const lengths = batch.map((it) => it.toks.length);
          const h = heap.allocF32(lengths.reduce((a, b) => a + b, 0) * d);
          const last: number[] = [];
          let row = 0;
          for (const it of batch) {
            model.embed(it.toks, h + 4 * row * d);
            row += it.toks.length;
            last.push(row - 1);
          }
          const runOpts = { cache, seqs: batch.map((it) => it.seq), past: batch.map((it) => past[it.seq]!) };
          await model.run(h, lengths, 0, S, { ...runOpts, next: S + 1 < L ? S + 1 : 0 });
          if (steered) {
            row = 0;
            for (const it of batch) {
              if (steer[it.seq]) model.addToRows(h, row, it.toks.length, steer[it.seq]!);
              row += it.toks.length;
            }
            await model.run(h, lengths, S + 1, L - 1, { ...runOpts, next: 0 });
          }
          const out = await model.allLogitsAt(h, last);
          batch.forEach((_, k) => logits.push(out.subarray(k * V, (k + 1) * V)));
          for (const it of batch) past[it.seq]! += it.toks.length;
        } finally {
          heap.release(m);
        }
      }
      return logits;
    };
    let active = seqs.map((_, i) => i);
    let logits = await pass(active, seqs.map((s) => s.prompt));
    for (let step = 0; step < opts.maxNewTokens && active.length; step++) {
      const next: number[] = [];
      active.forEach((seq, k) => {
        opts.onLogits?.(seq, logits[k]!, step);
        const token = chooseToken(logits[k]!, opts, rngs[seq]!);
        results[seq]!.tokens.push(token);
        opts.onToken?.(seq, token, step);
        if (eos.has(token)) results[seq]!.stop = "eos";
        else next.push(seq);
      });
      active = next;
      // The last token's own logits are never needed.
      if (step + 1 < opts.maxNewTokens && active.length) logits = await pass(active, active.map((seq) => [results[seq]!.tokens.at(-1)!]));
    }
  } finally {
    heap.release(mark);
  }
  return results;
}
