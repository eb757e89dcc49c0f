// Node: read a checkpoint directory's tokenizer files and build the tokenizer.
//   tokenizer.json          required
//   tokenizer_config.json   optional (special tokens, chat_template); without it there is no chat mode
//   chat_template.jinja     optional; newer transformers save the template here instead of in the config
//   generation_config.json  optional; its eos_token_id (number or list) joins the end-of-sequence ids
import { TokenizerError } from "../tokenizer/errors.js";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { loadTokenizer, type TextTokenizer } from "../tokenizer/tokenizer.js";

export interface TokenizerFiles {
  tokenizerJson: object;
  tokenizerConfig?: object;
  chatTemplate?: string;
  eosTokenIds?: number[];
}

async function readText(path: string, required: boolean): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT" && !required) return undefined;
    if (code === "ENOENT") throw new TokenizerError(`${path}: file not found`);
    throw new TokenizerError(`${path}: cannot read (${(e as Error).message})`);
  }
}

async function readJsonObject(path: string, required: true): Promise<object>;
async function readJsonObject(path: string, required: false): Promise<object | undefined>;
async function readJsonObject(path: string, required: boolean): Promise<object | undefined> {
  const text = await readText(path, required);
  if (text === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new TokenizerError(`${path}: not valid JSON (${(e as Error).message})`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new TokenizerError(`${path}: expected a JSON object`);
  }
  return value;
}

export async function readTokenizerFiles(dir: string): Promise<TokenizerFiles> {
  const [tokenizerJson, tokenizerConfig, chatTemplate, generationConfig] = await Promise.all([
    readJsonObject(join(dir, "tokenizer.json"), true),
    readJsonObject(join(dir, "tokenizer_config.json"), false),
    readText(join(dir, "chat_template.jinja"), false),
    readJsonObject(join(dir, "generation_config.json"), false),
  ]);
  const files: TokenizerFiles = { tokenizerJson };
  if (tokenizerConfig) files.tokenizerConfig = tokenizerConfig;
  // transformers prefers chat_template.jinja over the config's entry when both exist.
  if (chatTemplate !== undefined) files.chatTemplate = chatTemplate;
  const eos = (generationConfig as { eos_token_id?: unknown } | undefined)?.eos_token_id;
  const eosList = typeof eos === "number" ? [eos] : Array.isArray(eos) ? eos : [];
  const eosIds = eosList.filter((x): x is number => Number.isInteger(x) && x >= 0);
  if (eosIds.length > 0) files.eosTokenIds = eosIds;
  return files;
}

/** Builds the tokenizer of the checkpoint in `dir`; errors name the file at fault. */
export async function loadTokenizerFromDir(dir: string): Promise<TextTokenizer> {
  const f = await readTokenizerFiles(dir);
  return loadTokenizer(f.tokenizerJson, f.tokenizerConfig, {
    chatTemplate: f.chatTemplate,
    eosTokenIds: f.eosTokenIds,
    source: dir,
  });
}

/** The checkpoint's tokenizer when it has a tokenizer.json, else null (callers print token ids instead). */
export async function optionalTokenizer(dir: string): Promise<TextTokenizer | null> {
  return existsSync(join(dir, "tokenizer.json")) ? loadTokenizerFromDir(dir) : null;
}
