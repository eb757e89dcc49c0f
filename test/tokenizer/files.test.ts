// Loading a checkpoint's tokenizer files from a directory: which files count, and errors that name them.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadTokenizerFromDir, readTokenizerFiles } from "../../src/node/tokenizer-files.js";
import { loadTokenizer, makeByteLevelTokenizerJson, makeTinyTokenizerConfig } from "../../src/tokenizer/index.js";

const root = mkdtempSync(join(tmpdir(), "jacsteer-tok-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
function checkpoint(files: Record<string, string | object>): string {
  const dir = mkdtempSync(join(root, "ckpt-"));
  for (const [name, body] of Object.entries(files)) {
    writeFileSync(join(dir, name), typeof body === "string" ? body : JSON.stringify(body));
  }
  return dir;
}

const byteJson = makeByteLevelTokenizerJson();

describe("loadTokenizerFromDir", () => {
  it("names tokenizer.json when it is missing", async () => {
    const dir = checkpoint({});
    await expect(loadTokenizerFromDir(dir)).rejects.toThrow(`${join(dir, "tokenizer.json")}: file not found`);
  });

  it("names the file that is not JSON", async () => {
    let dir = checkpoint({ "tokenizer.json": "{ not json" });
    await expect(loadTokenizerFromDir(dir)).rejects.toThrow(`${join(dir, "tokenizer.json")}: not valid JSON`);
    dir = checkpoint({ "tokenizer.json": byteJson, "tokenizer_config.json": "[1,2" });
    await expect(loadTokenizerFromDir(dir)).rejects.toThrow(`${join(dir, "tokenizer_config.json")}: not valid JSON`);
    dir = checkpoint({ "tokenizer.json": "[1, 2]" });
    await expect(loadTokenizerFromDir(dir)).rejects.toThrow(`${join(dir, "tokenizer.json")}: expected a JSON object`);
  });

  it("rejects a JSON file that is not a tokenizer", async () => {
    const dir = checkpoint({ "tokenizer.json": { hello: 1 } });
    await expect(loadTokenizerFromDir(dir)).rejects.toThrow(/tokenizer\.json has no "model" object/);
  });

  it("works without tokenizer_config.json, but then has no chat mode", async () => {
    const dir = checkpoint({ "tokenizer.json": byteJson });
    const tok = await loadTokenizerFromDir(dir);
    expect(tok.encode("hi")).toEqual([104, 105]);
    expect(tok.hasChatTemplate).toBe(false);
    expect(() => tok.applyChatTemplate([{ role: "user", content: "x" }], { addGenerationPrompt: true, enableThinking: false }))
      .toThrow(`${dir}: the checkpoint has no chat template`);
  });

  it("prefers chat_template.jinja over the config's template", async () => {
    const dir = checkpoint({
      "tokenizer.json": byteJson,
      "tokenizer_config.json": makeTinyTokenizerConfig(),
      "chat_template.jinja": "{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}{% if add_generation_prompt %}>{% endif %}",
    });
    const tok = await loadTokenizerFromDir(dir);
    expect(tok.applyChatTemplate([{ role: "user", content: "x" }], { addGenerationPrompt: true, enableThinking: false })).toBe("[user]x>");
  });

  it("adds generation_config.json's eos_token_id to the config's eos token", async () => {
    const qwenLike = {
      ...byteJson,
      added_tokens: [
        { id: 256, content: "<|endoftext|>", special: true, normalized: false, lstrip: false, rstrip: false, single_word: false },
        { id: 257, content: "<|im_end|>", special: true, normalized: false, lstrip: false, rstrip: false, single_word: false },
      ],
    };
    const dir = checkpoint({
      "tokenizer.json": qwenLike,
      "tokenizer_config.json": { eos_token: "<|im_end|>" },
      "generation_config.json": { eos_token_id: [257, 256] },
    });
    const tok = await loadTokenizerFromDir(dir);
    expect(tok.eosTokenIds).toEqual([257, 256]);
    expect(tok.vocabSize).toBe(258);
    expect(tok.encode("a<|im_end|>")).toEqual([97, 257]);
    const files = await readTokenizerFiles(dir);
    expect(files.eosTokenIds).toEqual([257, 256]);
  });
});

describe("loadTokenizer config handling", () => {
  it("does not clean up tokenization spaces unless the config asks", () => {
    const text = "a , b . c ' d n't";
    expect(loadTokenizer(byteJson).decode(loadTokenizer(byteJson).encode(text))).toBe(text);
    const cleaning = loadTokenizer(byteJson, { clean_up_tokenization_spaces: true });
    expect(cleaning.decode(cleaning.encode(text))).toBe("a, b. c'dn't"); // transformers' clean_up_tokenization rules
  });

  it("accepts AddedToken-object special tokens and a list of named templates", () => {
    const tok = loadTokenizer(byteJson, {
      eos_token: { __type: "AddedToken", content: "E" },
      chat_template: [
        { name: "tool_use", template: "tools" },
        { name: "default", template: "{{ eos_token }}{{ messages[0].content }}" },
      ],
    });
    expect(tok.applyChatTemplate([{ role: "user", content: "x" }], { addGenerationPrompt: false, enableThinking: false })).toBe("Ex");
    // "E" is an ordinary byte token here, so it is the eos id.
    expect(tok.eosTokenIds).toEqual([69]);
  });
});
