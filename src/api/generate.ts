// generate: steered text generation in one call (what `jacsteer generate` runs): every (vector, scale,
// prompt) combination decoded together on the engine's forward, a KV cache per sequence, scale *
// vector added to layer S's output at every position, prompt and generated.
import { ForwardModel } from "../engine/forward.js";
import type { WeightMode } from "../engine/steering-engine.js";
import { generateBatched } from "../generation/batched.js";
import { checkTokens, InputError } from "../model/qwen3.js";
import { LazyTokenizer, Reporter, throwIfAborted, tokenizePrompts, withGemm, type CallResult, type CommonOptions, type PromptInput, type PromptStyleOptions } from "./common.js";
import { checkScales, steeringLayer, vectorChoices, type SteeringVectorInput, type VectorChoice } from "./steering.js";

export interface GenerateApiOptions extends CommonOptions, PromptStyleOptions {
  prompts: readonly PromptInput[];
  /** Steering vectors; each runs at every scale with every prompt (needs scales). Without: unsteered. */
  vectors?: readonly SteeringVectorInput[];
  scales?: readonly number[];
  /** Layer whose output receives scale * vector (default: the vectors' common sourceLayer, else the model-size default). */
  layer?: number;
  /** Tokens to generate at most (default 64). */
  maxNewTokens?: number;
  /** 0 = greedy (default); > 0 samples from softmax(logits / T). */
  temperature?: number;
  /** Nucleus sampling mass (default 1; needs temperature > 0). */
  topP?: number;
  /** Sampling seed (default 0); every combination samples from its own stream of it. */
  seed?: number;
  /** Do not stop at the tokenizer's end-of-sequence tokens. */
  ignoreEos?: boolean;
  weights?: WeightMode;
  /** The combinations' labels ("vector 0 (FILE:ROW) scale 4", "unsteered"), in order, once known (before loading). */
  onLabels?: (labels: string[]) => void;
  /** Called once the weights are loaded, before the first token. */
  onStart?: () => void;
  /** Each token as it is chosen: combination index, token id, step. */
  onToken?: (combination: number, token: number, step: number) => void;
}

/** One (vector, scale, prompt) combination and what it generated. */
export interface Generation {
  vector: string | null;
  vector_index: number | null;
  scale: number | null;
  layer: number | null;
  prompt: number;
  prompt_tokens: number[];
  /** The new token ids, an end-of-sequence id included. */
  tokens: number[];
  prompt_text: string | null;
  /** The new text without the end-of-sequence token (null without a tokenizer). */
  text: string | null;
  stop: "eos" | "length";
  /** "vector 0 (FILE:ROW) scale 4" / "unsteered", as the CLI labels it. */
  label: string;
}

export interface GenerateResult extends CallResult {
  generations: Generation[];
  /** The steering layer, or null without vectors. */
  layer: number | null;
  /** Token ids of every prompt, as run. */
  tokens: number[][];
  threads: number;
}

