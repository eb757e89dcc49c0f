// What every command needs: the runtime, the checkpoint and model, prompts as token ids, vectors read
// from files. Each step fails with one line naming the flag, file or tensor.
import { existsSync, readFileSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { AutodiffContext } from "../autodiff/tensor.js";
import { parseVectorRef, resolveRow, VectorFileError } from "../io/vector-file.js";
import { Qwen3Model } from "../model/qwen3.js";
import { loadQwen3Weights } from "../model/weights.js";
import { openCheckpoint, type Checkpoint } from "../node/checkpoint.js";
import { createNodeRuntime } from "../node/runtime.js";
import { bundledModelDir } from "../node/api.js";
import { loadTokenizerFromDir, optionalTokenizer } from "../node/tokenizer-files.js";
import { LazyTokenizer, tokenizePrompts, type PromptInput } from "../api/common.js";
import type { Runtime } from "../runtime/runtime.js";
import { UsageError } from "./errors.js";
import { stringList, type Options } from "./args.js";

export { log, warn, warnings } from "./output.js";
export { defaultLayers } from "../jacobian/steering-jacobian.js";
import { log } from "./output.js";
import { readVectorSet } from "./verify.js";

/** The bundled tiny model (random weights), used without --model. */
export const defaultModelDir = bundledModelDir;

export interface LoadedModel {
  rt: Runtime;
  ckpt: Checkpoint;
  model: Qwen3Model;
}

/** Open the checkpoint and load layers [0, layers) (and the LM head with `head`). */
export async function loadModel(modelArg: string | undefined, opts: { layers?: number; head?: boolean }): Promise<LoadedModel> {
  const ckpt = openCheckpoint(modelArg ?? defaultModelDir());
  const rt = await createNodeRuntime();
  const ctx = new AutodiffContext(rt);
  const layers = Math.min(opts.layers ?? ckpt.config.numLayers, ckpt.config.numLayers);
  const weights = ctx.noGrad(() => loadQwen3Weights(ctx, ckpt.config, ckpt.tensors, { layers, head: opts.head }));
  return { rt, ckpt, model: new Qwen3Model(ctx, ckpt.config, weights) };
}

/** The flags of every command that runs prompts through a model. */
export const PROMPT_OPTIONS: Options = {
  model: { type: "string" },
  prompt: { type: "string", multiple: true },
  prompts: { type: "string" },
  tokens: { type: "string", multiple: true },
  chat: { type: "boolean" },
  system: { type: "string" },
};

/** The steering site and target positions (power-iter, melbo). */
export const SITE_OPTIONS: Options = {
  "source-layer": { type: "string" },
  "target-layer": { type: "string" },
  positions: { type: "string" },
  "position-list": { type: "string" },
  "position-weights": { type: "string" },
  "all-positions": { type: "boolean" },
};

/** The prompt flags out of parsed flags. */
export function promptFlags(f: Record<string, unknown>): PromptFlags {
  return { prompt: stringList(f, "prompt"), prompts: f.prompts as string | undefined, tokens: stringList(f, "tokens"), chat: !!f.chat, system: f.system as string | undefined };
}

export interface PromptFlags {
  prompt?: string[];
  prompts?: string;
  tokens?: string[];
  chat?: boolean;
  system?: string;
}

function readPromptsFile(file: string): string[] {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new UsageError(`--prompts ${file}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  const prompts = parsePromptsFile(text, file);
  if (prompts.length === 0) throw new UsageError(`--prompts ${file}: no prompts (${file.endsWith(".json") ? "the file is an empty JSON array" : "the file is empty or has only blank lines"})`);
  return prompts;
}

function parsePromptsFile(text: string, file: string): string[] {
  if (file.endsWith(".json")) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (e) {
      throw new UsageError(`--prompts ${file}: not valid JSON (${(e as Error).message})`);
    }
    if (!Array.isArray(parsed) || !parsed.every((p) => typeof p === "string")) throw new UsageError(`--prompts ${file}: expected a JSON array of strings`);
    return parsed;
  }
  // One prompt per line; blank lines are skipped. Escape a newline inside a prompt as \n.
  return text.split(/\r?\n/).filter((l) => l.trim() !== "").map((l) => l.replace(/\\n/g, "\n"));
}

function parseTokenList(s: string): number[] {
  const parts = s.split(",").map((x) => x.trim());
  if (parts.some((p) => !/^\d+$/.test(p))) throw new UsageError(`--tokens ${s}: expected comma-separated non-negative integers`);
  return parts.map(Number);
}

/** The prompts the flags give, in order: texts (--prompt, then --prompts FILE), then --tokens lists. */
export function promptInputs(f: PromptFlags): PromptInput[] {
  const texts = [...(f.prompt ?? []), ...(f.prompts ? readPromptsFile(f.prompts) : [])];
  return [...texts, ...(f.tokens ?? []).map(parseTokenList)];
}

/** Token ids of every prompt, as run (the library's tokenizePrompts on the flags' prompts). */
export async function resolvePrompts(f: PromptFlags, ckpt: Checkpoint): Promise<number[][]> {
  return tokenizePrompts(promptInputs(f), f, new LazyTokenizer((required) => (required ? loadTokenizerFromDir(ckpt.dir) : optionalTokenizer(ckpt.dir))));
}

/**
 * Read `FILE` (row 0) or `FILE:ROW` (-1 = the last row) from a vector file; `flag` is named in errors.
 * `sourceLayer` is the file's source_layer metadata, when it has one.
 */
export function readVectorArg(arg: string, flag: string, expectDim: number): { vector: Float32Array; file: string; row: number; sourceLayer: number | null } {
  const { file, row } = parseVectorRef(arg);
  const set = readVectorSet(file, flag);
  const r = resolveRow(row ?? 0, set.vectors.length, `${flag} ${arg}`);
  const vector = set.vectors[r];
  if (vector.length !== expectDim) throw new VectorFileError(`${flag} ${arg}: vectors have length ${vector.length}, the model's hidden size is ${expectDim}`);
  const meta = set.metadata.source_layer;
  return { vector, file, row: r, sourceLayer: meta !== undefined && /^\d+$/.test(meta) ? Number(meta) : null };
}

export function readVectorsArg(file: string, flag: string): Float32Array[] {
  return readVectorSet(file, flag).vectors;
}

/** Fail before any work if --out cannot be written where asked. */
export function checkOutPath(out: string | undefined, ext = ".safetensors"): void {
  if (out === undefined) return;
  if (!out.endsWith(ext)) throw new UsageError(`--out ${out}: the file name must end in ${ext}`);
  const dir = dirname(resolve(out));
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new UsageError(`--out ${out}: directory ${dir} does not exist`);
}

