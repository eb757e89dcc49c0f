// `jacsteer caa`: a CAA steering vector (src/caa/): the mean over contrastive pairs of the layer-S
// output at the answer token, positive minus negative; one row in a vector file (method "caa").
import { readFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { intFlag, parseFlags, type Options } from "./args.js";
import { UsageError } from "./errors.js";
import { checkOutPath, defaultLayers, defaultModelDir, loadModel, log } from "./session.js";
import { encodeVectorFile } from "../io/vector-file.js";
import { modelConfigKey } from "../io/run-identity.js";
import { writeFileAtomic } from "../node/safetensors-file.js";
import { loadTokenizerFromDir } from "../node/tokenizer-files.js";
import { caaVector, parsePairs, tokenizePair } from "../caa/caa.js";

export const CAA_HELP = `jacsteer caa: contrastive activation addition: the mean over pairs of
  h_S(prompt + positive)[answer token] - h_S(prompt + negative)[answer token]
where h_S is the output of layer S (where steering vectors are added).

  --pairs FILE.jsonl       one JSON object per line, either
                             {"prompt": ..., "positive": ..., "negative": ...}
                           or an A/B question
                             {"question": ..., "answer_matching_behavior": ..., "answer_not_matching_behavior": ...}
                           the completion (answer) is appended to the prompt (question) as text, nothing in between
  --model DIR              checkpoint directory (default: the bundled tiny model)
  --source-layer S         layer whose output is read (default: scaled from the seed's 6 of 28)
  --answer-position P      the token read in each sequence: -1 = the last token of prompt + completion
                           (default); -2 = the one before (the CAA paper's code, for answers like "(A)")
  --chat, --system TEXT    the prompt is a user message rendered with the chat template (generation
                           prompt added, thinking disabled); the completion starts the assistant's reply
  --normalize              scale the vector to unit norm (its raw norm is kept in the metadata)
  --out FILE.safetensors   write the vector (one row) and run metadata (method "caa")
  --json                   print a JSON summary on stdout
`;

const OPTIONS: Options = {
  model: { type: "string" },
  pairs: { type: "string" },
  "source-layer": { type: "string" },
  "answer-position": { type: "string" },
  chat: { type: "boolean" },
  system: { type: "string" },
  normalize: { type: "boolean" },
  out: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
};

export async function caa(argv: string[]): Promise<number> {
  const f = parseFlags(argv, OPTIONS);
  if (f.help) {
    process.stdout.write(CAA_HELP);
    return 0;
  }
  const pairsFile = f.pairs as string | undefined;
  if (pairsFile === undefined) throw new UsageError("--pairs FILE.jsonl is required (contrastive pairs, one JSON object per line)");
  if (f.system !== undefined && !f.chat) throw new UsageError("--system needs --chat");
  const answerPosition = intFlag(f, "answer-position", -1, -Infinity)!;
  checkOutPath(f.out as string | undefined);
  let text: string;
  try {
    text = readFileSync(pairsFile, "utf8");
  } catch (e) {
    throw new UsageError(`--pairs ${pairsFile}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  const pairs = parsePairs(text, `--pairs ${pairsFile}`);

  const started = performance.now();
  const { openCheckpoint } = await import("../node/checkpoint.js");
  const peek = openCheckpoint((f.model as string | undefined) ?? defaultModelDir());
  const L = peek.config.numLayers;
  peek.close();
  const S = intFlag(f, "source-layer", defaultLayers(L).source)!;
  if (f["source-layer"] === undefined) log(`jacsteer: using --source-layer ${S} (default for a ${L}-layer model; the seed used 6 of 28)`);
  if (S < 0 || S >= L) throw new UsageError(`--source-layer ${S} is out of range: the model has layers 0..${L - 1}`);

  // Only layers 0..S are read.
  const { rt, ckpt, model } = await loadModel(f.model as string | undefined, { layers: S + 1 });
  const tok = await loadTokenizerFromDir(ckpt.dir);
  const tokenPairs = pairs.map((p) => tokenizePair(tok, p, { chat: !!f.chat, system: f.system as string | undefined }));
  const forms = { completion: pairs.filter((p) => p.form === "completion").length, ab: pairs.filter((p) => p.form === "ab").length };
  log(`jacsteer: ${ckpt.name}: ${L} layers, hidden ${model.config.hiddenSize}; S=${S}; ${pairs.length} pair(s) (${forms.completion} prompt/completion, ${forms.ab} A/B) from ${pairsFile}; answer position ${answerPosition}; kernels ${rt.build}`);
  const result = caaVector(model, tokenPairs, S, answerPosition);
  const rawNorm = Math.sqrt(result.vector.reduce((s, x) => s + x * x, 0));
  if (f.normalize && !(rawNorm > 0)) throw new UsageError(`--normalize: the mean difference is zero (positive and negative completions give the same layer-${S} activations)`);
  const vector = Float32Array.from(result.vector, (x) => (f.normalize ? x / rawNorm : x));
  const seconds = (performance.now() - started) / 1000;

  const tokens = tokenPairs.map((p) => [p.positive, p.negative]);
  const metadata: Record<string, string> = {
    method: "caa",
    model: ckpt.name,
    model_path: ckpt.dir,
    model_config: modelConfigKey(model.config),
    source_layer: String(S),
    // A CAA vector is read and added at layer S; it has no target layer and no randomness.
    target_layer: "",
    positions: `answer:${answerPosition}`,
    answer_position: String(answerPosition),
    seed: "",
    pairs_file: pairsFile,
    pair_count: String(result.count),
    layer: String(S),
    normalize: String(!!f.normalize),
    raw_norm: String(rawNorm),
    chat: String(!!f.chat),
    system: f.system === undefined ? "" : String(f.system),
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
      answer_position: answerPosition,
      raw_norm: rawNorm,
      norm: f.normalize ? 1 : rawNorm,
      normalize: !!f.normalize,
      forms,
      tokens,
      answer_rows: result.rows,
      seconds,
      model: ckpt.name,
      out: f.out ?? null,
    };
    process.stdout.write(JSON.stringify(summary, null, 2) + "\n");
  } else {
    process.stdout.write(`CAA vector at layer ${S} from ${result.count} pair(s): norm ${rawNorm.toPrecision(6)}${f.normalize ? " (written normalised to 1)" : ""}, ${seconds.toFixed(2)} s\n`);
  }
  ckpt.close();
  return 0;
}
