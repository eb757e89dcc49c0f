// `jacsteer generate`: steered text generation with a KV cache (CONTRACT.md section 1's steering:
// scale * vector added to the output of layer S at every position, prompt and generated).
// Every (vector, scale, prompt) combination is decoded together as one batch on the engine's forward
// (src/generation/batched.ts); the first combination's text streams to stdout under its label as it
// is generated, the others' follow under theirs when the batch is done. A thin layer over the
// library's generate (src/api/generate.ts).
import { existsSync } from "node:fs";
import { intFlag, numberFlag, parseFlags, stringList, type Options } from "./args.js";
import { UsageError } from "./errors.js";
import { defaultModelDir, log, promptInputs, warn, PROMPT_OPTIONS, promptFlags } from "./session.js";
import { decodeVectorFile, parseVectorRef, resolveRow, VectorFileError } from "../io/vector-file.js";
import { openSafetensorsFile } from "../node/safetensors-file.js";
import { openCheckpoint } from "../node/checkpoint.js";
import { loadTokenizerFromDir, optionalTokenizer } from "../node/tokenizer-files.js";
import { parseScaleList, TextStream } from "../generation/generate.js";
import * as api from "../node/api.js";
import type { VectorChoice } from "../api/steering.js";
import { threadsFlag } from "./threads.js";
import { weightsFlag } from "./weights-flag.js";
import type { TextTokenizer } from "../tokenizer/index.js";

export const GENERATE_HELP = `jacsteer generate: text generation with steering vectors added at layer S (every position)

  --model DIR              checkpoint directory (default: the bundled tiny model)
  --prompt TEXT            a prompt (repeatable); --prompts FILE (one per line, or a .json array); --tokens 1,2,3 (repeatable)
  --chat, --system TEXT    render prompts with the checkpoint's chat template (generation prompt, thinking disabled)
  --vectors FILE[:ROW]     steering vector(s) (repeatable): FILE alone = every row of FILE
  --scales LIST            comma-separated scales, e.g. -10,-5,0,5,10 (needed with --vectors); every
                           (vector, scale, prompt) combination generates. Without --vectors: unsteered
  --layer S                layer whose output receives scale * vector (default: the vector files'
                           source_layer when they agree, else the model-size default)
  --max-new-tokens N       tokens to generate at most (default 64)
  --temperature T          0 = greedy (default); > 0 samples from softmax(logits / T)
  --top-p P                nucleus sampling: keep the most likely tokens up to mass P (default 1)
  --seed N                 sampling seed (default 0); every combination restarts the same stream, so
                           combinations differ only through their steering
  --ignore-eos             do not stop at the tokenizer's end-of-sequence tokens
  --threads N              worker threads (default: all cores; more than the cores is capped, with a line)
  --weights MODE           the layers' weights, kept in their stored dtype (BF16 stays BF16):
                             resident  read once and kept
                             stream    read from the checkpoint every step, once for the whole batch
                             auto      resident when they fit 2 GiB, else stream (default; printed)
  --json                   print [{vector, scale, prompt, tokens, text, ...}] on stdout instead of streaming
                           (tokens: the new ids, an end-of-sequence id included; text: without it)

Text is decoded with the checkpoint's tokenizer.json; a checkpoint without one prints token ids
(and "text": null with --json). Progress and timings go to stderr.

How it runs: all combinations are decoded together, one batch with a KV cache per sequence: each step
is one matrix product per projection over every sequence's new token, on --threads threads. Tokens
do not depend on --threads; each combination samples from its own stream of --seed.
`;

const OPTIONS: Options = {
  ...PROMPT_OPTIONS,
  vectors: { type: "string", multiple: true },
  scales: { type: "string" },
  layer: { type: "string" },
  "max-new-tokens": { type: "string" },
  temperature: { type: "string" },
  "top-p": { type: "string" },
  seed: { type: "string" },
  "ignore-eos": { type: "boolean" },
  threads: { type: "string" },
  weights: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
};

// ------------------------------------------------------------ shared with eval-ab

export type { VectorChoice };

/** Every vector named by `FILE[:ROW]` arguments (FILE alone: all rows), checked against hidden size d. */
export function readVectorChoices(args: readonly string[], flag: string, d: number): VectorChoice[] {
  const out: VectorChoice[] = [];
  for (const arg of args) {
    const { file, row } = parseVectorRef(arg);
    if (!existsSync(file)) throw new VectorFileError(`${flag} ${arg}: file ${file} does not exist`);
    const reader = openSafetensorsFile(file);
    let set;
    try {
      set = decodeVectorFile(reader, file);
    } finally {
      reader.close?.();
    }
    const meta = set.metadata.source_layer;
    const sourceLayer = meta !== undefined && /^\d+$/.test(meta) ? Number(meta) : null;
    const perRow = rowLayers(set.metadata.source_layers, set.vectors.length);
    const rows = row === null ? set.vectors.map((_, i) => i) : [resolveRow(row, set.vectors.length, `${flag} ${arg}`)];
    for (const r of rows) {
      const vector = set.vectors[r];
      if (vector.length !== d) throw new VectorFileError(`${flag} ${arg}: vectors have length ${vector.length}, the model's hidden size is ${d}`);
      out.push({ index: out.length, label: `${file}:${r}`, vector, sourceLayer: sourceLayer ?? perRow?.[r] ?? null });
    }
  }
  return out;
}

