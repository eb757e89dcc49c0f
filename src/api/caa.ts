// caa: a contrastive activation addition vector in one call (what `jacsteer caa` runs): the mean over
// a dataset's items of the layer-S output at the answer token, positive minus negative, on the engine's
// forward. Items come from the dataset reader and prompt builder eval-ab uses (src/evaluation/).
import { caaVectorBatched, type PairTokens } from "../caa/caa.js";
import { ForwardModel, type ForwardOptions } from "../engine/forward.js";
import type { WeightMode } from "../engine/steering-engine.js";
import { buildItemPrompt, describeToken, doublesAnswer, type ItemPrompt } from "../evaluation/prompt.js";
import { selectDatasetItems, type DatasetChoice, type DatasetInput } from "../evaluation/select.js";
import { modelConfigKey } from "../io/run-identity.js";
import { InputError } from "../model/qwen3.js";
import { LazyTokenizer, Reporter, checkLayer, defaultLayers, sha256Hex, throwIfAborted, withGemm, type CommonOptions, type VectorFileResult } from "./common.js";

/** A CAA vector shorter than this share of the median layer-S norm is probably reading a shared token. */
export const CAA_MIN_NORM_SHARE = 0.05;

export interface CaaOptions extends CommonOptions {
  /** The dataset's text and which items to use (the train part of a split), or items already chosen (selectDatasetItems). */
  dataset: DatasetInput | DatasetChoice;
  /** Layer whose output is read (default: the seed's 6 of 28, scaled to the model). */
  sourceLayer?: number;
  /** Render the question as a user message with the chat template (thinking disabled). */
  chat?: boolean;
  system?: string;
  /** Text between the question and the answer (default: none with chat or after "Answer:", else "\n\nAnswer:"). */
  answerPrefix?: string;
  /** Read this token of every sequence instead of where the answers differ (-1 the last). */
  answerPosition?: number;
  /** Scale the vector to unit norm (its raw norm stays in the metadata). */
  normalize?: boolean;
  weights?: WeightMode;
  /** After each batch of sequences. */
  onProgress?: (p: { done: number; total: number }) => void;
  /** @internal activation memory of one batch (tests). */
  activationBytes?: number;
}

export interface CaaFirstItem {
  item: string;
  positive_text: string;
  negative_text: string;
  read_rows: [number, number];
  positive_token: { id: number; text: string };
  negative_token: { id: number; text: string };
}

/** One row, the CAA vector (unit norm with normalize); the vector file's metadata. */
export interface CaaApiResult extends VectorFileResult {
  vector: Float32Array;
  count: number;
  sourceLayer: number;
  rawNorm: number;
  medianNorm: number;
  /** The rows read in each pair: [positive, negative]. */
  answerRows: [number, number][];
  /** Token ids per item: [positive, negative]. */
  tokens: number[][][];
  firstItem: CaaFirstItem;
  /** Which items were used (the dataset selection's summary). */
  items: Record<string, unknown>;
  weights: "resident" | "stream";
  threads: number;
}

