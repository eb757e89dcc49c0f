// `jacsteer generate`: steered text generation with a KV cache (CONTRACT.md section 1's steering:
// scale * vector added to the output of layer S at every position, prompt and generated).
// Every (vector, scale, prompt) combination is decoded together as one batch on the engine's forward
// (src/generation/batched.ts); the first combination's text streams to stdout under its label as it
// is generated, the others' follow under theirs when the batch is done.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { intFlag, numberFlag, parseFlags, stringList, type Options } from "./args.js";
import { UsageError } from "./errors.js";
import { defaultLayers, defaultModelDir, log, resolvePrompts, warn, PROMPT_OPTIONS, promptFlags } from "./session.js";
import { decodeVectorFile, parseVectorRef, resolveRow, VectorFileError } from "../io/vector-file.js";
import { openSafetensorsFile } from "../node/safetensors-file.js";
import { openCheckpoint, type Checkpoint } from "../node/checkpoint.js";
import { loadTokenizerFromDir } from "../node/tokenizer-files.js";
import { parseScaleList, TextStream } from "../generation/generate.js";
import { generateBatched } from "../generation/batched.js";
import { checkTokens } from "../model/qwen3.js";
import { ForwardModel } from "../engine/forward.js";
import { createNodeRuntime } from "../node/runtime.js";
import { createParallelGemm } from "../node/thread-pool.js";
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

export interface VectorChoice {
  /** position in the run's list */
  index: number;
  /** "FILE:ROW" */
  label: string;
  vector: Float32Array;
  /** the file's source_layer metadata, or this row's entry of source_layers (imported control vectors), if any */
  sourceLayer: number | null;
}

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

/** --layer, or the vector files' common source_layer, or the model-size default; checked against L. */
export function steeringLayer(values: Record<string, unknown>, L: number, vectors: readonly VectorChoice[]): number {
  const fromFiles = [...new Set(vectors.map((v) => v.sourceLayer))];
  let S: number;
  if (values.layer !== undefined) {
    S = intFlag(values, "layer", 0, 0)!;
    if (S >= L) throw new UsageError(`--layer ${S} is out of range: the model has layers 0..${L - 1}`);
  } else if (fromFiles.length === 1 && fromFiles[0] !== null && fromFiles[0] < L) {
    S = fromFiles[0];
    log(`jacsteer: steering at --layer ${S} (the vector files' source_layer)`);
  } else {
    S = defaultLayers(L).source;
    log(`jacsteer: steering at --layer ${S} (default for a ${L}-layer model${fromFiles.length > 1 ? "; the vector files disagree on source_layer" : ""})`);
  }
  // A vector computed at one layer and added at another is a different experiment; say so per vector.
  for (const v of vectors) {
    if (v.sourceLayer !== null && v.sourceLayer !== S) warn(`${v.label} was computed at source_layer ${v.sourceLayer} (its file's metadata) but is added at layer ${S}${values.layer === undefined ? "" : " (--layer)"}`);
  }
  return S;
}

/** The checkpoint's tokenizer when it has a tokenizer.json, else null (token ids are printed instead). */
export async function optionalTokenizer(dir: string): Promise<TextTokenizer | null> {
  return existsSync(join(dir, "tokenizer.json")) ? loadTokenizerFromDir(dir) : null;
}

// ------------------------------------------------------------ the command

