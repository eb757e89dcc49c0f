// `jacsteer caa`: a CAA steering vector (src/caa/): the mean over items of the layer-S output at the
// answer token, positive minus negative; one row in a vector file (method "caa"). Items come from the
// dataset reader and prompt builder eval-ab uses (src/evaluation/), so the vector is read where
// eval-ab scores.
import { createHash } from "node:crypto";
import { intFlag, parseFlags, type Options } from "./args.js";
import { UsageError } from "./errors.js";
import { checkOutPath, defaultLayers, defaultModelDir, log, warn, warnings } from "./session.js";
import { chooseItems, DATASET_HELP, DATASET_OPTIONS } from "./dataset-flags.js";
import { encodeVectorFile } from "../io/vector-file.js";
import { modelConfigKey } from "../io/run-identity.js";
import { writeFileAtomic } from "../node/safetensors-file.js";
import { loadTokenizerFromDir } from "../node/tokenizer-files.js";
import { caaVectorBatched, type PairTokens } from "../caa/caa.js";
import { ForwardModel } from "../engine/forward.js";
import { createNodeRuntime } from "../node/runtime.js";
import { createParallelGemm } from "../node/thread-pool.js";
import { threadsFlag } from "./threads.js";
import { weightsFlag, WEIGHTS_HELP } from "./weights-flag.js";
import { buildItemPrompt, describeToken, doublesAnswer, unescapeFlagText } from "../evaluation/prompt.js";
import { InputError } from "../model/qwen3.js";

/** A CAA vector shorter than this share of the median layer-S norm is probably reading a shared token. */
export const CAA_MIN_NORM_SHARE = 0.05;

export const CAA_HELP = `jacsteer caa: contrastive activation addition: the mean over items of
  h_S(prompt + positive answer)[answer token] - h_S(prompt + negative answer)[answer token]
where h_S is the output of layer S (where steering vectors are added).

${DATASET_HELP}  --pairs FILE             the same as --dataset (the older name)
  --model DIR              checkpoint directory (default: the bundled tiny model, random weights: for
                           tests only)
  --source-layer S         layer whose output is read (default: scaled from the seed's 6 of 28)
  --chat, --system TEXT    the question is a user message rendered with the chat template (generation
                           prompt added, thinking disabled); the answer starts the assistant's reply
  --answer-prefix TEXT     text between the question and the answer (default: none with --chat or when
                           the question already ends in "Answer:", else "\\n\\nAnswer:"; \\n and \\t are
                           unescaped). Prompt/completion items take their completion verbatim.
  --answer-position P      read this token instead (every item): -1 = the last token of prompt +
                           answer, -2 the one before, 0 the first
  --normalize              scale the vector to unit norm (its raw norm is kept in the metadata)
  --out FILE.safetensors   write the vector (one row) and run metadata (method "caa")
  --threads N              worker threads (default: all cores; more than the cores is capped, with a line)
${WEIGHTS_HELP}  --json                   print a JSON summary on stdout (first_item, items, warnings, ...)

The prompt: question (or its chat rendering) + prefix + the answer written as it follows: "(A)" for a
letter, the answer text (" Yes") otherwise, tokenized as a whole. The answer token is the one token
where the positive and negative sequences differ: the letter (the closing ")" is shared and would give
a vector near zero), or " Yes" / " No"; answers that differ in more than one token are an error naming
the item. Prompt/completion items are read at their last token. The first item's exact token sequences
and the token read are printed to stderr. A vector whose norm is below ${CAA_MIN_NORM_SHARE * 100}% of the median
layer-S norm gets a warning.

How it runs: every item's two sequences are stacked through layers 0..S together (in batches that
keep memory bounded) on --threads threads; layers past S are never read. The vector does not depend
on --threads or the batching.
`;

const OPTIONS: Options = {
  ...DATASET_OPTIONS,
  model: { type: "string" },
  pairs: { type: "string" },
  "source-layer": { type: "string" },
  "answer-position": { type: "string" },
  "answer-prefix": { type: "string" },
  chat: { type: "boolean" },
  system: { type: "string" },
  normalize: { type: "boolean" },
  out: { type: "string" },
  json: { type: "boolean" },
  threads: { type: "string" },
  weights: { type: "string" },
  help: { type: "boolean", short: "h" },
};

