// evalAb: questions scored by logit(matching answer token) - logit(other answer token) at the last
// prompt position, unsteered and per (vector, scale), in one call (what `jacsteer eval-ab` runs), on
// the engine's forward. Items come from the dataset reader and prompt builder caa uses.
import { ForwardModel } from "../engine/forward.js";
import type { WeightMode } from "../engine/steering-engine.js";
import { evaluateAbBatched, summarizeAb, toAbPrompt, type AbPrompt, type AbRow, type AbSummary } from "../evaluation/ab.js";
import { buildItemPrompt, describeToken, doublesAnswer } from "../evaluation/prompt.js";
import { selectDatasetItems, type DatasetChoice, type DatasetInput } from "../evaluation/select.js";
import { checkTokens, InputError } from "../model/qwen3.js";
import { LazyTokenizer, Reporter, throwIfAborted, withGemm, type CallResult, type CommonOptions } from "./common.js";
import { checkScales, steeringLayer, vectorChoices, type SteeringVectorInput } from "./steering.js";

export interface EvalAbOptions extends CommonOptions {
  /** The dataset's text and which items to use (the held-out part of a split), or items already chosen. */
  dataset: DatasetInput | DatasetChoice;
  chat?: boolean;
  system?: string;
  /** Text between the question and the answer (default: none with chat or after "Answer:", else "\n\nAnswer:"). */
  answerPrefix?: string;
  /** Steering vectors; each is run at every scale (needs scales). */
  vectors?: readonly SteeringVectorInput[];
  scales?: readonly number[];
  /** Layer whose output receives scale * vector (default: the vectors' common sourceLayer, else the model-size default). */
  layer?: number;
  weights?: WeightMode;
  /** After each question. */
  onProgress?: (p: { done: number; total: number }) => void;
}

export interface EvalAbFirstItem {
  item: string;
  prompt: string;
  prompt_tokens: number;
  matching_token: { id: number; text: string };
  other_token: { id: number; text: string };
}

export interface EvalAbResult extends CallResult {
  /** One row per question and (vector, scale), the unsteered baseline included. */
  rows: AbRow[];
  /** Per (vector, scale) shares and means, per vector the slope and R^2 against scale. */
  summary: AbSummary;
  /** The questions as scored: token ids and the two answer token ids. */
  prompts: AbPrompt[];
  firstItem: EvalAbFirstItem;
  /** Which items were used (the dataset selection's summary). */
  items: Record<string, unknown>;
  /** The steering layer, or null without vectors. */
  layer: number | null;
  vectors: string[];
  scales: number[];
  weights: "resident" | "stream";
  threads: number;
}

