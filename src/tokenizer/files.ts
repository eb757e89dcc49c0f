// A checkpoint directory's tokenizer files, read through a callback so the same code serves Node
// (src/node/tokenizer-files.ts) and a folder picked in a browser (src/web/file-checkpoint.ts):
//   tokenizer.json          required
//   tokenizer_config.json   optional (special tokens, chat_template); without it there is no chat mode
//   chat_template.jinja     optional; newer transformers save the template here instead of in the config
//   generation_config.json  optional; its eos_token_id (number or list) joins the end-of-sequence ids
import { TokenizerError } from "./errors.js";
import { loadTokenizer, type TextTokenizer } from "./tokenizer.js";

export interface TokenizerFiles {
  tokenizerJson: object;
  tokenizerConfig?: object;
  chatTemplate?: string;
  eosTokenIds?: number[];
}

/**
 * Reads file `name` of the directory as text: undefined when it does not exist and is not
 * `required`; a TokenizerError naming it otherwise.
 */
export type ReadTokenizerText = (name: string, required: boolean) => Promise<string | undefined>;

async function readJsonObject(read: ReadTokenizerText, pathOf: (name: string) => string, name: string, required: boolean): Promise<object | undefined> {
  const text = await read(name, required);
  if (text === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new TokenizerError(`${pathOf(name)}: not valid JSON (${(e as Error).message})`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new TokenizerError(`${pathOf(name)}: expected a JSON object`);
  }
  return value;
}

/** The tokenizer files of a directory; `pathOf` names a file in messages. */
export async function readTokenizerFilesWith(read: ReadTokenizerText, pathOf: (name: string) => string): Promise<TokenizerFiles> {
  const [tokenizerJson, tokenizerConfig, chatTemplate, generationConfig] = await Promise.all([
    readJsonObject(read, pathOf, "tokenizer.json", true),
    readJsonObject(read, pathOf, "tokenizer_config.json", false),
    read("chat_template.jinja", false),
    readJsonObject(read, pathOf, "generation_config.json", false),
  ]);
  const files: TokenizerFiles = { tokenizerJson: tokenizerJson! };
  if (tokenizerConfig) files.tokenizerConfig = tokenizerConfig;
  // transformers prefers chat_template.jinja over the config's entry when both exist.
  if (chatTemplate !== undefined) files.chatTemplate = chatTemplate;
  const eos = (generationConfig as { eos_token_id?: unknown } | undefined)?.eos_token_id;
  const eosList = typeof eos === "number" ? [eos] : Array.isArray(eos) ? eos : [];
  const eosIds = eosList.filter((x): x is number => Number.isInteger(x) && x >= 0);
  if (eosIds.length > 0) files.eosTokenIds = eosIds;
  return files;
}

/** The tokenizer of a directory; `source` names the directory in messages. */
export async function loadTokenizerWith(read: ReadTokenizerText, pathOf: (name: string) => string, source: string): Promise<TextTokenizer> {
  const f = await readTokenizerFilesWith(read, pathOf);
  return loadTokenizer(f.tokenizerJson, f.tokenizerConfig, { chatTemplate: f.chatTemplate, eosTokenIds: f.eosTokenIds, source });
}
