// The generation loop (prefill the prompt, then one token at a time) and the helpers the
// `jacsteer generate` command shares with `jacsteer eval-ab`: scale lists and incremental text.
import { createRng } from "./prng.js";
import { chooseToken, type SamplingOptions } from "./sampling.js";
import type { SteeredDecoder } from "./decoder.js";

export interface GenerateOptions extends SamplingOptions {
  maxNewTokens: number;
  /** Seed of the sampling stream; every call starts the stream afresh, so runs that differ only
   * in their steering draw the same random numbers (ignored when greedy). */
  seed: number;
  /** Generation stops after emitting one of these (it is included in the tokens). */
  eosTokenIds?: readonly number[];
  onToken?: (token: number, step: number) => void;
  /** The logits each token was chosen from (step 0: the prompt's last position). */
  onLogits?: (logits: Float32Array, step: number) => void;
}

export interface GenerationResult {
  /** The new tokens (not the prompt). */
  tokens: number[];
  stop: "eos" | "length";
}

/** Generate from `prompt` with whatever steering the decoder has set. Resets the decoder first. */
export function generateTokens(decoder: SteeredDecoder, prompt: readonly number[], opts: GenerateOptions): GenerationResult {
  if (!Number.isInteger(opts.maxNewTokens) || opts.maxNewTokens < 0) throw new RangeError(`maxNewTokens ${opts.maxNewTokens} must be a non-negative integer`);
  decoder.reset();
  const uniform = createRng(opts.seed);
  const eos = new Set(opts.eosTokenIds ?? []);
  const tokens: number[] = [];
  if (opts.maxNewTokens === 0) return { tokens, stop: "length" };
  let logits = decoder.append(prompt);
  for (let step = 0; step < opts.maxNewTokens; step++) {
    opts.onLogits?.(logits, step);
    const token = chooseToken(logits, opts, uniform);
    tokens.push(token);
    opts.onToken?.(token, step);
    if (eos.has(token)) return { tokens, stop: "eos" };
    // The last token's own logits are never needed.
    if (step + 1 < opts.maxNewTokens) logits = decoder.append([token]);
  }
  return { tokens, stop: "length" };
}

/** "-10,-5,0,5,10" -> numbers; null when the text is not a comma-separated list of finite numbers. */
export function parseScaleList(text: string): number[] | null {
  const parts = text.split(",").map((s) => s.trim());
  if (parts.some((p) => p === "")) return null;
  const xs = parts.map(Number);
  return xs.every(Number.isFinite) ? xs : null;
}

/**
 * Text for a growing token sequence, emitted piece by piece: each push returns the text added since
 * the last piece. A token that ends inside a multi-byte character (decoded as U+FFFD) is held back
 * until the character completes; `flush` returns whatever is left.
 */
export class TextStream {
  private ids: number[] = [];
  private emitted = 0;

  constructor(private readonly decode: (ids: readonly number[]) => string) {}

  push(id: number): string {
    this.ids.push(id);
    const text = this.decode(this.ids);
    if (text.endsWith("\uFFFD")) return "";
    return this.take(text);
  }

  flush(): string {
    return this.take(this.decode(this.ids));
  }

  private take(text: string): string {
    // Decoding can rewrite earlier text (rarely: cleanup rules); then emit nothing rather than repeat.
    const piece = text.length > this.emitted ? text.slice(this.emitted) : "";
    this.emitted = Math.max(this.emitted, text.length);
    return piece;
  }
}