export async function caa(argv: string[]): Promise<number> {
  const f = parseFlags(argv, OPTIONS);
  if (f.help) {
    process.stdout.write(CAA_HELP);
    return 0;
  }
  if (f.dataset !== undefined && f.pairs !== undefined) throw new UsageError("--pairs is the older name of --dataset: give one of them");
  const flag = f.pairs !== undefined ? "--pairs" : "--dataset";
  const file = (f.dataset ?? f.pairs) as string | undefined;
  if (file === undefined) throw new UsageError("--dataset FILE is required (questions or contrastive pairs: JSON Lines, a JSON array, or a combined {eval: [items]} file)");
  if (f.system !== undefined && !f.chat) throw new UsageError("--system needs --chat");
  const explicitPosition = f["answer-position"] === undefined ? undefined : intFlag(f, "answer-position", -1, -Infinity)!;
  const answerPrefix = f["answer-prefix"] === undefined ? undefined : unescapeFlagText(String(f["answer-prefix"]));
  checkOutPath(f.out as string | undefined);
  const threads = threadsFlag(f, log);
  const weights = weightsFlag(f);
  const chosen = chooseItems(f, "train", file, flag);

  const started = performance.now();
  const { openCheckpoint } = await import("../node/checkpoint.js");
  const peek = openCheckpoint((f.model as string | undefined) ?? defaultModelDir());
  const L = peek.config.numLayers;
  peek.close();
  const S = intFlag(f, "source-layer", defaultLayers(L).source)!;
  if (f["source-layer"] === undefined) log(`jacsteer: using --source-layer ${S} (default for a ${L}-layer model; the seed used 6 of 28)`);
  if (S < 0 || S >= L) throw new UsageError(`--source-layer ${S} is out of range: the model has layers 0..${L - 1}`);

  // Only layers 0..S are read.
  const ckpt = openCheckpoint((f.model as string | undefined) ?? defaultModelDir());
  const config = ckpt.config;
  let pairs: PairTokens[];
  let prompts;
  let tok;
  try {
    tok = await loadTokenizerFromDir(ckpt.dir);
    const style = { chat: !!f.chat, system: f.system as string | undefined, answerPrefix };
    prompts = chosen.items.map((item) => buildItemPrompt(tok!, item, style));
    pairs = prompts.map((p) => {
      const base = { positive: p.matchingTokens, negative: p.otherTokens, where: p.item.where };
      if (explicitPosition !== undefined || p.item.kind === "completion") return base;
      if (p.answerPosition === null) throw new InputError(p.problem!);
      return { ...base, rows: [p.answerPosition, p.answerPosition] as [number, number] };
    });
  } catch (e) {
    ckpt.close();
    throw e;
  }
  const doubled = answerPrefix === undefined ? [] : chosen.items.filter((it) => it.kind !== "completion" && doublesAnswer(it.question, answerPrefix));
  if (doubled.length) warn(`--answer-prefix ${JSON.stringify(answerPrefix)} adds a second "Answer:" to ${doubled.length} question(s) that already end in one (first: ${doubled[0].where})`);
  const rt = await createNodeRuntime();
  log(`jacsteer: ${ckpt.name}: ${L} layers, hidden ${config.hiddenSize}; S=${S}; ${chosen.description}; threads ${threads}; kernels ${rt.build}`);
  const gemm = await createParallelGemm(rt, threads);
  let result;
  let weightMode;
  try {
    const model = await ForwardModel.create(rt, config, ckpt.tensors, { gemm, log, weights, layers: S + 1 });
    weightMode = model.weightPlan.mode;
    result = await caaVectorBatched(model, pairs, S, explicitPosition ?? -1);
  } catch (e) {
    ckpt.close();
    throw e;
  } finally {
    await gemm.close();
  }
  const rawNorm = Math.sqrt(result.vector.reduce((s, x) => s + x * x, 0));

  // What was computed, shown on the first item: its exact token sequences and the token read.
  const p0 = pairs[0], [r0p, r0n] = result.rows[0];
  const firstItem = {
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
    warn(
      `the CAA vector's norm ${rawNorm.toPrecision(4)} is ${((100 * rawNorm) / result.medianNorm).toFixed(2)}% of the median layer-${S} norm ${result.medianNorm.toPrecision(4)} (below ${CAA_MIN_NORM_SHARE * 100}%): ` +
        `the positive and negative activations barely differ where they are read${explicitPosition !== undefined ? ` (--answer-position ${explicitPosition} may read a token both answers share)` : ""}`,
    );
  }
  if (f.normalize && !(rawNorm > 0)) throw new UsageError(`--normalize: the mean difference is zero (positive and negative completions give the same layer-${S} activations)`);
  const vector = Float32Array.from(result.vector, (x) => (f.normalize ? x / rawNorm : x));
  const seconds = (performance.now() - started) / 1000;

  const tokens = pairs.map((p) => [p.positive, p.negative]);
  const position = explicitPosition !== undefined ? String(explicitPosition) : "answer-token";
  const metadata: Record<string, string> = {
    method: "caa",
    model: ckpt.name,
    model_path: ckpt.dir,
    model_config: modelConfigKey(config),
    source_layer: String(S),
    // A CAA vector is read and added at layer S; it has no target layer and no randomness beyond the split.
    target_layer: "",
    positions: `answer:${position}`,
    answer_position: position,
    seed: chosen.summary.split ? String((chosen.summary.split as { seed: number }).seed) : "",
    pairs_file: file,
    dataset: JSON.stringify({ ...chosen.summary, used: undefined, swapped: undefined }),
    pair_count: String(result.count),
    layer: String(S),
    normalize: String(!!f.normalize),
    raw_norm: String(rawNorm),
    median_norm: String(result.medianNorm),
    chat: String(!!f.chat),
    system: f.system === undefined ? "" : String(f.system),
    answer_prefix: answerPrefix ?? "",
    tokens_sha256: createHash("sha256").update(JSON.stringify(tokens)).digest("hex"),
    dtype: "float32",
    implementation: "jacsteer",
    kernels: rt.build,
  };
  if (f.out !== undefined) {
    writeFileAtomic(f.out as string, encodeVectorFile({ vectors: [vector], metadata }));
    log(`jacsteer: wrote ${f.out}`);
  }
  if (f.json) {
    const summary = {
      count: result.count,
      source_layer: S,
      answer_position: explicitPosition ?? "answer-token",
      raw_norm: rawNorm,
      median_norm: result.medianNorm,
      norm: f.normalize ? 1 : rawNorm,
      normalize: !!f.normalize,
      first_item: firstItem,
      items: chosen.summary,
      tokens,
      answer_rows: result.rows,
      warnings: warnings(),
      seconds,
      threads,
      weights: weightMode,
      model: ckpt.name,
      out: f.out ?? null,
    };
    process.stdout.write(JSON.stringify(summary, null, 2) + "\n");
  } else {
    process.stdout.write(`CAA vector at layer ${S} from ${result.count} item(s): norm ${rawNorm.toPrecision(6)} (median layer-${S} norm ${result.medianNorm.toPrecision(6)})${f.normalize ? ", written normalised to 1" : ""}, ${seconds.toFixed(2)} s\n`);
  }
  ckpt.close();
  return 0;
}