/** `source_layers` (a JSON list, one layer per row: files imported from multi-layer control vectors), if valid. */
function rowLayers(value: string | undefined, n: number): number[] | undefined {
  if (value === undefined) return undefined;
  try {
    const xs = JSON.parse(value);
    return Array.isArray(xs) && xs.length === n && xs.every((x) => Number.isInteger(x) && x >= 0) ? xs : undefined;
  } catch {
    return undefined;
  }
}

/** --scales: comma-separated finite numbers, no repeats. */
export function scalesFlag(value: unknown): number[] | undefined {
  if (value === undefined) return undefined;
  const s = String(value);
  const xs = parseScaleList(s);
  if (!xs) throw new UsageError(`--scales ${s}: expected comma-separated numbers, e.g. -10,-5,0,5,10`);
  const dup = xs.find((x, i) => xs.indexOf(x) !== i);
  if (dup !== undefined) throw new UsageError(`--scales ${s}: ${dup} is given twice`);
  return xs;
}

export { optionalTokenizer };

// ------------------------------------------------------------ the command

export async function generate(argv: string[]): Promise<number> {
  const f = parseFlags(argv, OPTIONS);
  if (f.help) {
    process.stdout.write(GENERATE_HELP);
    return 0;
  }
  const maxNewTokens = intFlag(f, "max-new-tokens", 64, 1)!;
  const temperature = numberFlag(f, "temperature", 0)!;
  if (temperature < 0) throw new UsageError(`--temperature ${temperature}: must not be negative (0 = greedy)`);
  const topP = numberFlag(f, "top-p", 1)!;
  if (!(topP > 0 && topP <= 1)) throw new UsageError(`--top-p ${topP}: must be in (0, 1]`);
  if (f["top-p"] !== undefined && temperature === 0) throw new UsageError("--top-p needs --temperature > 0 (greedy decoding ignores it)");
  const seed = intFlag(f, "seed", 0, 0)!;
  if (!Number.isSafeInteger(seed)) throw new UsageError(`--seed ${f.seed}: too large`);
  const scales = scalesFlag(f.scales);
  const vectorArgs = stringList(f, "vectors");
  if (vectorArgs.length && !scales) throw new UsageError("--vectors needs --scales (e.g. --scales -10,-5,0,5,10)");
  if (scales && !vectorArgs.length) throw new UsageError("--scales needs --vectors");
  if (f.layer !== undefined && !vectorArgs.length) throw new UsageError("--layer needs --vectors");
  const threads = threadsFlag(f, log);
  const weights = weightsFlag(f);

  const started = performance.now();
  const ckpt = openCheckpoint((f.model as string | undefined) ?? defaultModelDir());
  const stream = !f.json;
  let result;
  // Text is decoded as it streams: one TextStream per combination (the tokenizer's, when there is one).
  let tok: TextTokenizer | null = null;
  let texts: (TextStream | null)[] = [];
  let eos = new Set<number>();
  // The end-of-sequence token ends the text; it is not part of it (it stays in "tokens").
  const piece = (i: number, id: number, step: number) => (eos.has(id) ? "" : texts[i] ? texts[i]!.push(id) : `${step ? " " : ""}${id}`);
  try {
    const vectors = readVectorChoices(vectorArgs, "--vectors", ckpt.config.hiddenSize);
    const prompts = promptInputs(promptFlags(f));
    const dir = ckpt.dir;
    let labels: string[] = [];
    result = await api.generate({
      model: ckpt,
      threads,
      prompts,
      chat: !!f.chat,
      system: f.system as string | undefined,
      tokenizer: async (required) => {
        if (required) return loadTokenizerFromDir(dir);
        tok = await optionalTokenizer(dir);
        eos = new Set(f["ignore-eos"] ? [] : (tok?.eosTokenIds ?? []));
        return tok;
      },
      vectors,
      scales,
      layer: f.layer === undefined ? undefined : intFlag(f, "layer", 0, 0),
      maxNewTokens,
      temperature,
      topP: f["top-p"] === undefined ? undefined : topP,
      seed,
      ignoreEos: !!f["ignore-eos"],
      weights,
      log,
      onWarning: warn,
      onLabels: (l) => {
        labels = l;
        texts = l.map(() => (tok ? new TextStream((ids) => tok!.decode(ids)) : null));
      },
      onStart: () => {
        if (stream) process.stdout.write(`=== ${labels[0]} ===\n`);
      },
      onToken: stream ? (i, id, step) => i === 0 && process.stdout.write(piece(0, id, step)) : undefined,
    });
  } finally {
    ckpt.close();
  }
  const generations = result.generations;
  const results: object[] = [];
  generations.forEach(({ label, ...g }, i) => {
    if (stream) {
      if (i > 0) {
        process.stdout.write(`=== ${label} ===\n`);
        g.tokens.forEach((id, step) => process.stdout.write(piece(i, id, step)));
      }
      process.stdout.write((texts[i] ? texts[i]!.flush() : "") + "\n\n");
    }
    log(`jacsteer: ${label}: ${g.tokens.length} tokens (${g.stop === "eos" ? "end of sequence" : "length limit"})`);
    results.push(g);
  });
  if (f.json) process.stdout.write(JSON.stringify(results, null, 2) + "\n");
  log(`jacsteer: ${generations.length} generation(s) in ${((performance.now() - started) / 1000).toFixed(2)} s`);
  return 0;
}