export async function generate(o: GenerateApiOptions): Promise<GenerateResult> {
  const rep = new Reporter(o);
  const log = rep.log;
  const maxNewTokens = o.maxNewTokens ?? 64;
  if (!(Number.isInteger(maxNewTokens) && maxNewTokens >= 1)) throw new InputError(`--max-new-tokens ${maxNewTokens}: must be at least 1`);
  const temperature = o.temperature ?? 0;
  if (!(temperature >= 0)) throw new InputError(`--temperature ${temperature}: must not be negative (0 = greedy)`);
  const topP = o.topP ?? 1;
  if (!(topP > 0 && topP <= 1)) throw new InputError(`--top-p ${topP}: must be in (0, 1]`);
  if (o.topP !== undefined && temperature === 0) throw new InputError("--top-p needs --temperature > 0 (greedy decoding ignores it)");
  const seed = o.seed ?? 0;
  if (!(Number.isSafeInteger(seed) && seed >= 0)) throw new InputError(`--seed ${seed}: expected a non-negative safe integer`);
  const scales = o.scales === undefined ? undefined : [...o.scales];
  const vectorInputs = o.vectors ?? [];
  if (vectorInputs.length && !scales) throw new InputError("--vectors needs --scales (e.g. --scales -10,-5,0,5,10)");
  if (scales && !vectorInputs.length) throw new InputError("--scales needs --vectors");
  if (o.layer !== undefined && !vectorInputs.length) throw new InputError("--layer needs --vectors");
  if (scales) checkScales(scales);
  throwIfAborted(o.signal);

  const config = o.model.config;
  const L = config.numLayers;
  const d = config.hiddenSize;
  const vectors = vectorChoices(vectorInputs, d);
  const lazy = new LazyTokenizer(o.tokenizer);
  const prompts = await tokenizePrompts(o.prompts, o, lazy);
  const tok = await lazy.get();
  const S = vectors.length ? steeringLayer(o.layer, L, vectors, rep) : -1;
  if (scales && !scales.includes(0)) rep.warn(`--scales ${scales.join(",")} has no 0: there is no unsteered generation to compare the steered ones with (add 0, e.g. --scales ${[...scales, 0].sort((a, b) => a - b).join(",")})`);
  prompts.forEach((p, i) => checkTokens(config, p, prompts.length > 1 ? `prompt ${i}` : "prompt"));
  const capacity = Math.max(...prompts.map((p) => p.length)) + maxNewTokens;
  if (capacity > config.maxPositionEmbeddings) log(`jacsteer: note: up to ${capacity} positions, beyond the model's max_position_embeddings ${config.maxPositionEmbeddings}`);
  const eosTokenIds = o.ignoreEos ? [] : (tok?.eosTokenIds ?? []);
  const rt = o.runtime;
  const name = o.model.name ?? "model";
  log(
    `jacsteer: ${name}: ${L} layers, hidden ${d}; ${prompts.length} prompt(s) of ${prompts.map((p) => p.length).join(", ")} tokens; ` +
      `${vectors.length ? `${vectors.length} vector(s) x ${scales!.length} scale(s) at layer ${S}` : "unsteered"}; ` +
      `${temperature === 0 ? "greedy" : `temperature ${temperature}, top-p ${topP}, seed ${seed}`}; up to ${maxNewTokens} new tokens; threads ${o.threads ?? 1}; kernels ${rt.build}`,
  );

  const combos: { vector: VectorChoice | null; scale: number | null; prompt: number }[] = [];
  if (vectors.length) {
    for (const v of vectors) for (const scale of scales!) for (let p = 0; p < prompts.length; p++) combos.push({ vector: v, scale, prompt: p });
  } else {
    for (let p = 0; p < prompts.length; p++) combos.push({ vector: null, scale: null, prompt: p });
  }
  const labels = combos.map((c) => {
    const promptPart = prompts.length > 1 ? `${c.vector ? ", " : " "}prompt ${c.prompt}` : "";
    return c.vector ? `vector ${c.vector.index} (${c.vector.label}) scale ${c.scale}${promptPart}` : `unsteered${promptPart}`;
  });

  o.onLabels?.(labels);
  const { res, threads } = await withGemm(o, async (gemm) => {
    const t0 = performance.now();
    const model = await ForwardModel.create(rt, config, o.model.tensors, { gemm, log, weights: o.weights ?? "auto", fullHead: true });
    try {
      const tLoad = performance.now();
      throwIfAborted(o.signal);
      o.onStart?.();
      const res = await generateBatched(
        model,
        combos.map((c) => ({ prompt: prompts[c.prompt], steer: c.vector ? c.vector.vector.map((x) => x * c.scale!) : null })),
        {
          maxNewTokens,
          temperature,
          topP,
          seed,
          layer: S,
          eosTokenIds,
          onToken: (i, id, step) => {
            // every sequence's token of a step comes before the next step: check once per step
            if (i === 0) throwIfAborted(o.signal);
            o.onToken?.(i, id, step);
          },
        },
      );
      const secs = (performance.now() - tLoad) / 1000;
      const total = res.reduce((a, r) => a + r.tokens.length, 0);
      log(`jacsteer: ${combos.length} sequence(s) decoded together: ${total} tokens in ${secs.toFixed(2)} s, ${(total / secs).toFixed(1)} tokens/s (load ${((tLoad - t0) / 1000).toFixed(1)} s)`);
      return { res, threads: gemm?.threads ?? 1 };
    } finally {
      await model.close();
    }
  });
  const generations: Generation[] = combos.map((c, i) => {
    const r = res[i];
    return {
      vector: c.vector?.label ?? null,
      vector_index: c.vector?.index ?? null,
      scale: c.scale,
      layer: c.vector ? S : null,
      prompt: c.prompt,
      prompt_tokens: prompts[c.prompt],
      tokens: r.tokens,
      prompt_text: tok ? tok.decode(prompts[c.prompt]) : null,
      text: tok ? tok.decode(r.stop === "eos" ? r.tokens.slice(0, -1) : r.tokens) : null,
      stop: r.stop,
      label: labels[i],
    };
  });
  return { generations, layer: vectors.length ? S : null, tokens: prompts, threads, kernels: rt.build, seconds: rep.seconds(), warnings: rep.warnings };
}