interface Combination {
  vector: VectorChoice | null;
  scale: number | null;
  prompt: number;
}

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
  // Check everything against the config before loading weights.
  const peek: Checkpoint = openCheckpoint((f.model as string | undefined) ?? defaultModelDir());
  const L = peek.config.numLayers;
  const d = peek.config.hiddenSize;
  let vectors: VectorChoice[];
  let prompts: number[][];
  let tok: TextTokenizer | null;
  try {
    vectors = readVectorChoices(vectorArgs, "--vectors", d);
    prompts = await resolvePrompts(
      promptFlags(f),
      peek,
    );
    tok = await optionalTokenizer(peek.dir);
  } finally {
    peek.close();
  }
  const S = vectors.length ? steeringLayer(f, L, vectors) : -1;
  if (scales && !scales.includes(0)) warn(`--scales ${scales.join(",")} has no 0: there is no unsteered generation to compare the steered ones with (add 0, e.g. --scales ${[...scales, 0].sort((a, b) => a - b).join(",")})`);

  const ckpt = openCheckpoint((f.model as string | undefined) ?? defaultModelDir());
  const config = ckpt.config;
  try {
    prompts.forEach((p, i) => checkTokens(config, p, prompts.length > 1 ? `prompt ${i}` : "prompt"));
  } catch (e) {
    ckpt.close();
    throw e;
  }
  const capacity = Math.max(...prompts.map((p) => p.length)) + maxNewTokens;
  if (capacity > config.maxPositionEmbeddings) log(`jacsteer: note: up to ${capacity} positions, beyond the model's max_position_embeddings ${config.maxPositionEmbeddings}`);
  const eosTokenIds = f["ignore-eos"] ? [] : (tok?.eosTokenIds ?? []);
  const eos = new Set(eosTokenIds);
  const rt = await createNodeRuntime();
  log(
    `jacsteer: ${ckpt.name}: ${L} layers, hidden ${d}; ${prompts.length} prompt(s) of ${prompts.map((p) => p.length).join(", ")} tokens; ` +
      `${vectors.length ? `${vectors.length} vector(s) x ${scales!.length} scale(s) at layer ${S}` : "unsteered"}; ` +
      `${temperature === 0 ? "greedy" : `temperature ${temperature}, top-p ${topP}, seed ${seed}`}; up to ${maxNewTokens} new tokens; threads ${threads}; kernels ${rt.build}`,
  );

  const combos: Combination[] = [];
  if (vectors.length) {
    for (const v of vectors) for (const scale of scales!) for (let p = 0; p < prompts.length; p++) combos.push({ vector: v, scale, prompt: p });
  } else {
    for (let p = 0; p < prompts.length; p++) combos.push({ vector: null, scale: null, prompt: p });
  }
  const labels = combos.map((c) => {
    const promptPart = prompts.length > 1 ? `${c.vector ? ", " : " "}prompt ${c.prompt}` : "";
    return c.vector ? `vector ${c.vector.index} (${c.vector.label}) scale ${c.scale}${promptPart}` : `unsteered${promptPart}`;
  });

  const stream = !f.json;
  const texts = combos.map(() => (tok ? new TextStream((ids) => tok!.decode(ids)) : null));
  // The end-of-sequence token ends the text; it is not part of it (it stays in "tokens").
  const piece = (i: number, id: number, step: number) => (eos.has(id) ? "" : texts[i] ? texts[i]!.push(id) : `${step ? " " : ""}${id}`);
  const gemm = await createParallelGemm(rt, threads);
  const t0 = performance.now();
  let res;
  try {
    const model = await ForwardModel.create(rt, config, ckpt.tensors, { gemm, log, weights, fullHead: true });
    const tLoad = performance.now();
    if (stream) process.stdout.write(`=== ${labels[0]} ===\n`);
    res = await generateBatched(
      model,
      combos.map((c) => ({ prompt: prompts[c.prompt], steer: c.vector ? c.vector.vector.map((x) => x * c.scale!) : null })),
      { maxNewTokens, temperature, topP, seed, layer: S, eosTokenIds, onToken: stream ? (i, id, step) => i === 0 && process.stdout.write(piece(0, id, step)) : undefined },
    );
    const secs = (performance.now() - tLoad) / 1000;
    const total = res.reduce((a, r) => a + r.tokens.length, 0);
    log(`jacsteer: ${combos.length} sequence(s) decoded together: ${total} tokens in ${secs.toFixed(2)} s, ${(total / secs).toFixed(1)} tokens/s (load ${((tLoad - t0) / 1000).toFixed(1)} s)`);
  } catch (e) {
    ckpt.close();
    throw e;
  } finally {
    await gemm.close();
  }
  const results: object[] = [];
  combos.forEach((c, i) => {
    const r = res[i]!;
    if (stream) {
      if (i > 0) {
        process.stdout.write(`=== ${labels[i]} ===\n`);
        r.tokens.forEach((id, step) => process.stdout.write(piece(i, id, step)));
      }
      process.stdout.write((texts[i] ? texts[i]!.flush() : "") + "\n\n");
    }
    log(`jacsteer: ${labels[i]}: ${r.tokens.length} tokens (${r.stop === "eos" ? "end of sequence" : "length limit"})`);
    results.push({
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
    });
  });
  ckpt.close();
  if (f.json) process.stdout.write(JSON.stringify(results, null, 2) + "\n");
  log(`jacsteer: ${combos.length} generation(s) in ${((performance.now() - started) / 1000).toFixed(2)} s`);
  return 0;
}
