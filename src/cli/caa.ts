// `jacsteer caa`: a CAA steering vector (src/caa/): the mean over items of the layer-S output at the
// answer token, positive minus negative; one row in a vector file (method "caa"). Items come from the
// dataset reader and prompt builder eval-ab uses (src/evaluation/), so the vector is read where
// eval-ab scores.
import { intFlag, parseFlags, type Options } from "./args.js";
import { UsageError } from "./errors.js";
import { checkOutPath, defaultModelDir, log, warn, warnings } from "./session.js";
import { chooseItems, DATASET_HELP, DATASET_OPTIONS } from "./dataset-flags.js";
import { encodeVectorFile } from "../io/vector-file.js";
import { writeFileAtomic } from "../node/safetensors-file.js";
import * as api from "../node/api.js";
import { CAA_MIN_NORM_SHARE } from "../api/caa.js";
import { threadsFlag } from "./threads.js";
import { weightsFlag, WEIGHTS_HELP } from "./weights-flag.js";
import { unescapeFlagText } from "../evaluation/prompt.js";

export { CAA_MIN_NORM_SHARE };

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

  const result = await api.caa({
    model: (f.model as string | undefined) ?? defaultModelDir(),
    threads,
    dataset: chosen,
    sourceLayer: intFlag(f, "source-layer", undefined),
    chat: !!f.chat,
    system: f.system as string | undefined,
    answerPrefix,
    answerPosition: explicitPosition,
    normalize: !!f.normalize,
    weights,
    log,
    onWarning: warn,
  });
  const { vector, metadata, rawNorm, seconds, sourceLayer: S } = result;
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
      first_item: result.firstItem,
      items: result.items,
      tokens: result.tokens,
      answer_rows: result.answerRows,
      warnings: warnings(),
      seconds,
      threads: result.threads,
      weights: result.weights,
      model: metadata.model,
      out: f.out ?? null,
    };
    process.stdout.write(JSON.stringify(summary, null, 2) + "\n");
  } else {
    process.stdout.write(`CAA vector at layer ${S} from ${result.count} item(s): norm ${rawNorm.toPrecision(6)} (median layer-${S} norm ${result.medianNorm.toPrecision(6)})${f.normalize ? ", written normalised to 1" : ""}, ${seconds.toFixed(2)} s\n`);
  }
  return 0;
}