export async function evalAb(o: EvalAbOptions): Promise<EvalAbResult> {
  const rep = new Reporter(o);
  const log = rep.log;
  const scales = o.scales === undefined ? undefined : [...o.scales];
  const vectorInputs = o.vectors ?? [];
  if (vectorInputs.length && !scales) throw new InputError("--vectors needs --scales (e.g. --scales -10,-5,0,5,10)");
  if (scales && !vectorInputs.length) throw new InputError("--scales needs --vectors");
  if (o.layer !== undefined && !vectorInputs.length) throw new InputError("--layer needs --vectors");
  if (o.system !== undefined && !o.chat) throw new InputError("--system needs --chat");
  if (scales) checkScales(scales);
  const chat = !!o.chat;
  const answerPrefix = o.answerPrefix;
  const chosen = "items" in o.dataset && "summary" in o.dataset ? o.dataset : selectDatasetItems(o.dataset, "evaluate");
  throwIfAborted(o.signal);

  const config = o.model.config;
  const L = config.numLayers;
  const vectors = vectorChoices(vectorInputs, config.hiddenSize);
  const tok = await new LazyTokenizer(o.tokenizer).get();
  if (!tok) throw new InputError(`${o.model.dir ? `--model ${o.model.dir}` : "the model"}: no tokenizer.json (eval-ab tokenizes the questions)`);
  const prompts = chosen.items.map((item, i) => toAbPrompt(buildItemPrompt(tok, item, { chat, system: o.system, answerPrefix }), i));
  const doubled = answerPrefix === undefined ? [] : chosen.items.filter((it) => it.kind !== "completion" && doublesAnswer(it.question, answerPrefix));
  if (doubled.length) rep.warn(`--answer-prefix ${JSON.stringify(answerPrefix)} adds a second "Answer:" to ${doubled.length} question(s) that already end in one (first: ${doubled[0].where})`);
  const S = vectors.length ? steeringLayer(o.layer, L, vectors, rep) : -1;
  prompts.forEach((p) => checkTokens(config, p.tokens.concat([p.matchingId, p.otherId]), p.item.where));
  const rt = o.runtime;
  const name = o.model.name ?? "model";

  const { rows, weights, threads } = await withGemm(o, async (gemm) => {
    const model = await ForwardModel.create(rt, config, o.model.tensors, { gemm, log, weights: o.weights ?? "auto", scoredTokens: prompts.flatMap((p) => [p.matchingId, p.otherId]) });
    try {
      log(
        `jacsteer: ${name}: ${chosen.description}; prompts of ${Math.min(...prompts.map((p) => p.tokens.length))}..${Math.max(...prompts.map((p) => p.tokens.length))} tokens` +
          `${chat ? " (chat template)" : ""}; ${vectors.length ? `${vectors.length} vector(s) x ${scales!.length} scale(s) at layer ${S}` : "unsteered only"}; threads ${o.threads ?? 1}; kernels ${rt.build}`,
      );
      const p0 = prompts[0];
      log(`jacsteer: first item (${p0.item.where}): prompt ${JSON.stringify(tok.decode(p0.tokens))} (${p0.tokens.length} tokens)`);
      log(`jacsteer: first item: scores logit(${describeToken(tok, p0.matchingId)}) - logit(${describeToken(tok, p0.otherId)}) at its last position (matching minus other)`);
      const evalStart = performance.now();
      let lastLog = evalStart;
      throwIfAborted(o.signal);
      const rows = await evaluateAbBatched(model, prompts, {
        layer: S,
        vectors,
        scales: scales ?? [],
        onQuestion: (done, total) => {
          throwIfAborted(o.signal);
          o.onProgress?.({ done, total });
          if (done === total || performance.now() - lastLog > 2000) {
            // every question costs about the same (the same sequences), so the rate so far predicts the rest
            const elapsed = (performance.now() - evalStart) / 1000;
            log(`jacsteer: ${done}/${total} questions, ${elapsed.toFixed(0)} s${done < total ? `, about ${((elapsed * (total - done)) / done).toFixed(0)} s left` : ""}`);
            lastLog = performance.now();
          }
        },
      });
      return { rows, weights: model.weightPlan.mode, threads: gemm?.threads ?? 1 };
    } finally {
      await model.close();
    }
  });
  const summary = summarizeAb(rows);
  for (const l of summary.linearity) if (l.fit_warning) rep.warn(`vector ${l.vector_index} (${l.vector}): ${l.fit_warning}`);
  const p0 = prompts[0];
  return {
    rows,
    summary,
    prompts,
    firstItem: {
      item: p0.item.where,
      prompt: tok.decode(p0.tokens),
      prompt_tokens: p0.tokens.length,
      matching_token: { id: p0.matchingId, text: tok.decode([p0.matchingId]) },
      other_token: { id: p0.otherId, text: tok.decode([p0.otherId]) },
    },
    items: chosen.summary,
    layer: vectors.length ? S : null,
    vectors: vectors.map((v) => v.label),
    scales: scales ?? [],
    weights,
    threads,
    kernels: rt.build,
    seconds: rep.seconds(),
    warnings: rep.warnings,
  };
}
