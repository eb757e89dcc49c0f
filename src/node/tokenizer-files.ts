// Node: read a checkpoint directory's tokenizer files (which ones: src/tokenizer/files.ts) and build
// the tokenizer.
import { TokenizerError } from "../tokenizer/errors.js";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { loadTokenizerWith, readTokenizerFilesWith, type TokenizerFiles } from "../tokenizer/files.js";
import type { TextTokenizer } from "../tokenizer/tokenizer.js";

export type { TokenizerFiles } from "../tokenizer/files.js";

function reader(dir: string) {
  return async (name: string, required: boolean): Promise<string | undefined> => {
    const path = join(dir, name);
    try {
      return await readFile(path, "utf8");
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "ENOENT" && !required) return undefined;
      if (code === "ENOENT") throw new TokenizerError(`${path}: file not found`);
      throw new TokenizerError(`${path}: cannot read (${(e as Error).message})`);
    }
  };
}

export async function readTokenizerFiles(dir: string): Promise<TokenizerFiles> {
  return readTokenizerFilesWith(reader(dir), (name) => join(dir, name));
}

/** Builds the tokenizer of the checkpoint in `dir`; errors name the file at fault. */
export async function loadTokenizerFromDir(dir: string): Promise<TextTokenizer> {
  return loadTokenizerWith(reader(dir), (name) => join(dir, name), dir);
}

/** The checkpoint's tokenizer when it has a tokenizer.json, else null (callers print token ids instead). */
export async function optionalTokenizer(dir: string): Promise<TextTokenizer | null> {
  return existsSync(join(dir, "tokenizer.json")) ? loadTokenizerFromDir(dir) : null;
}