export async function caa(o: CaaOptions): Promise<CaaApiResult> {
  const rep = new Reporter(o);
  const log = rep.log;
  if (o.system !== undefined && !o.chat) throw new InputError("--system needs --chat");
  const chosen = "items" in o.dataset && "summary" in o.dataset ? o.dataset : selectDatasetItems(o.dataset, "train");
  const explicitPosition = o.answerPosition;
  if (explicitPosition !== undefined && !Number.isInteger(explicitPosition)) throw new InputError(`--answer-position ${explicitPosition}: expected an integer`);
  const answerPrefix = o.answerPrefix;
  throwIfAborted(o.signal);
  const config = o.model.config;
  const L = config.numLayers;
  const S = o.sourceLayer ?? defaultLayers(L).source;
  if (o.sourceLayer === undefined) log(`jacsteer: using --source-layer ${S} (default for a ${L}-layer model; the seed used 6 of 28)`);
  checkLayer(L, S, "--source-layer");

  const tok = await new LazyTokenizer(o.tokenizer).require("caa");
  const style = { chat: !!o.chat, system: o.system, answerPrefix };
  const prompts: ItemPrompt[] = chosen.items.map((item) => buildItemPrompt(tok, item, style));
  const pairs: PairTokens[] = prompts.map((p) => {
    const base = { positive: p.matchingTokens, negative: p.otherTokens, where: p.item.where };
    if (explicitPosition !== undefined || p.item.kind === "completion") return base;
    if (p.answerPosition === null) throw new InputError(p.problem!);
    return { ...base, rows: [p.answerPosition, p.answerPosition] as [number, number] };
  });
  const doubled = answerPrefix === undefined ? [] : chosen.items.filter((it) => it.kind !== "completion" && doublesAnswer(it.question, answerPrefix));
  if (doubled.length) rep.warn(`--answer-prefix ${JSON.stringify(answerPrefix)} adds a second "Answer:" to ${doubled.length} question(s) that already end in one (first: ${doubled[0].where})`);
  const rt = o.runtime;
  const name = o.model.name ?? "model";
  log(`jacsteer: ${name}: ${L} layers, hidden ${config.hiddenSize}; S=${S}; ${chosen.description}; threads ${o.threads ?? 1}; kernels ${rt.build}`);
  const { result, weightMode, threads } = await withGemm(o, async (gemm) => {
    // Only layers 0..S are read.
    const fo: ForwardOptions = { gemm, log, weights: o.weights ?? "auto", layers: S + 1 };
    const model = await ForwardModel.create(rt, config, o.model.tensors, fo);
    try {
      const onBatch = (done: number, total: number) => {
        throwIfAborted(o.signal);
        o.onProgress?.({ done, total });
      };
      throwIfAborted(o.signal);
      const result = await caaVectorBatched(model, pairs, S, explicitPosition ?? -1, o.activationBytes, onBatch);
      return { result, weightMode: model.weightPlan.mode, threads: gemm?.threads ?? 1 };
    } finally {
      await model.close();
    }
  });
  const rawNorm = Math.sqrt(result.vector.reduce((s, x) => s + x * x, 0));

  // What was computed, shown on the first item: its exact token sequences and the token read.
  const p0 = pairs[0], [r0p, r0n] = result.rows[0];
  const firstItem: CaaFirstItem = {
    item: prompts[0].item.where,
    positive_text: tok.decode(p0.positive),
    negative_text: tok.decode(p0.negative),
    read_rows: [r0p, r0n],
    positive_token: { id: p0.positive[r0p], text: tok.decode([p0.positive[r0p]]) },
    negative_token: { id: p0.negative[r0n], text: tok.decode([p0.negative[r0n]]) },
  };
  log(`jacsteer: first item (${prompts[0].item.where}): positive ${JSON.stringify(firstItem.positive_text)}`);
  log(`jacsteer: first item: negative ${JSON.stringify(firstItem.negative_text)}`);
  log(
    `jacsteer: first item: reads layer ${S} at token ${r0p} of ${p0.positive.length} (${describeToken(tok, firstItem.positive_token.id)}) / ${r0n} of ${p0.negative.length} (${describeToken(tok, firstItem.negative_token.id)})` +
      (explicitPosition !== undefined ? ` (--answer-position ${explicitPosition})` : prompts[0].item.kind === "completion" ? " (the last token)" : " (where the answers differ)"),
  );
  if (!(rawNorm >= CAA_MIN_NORM_SHARE * result.medianNorm)) {
    rep.warn(
      `the CAA vector's norm ${rawNorm.toPrecision(4)} is ${((100 * rawNorm) / result.medianNorm).toFixed(2)}% of the median layer-${S} norm ${result.medianNorm.toPrecision(4)} (below ${CAA_MIN_NORM_SHARE * 100}%): ` +
        `the positive and negative activations barely differ where they are read${explicitPosition !== undefined ? ` (--answer-position ${explicitPosition} may read a token both answers share)` : ""}`,
    );
  }
  if (o.normalize && !(rawNorm > 0)) throw new InputError(`--normalize: the mean difference is zero (positive and negative completions give the same layer-${S} activations)`);
  const vector = Float32Array.from(result.vector, (x) => (o.normalize ? x / rawNorm : x));

  const tokens = pairs.map((p) => [p.positive, p.negative]);
  const position = explicitPosition !== undefined ? String(explicitPosition) : "answer-token";
  const metadata: Record<string, string> = {
    method: "caa",
    model: name,
    model_path: o.model.dir ?? "",
    model_config: modelConfigKey(config),
    source_layer: String(S),
    // A CAA vector is read and added at layer S; it has no target layer and no randomness beyond the split.
    target_layer: "",
    positions: `answer:${position}`,
    answer_position: position,
    seed: chosen.summary.split ? String((chosen.summary.split as { seed: number }).seed) : "",
    pairs_file: String(chosen.summary.file ?? ""),
    dataset: JSON.stringify({ ...chosen.summary, used: undefined, swapped: undefined }),
    pair_count: String(result.count),
    layer: String(S),
    normalize: String(!!o.normalize),
    raw_norm: String(rawNorm),
    median_norm: String(result.medianNorm),
    chat: String(!!o.chat),
    system: o.system === undefined ? "" : String(o.system),
    answer_prefix: answerPrefix ?? "",
    tokens_sha256: await sha256Hex(JSON.stringify(tokens)),
    dtype: "float32",
    implementation: "jacsteer",
    kernels: rt.build,
  };
  return {
    vectors: [vector],
    vector,
    count: result.count,
    sourceLayer: S,
    rawNorm,
    medianNorm: result.medianNorm,
    answerRows: result.rows,
    tokens,
    firstItem,
    items: chosen.summary,
    weights: weightMode,
    threads,
    kernels: rt.build,
    seconds: rep.seconds(),
    metadata,
    warnings: rep.warnings,
  };
}
