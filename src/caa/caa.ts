// Contrastive activation addition (Rimsky et al., "Steering Llama 2 via Contrastive Activation
// Addition"): the steering vector is the mean over contrastive pairs of
//
//   h_S(prompt + positive)[answer token] - h_S(prompt + negative)[answer token]
//
// where h_S is the residual stream at the output of decoder layer S (the steering site of CONTRACT.md
// section 1, so the vector is added back where it was read) and the answer token is, by default, the
// LAST token of prompt + completion (answerPosition -1). The CAA paper's code reads the token before
// the last (its answers end in "(A)", and it takes the letter: answerPosition -2).
//
// Pairs come as JSON Lines, one object per line, in either form:
//   {"prompt": ..., "positive": ..., "negative": ...}                  a prompt and two completions
//   {"question": ..., "answer_matching_behavior": ..., "answer_not_matching_behavior": ...}
//                                                                      an A/B question (Anthropic's
//                                                                      evals / the CAA datasets)
// The completion is appended to the prompt as text, with nothing in between, and the whole is
// tokenized at once (so it matches what the model reads in a single pass). With chat the prompt
// (the question) is the user message, rendered with the chat template, and the completion begins the
// assistant's reply.
import { InputError, type Qwen3Model } from "../model/qwen3.js";
import { renderPromptText, type TextTokenizer } from "../tokenizer/index.js";

export interface ContrastivePair {
  prompt: string;
  positive: string;
  negative: string;
  /** which of the two file forms the line used */
  form: "completion" | "ab";
  /** 1-based line number in the file */
  line: number;
}

const FORMS = [
  { form: "completion" as const, keys: ["prompt", "positive", "negative"] },
  { form: "ab" as const, keys: ["question", "answer_matching_behavior", "answer_not_matching_behavior"] },
];

/** Parse JSON Lines pairs; `where` names the file in errors ("--pairs FILE"). Blank lines are skipped. */
export function parsePairs(text: string, where: string): ContrastivePair[] {
  const pairs: ContrastivePair[] = [];
  const lines = text.split(/\r?\n/);
  lines.forEach((raw, i) => {
    const line = i + 1;
    if (raw.trim() === "") return;
    let obj: unknown;
    try {
      obj = JSON.parse(raw);
    } catch (e) {
      throw new InputError(`${where}: line ${line} is not valid JSON (${(e as Error).message})`);
    }
    if (typeof obj !== "object" || obj === null || Array.isArray(obj)) throw new InputError(`${where}: line ${line}: expected a JSON object`);
    const o = obj as Record<string, unknown>;
    const form = FORMS.find((f) => f.keys.some((k) => k in o));
    if (!form) {
      throw new InputError(`${where}: line ${line}: expected {"prompt", "positive", "negative"} or {"question", "answer_matching_behavior", "answer_not_matching_behavior"}`);
    }
    for (const k of form.keys) {
      if (!(k in o)) throw new InputError(`${where}: line ${line}: missing field "${k}"`);
      if (typeof o[k] !== "string") throw new InputError(`${where}: line ${line}: field "${k}" must be a string`);
    }
    const [p, pos, neg] = form.keys.map((k) => o[k] as string);
    if (pos === "" || neg === "") throw new InputError(`${where}: line ${line}: empty completion`);
    pairs.push({ prompt: p, positive: pos, negative: neg, form: form.form, line });
  });
  if (pairs.length === 0) throw new InputError(`${where}: no pairs (the file has no non-blank lines)`);
  return pairs;
}

export interface PairTokens {
  positive: number[];
  negative: number[];
  line: number;
}

/** Token ids of prompt + positive and prompt + negative, as documented above. */
export function tokenizePair(tok: TextTokenizer, pair: ContrastivePair, opts: { chat?: boolean; system?: string } = {}): PairTokens {
  const head = renderPromptText(tok, pair.prompt, opts);
  // Chat text already holds its special tokens as text; plain text gets the tokenizer's defaults, as
  // renderPrompt does for prompts.
  const encode = (s: string) => (opts.chat ? tok.encode(s, { addSpecialTokens: false }) : tok.encode(s));
  return { positive: encode(head + pair.positive), negative: encode(head + pair.negative), line: pair.line };
}

export interface CaaResult {
  /** the mean difference, float64 */
  vector: Float64Array;
  /** number of pairs averaged */
  count: number;
  /** the resolved (non-negative) answer rows of each pair: [positive, negative] */
  rows: [number, number][];
}

function answerRow(position: number, length: number, what: string): number {
  const r = position < 0 ? length + position : position;
  if (!Number.isInteger(position) || r < 0 || r >= length) {
    throw new InputError(`--answer-position ${position} is out of range for ${what} (${length} tokens: 0..${length - 1}, or -${length}..-1 from the end)`);
  }
  return r;
}

/**
 * Mean over pairs of (layer-S output at the answer row of positive) - (same for negative). Runs
 * layers 0..S only, without a graph; `answerPosition` counts from the end when negative.
 */
export function caaVector(model: Qwen3Model, pairs: readonly PairTokens[], sourceLayer: number, answerPosition = -1): CaaResult {
  const L = model.config.numLayers;
  if (!Number.isInteger(sourceLayer) || sourceLayer < 0 || sourceLayer >= L) throw new InputError(`--source-layer ${sourceLayer} is out of range: the model has layers 0..${L - 1}`);
  if (pairs.length === 0) throw new InputError("no pairs");
  const d = model.config.hiddenSize;
  const ctx = model.ctx;
  const acc = new Float64Array(d);
  const rows: [number, number][] = [];
  const rowAt = (tokens: number[], row: number, sign: number) =>
    ctx.rt.heap.scope(() => {
      const h = ctx.noGrad(() => model.runLayers(model.embed(tokens), 0, sourceLayer));
      const v = h.view();
      for (let j = 0; j < d; j++) acc[j] += sign * v[row * d + j];
    });
  for (const p of pairs) {
    const rp = answerRow(answerPosition, p.positive.length, `the positive completion of line ${p.line}`);
    const rn = answerRow(answerPosition, p.negative.length, `the negative completion of line ${p.line}`);
    model.checkTokens(p.positive, `line ${p.line} (positive)`);
    model.checkTokens(p.negative, `line ${p.line} (negative)`);
    rowAt(p.positive, rp, 1);
    rowAt(p.negative, rn, -1);
    rows.push([rp, rn]);
  }
  for (let j = 0; j < d; j++) acc[j] /= pairs.length;
  return { vector: acc, count: pairs.length, rows };
}
