// The bundled tiny model's byte-level tokenizer: any text -> its UTF-8 bytes as ids 0..255.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { packageRoot } from "../../src/node/runtime.js";
import { loadTokenizerFromDir } from "../../src/node/tokenizer-files.js";
import { renderPrompt, renderPromptText, tinyTokenizerFiles } from "../../src/tokenizer/index.js";
import { rng } from "../helpers/random.js";

const tinyDir = join(packageRoot(), "models", "tiny");
const tok = await loadTokenizerFromDir(tinyDir);
const utf8 = (s: string) => Array.from(new TextEncoder().encode(s));

function randomUnicode(seed: number, n: number): string {
  // Code points from every UTF-8 length class, controls included; lone surrogates are left to their own test.
  const r = rng(seed);
  const ranges: [number, number][] = [[0, 0x7f], [0x80, 0x7ff], [0x800, 0xd7ff], [0xe000, 0xffff], [0x10000, 0x10ffff]];
  let s = "";
  for (let i = 0; i < n; i++) {
    const [lo, hi] = ranges[Math.floor(r() * ranges.length)];
    s += String.fromCodePoint(lo + Math.floor(r() * (hi - lo + 1)));
  }
  return s;
}

describe("tiny byte-level tokenizer", () => {
  it("the files in models/tiny are what scripts/make-tiny-tokenizer writes", () => {
    for (const [name, text] of Object.entries(tinyTokenizerFiles())) {
      expect(readFileSync(join(tinyDir, name), "utf8")).toBe(text);
    }
  });

  it("has exactly 256 tokens, no added tokens, no merges, no eos", () => {
    const json = JSON.parse(readFileSync(join(tinyDir, "tokenizer.json"), "utf8"));
    expect(Object.keys(json.model.vocab)).toHaveLength(256);
    expect(new Set(Object.values(json.model.vocab))).toEqual(new Set(Array.from({ length: 256 }, (_, i) => i)));
    expect(json.model.merges).toEqual([]);
    expect(json.added_tokens).toEqual([]);
    expect(tok.vocabSize).toBe(256);
    expect(tok.eosTokenIds).toEqual([]);
  });

  it("uses GPT-2's byte alphabet: printable bytes are themselves, space is 'Ġ', newline 'Ċ'", () => {
    expect(tok.idToToken(65)).toBe("A");
    expect(tok.idToToken(32)).toBe("\u0120");
    expect(tok.idToToken(10)).toBe("\u010a");
    expect(tok.idToToken(0)).toBe("\u0100");
    expect(tok.idToToken(255)).toBe("\u00ff");
  });

  const fixed = [
    "Hello world",
    "",
    "héllo 世界 🙂 👨‍👩‍👧",
    "  a \n\n\t b   ",
    "<|im_start|>user\nhi<|im_end|>",
    "\u0000\u0001\u007f\u0080\u00ad\uffff",
    "e\u0301 vs \u00e9", // not normalized: both spellings keep their own bytes
  ];
  for (const text of fixed) {
    it(`encode == UTF-8 bytes and decode round-trips: ${JSON.stringify(text)}`, () => {
      const ids = tok.encode(text);
      expect(ids).toEqual(utf8(text));
      expect(tok.decode(ids)).toBe(text);
    });
  }

  it("encode == UTF-8 bytes and decode round-trips on random Unicode", () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      const text = randomUnicode(seed, 500);
      const ids = tok.encode(text);
      expect(ids).toEqual(utf8(text));
      expect(tok.decode(ids)).toBe(text);
    }
  });

  it("decodes every byte sequence that is valid UTF-8, and all 256 ids", () => {
    const all = Array.from({ length: 256 }, (_, i) => i);
    expect(tok.decode(all)).toBe(new TextDecoder().decode(new Uint8Array(all)));
    expect(tok.decode([0xe4, 0xb8, 0x96])).toBe("世");
  });

  it("encodes a lone surrogate as U+FFFD's bytes, like any UTF-8 encoder", () => {
    expect(tok.encode("a\ud800b")).toEqual([0x61, 0xef, 0xbf, 0xbd, 0x62]);
  });

  it("renders the Qwen3-style chat template as plain text", () => {
    const expected =
      "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n";
    expect(renderPromptText(tok, "hi", { chat: true, system: "Be brief." })).toBe(expected);
    expect(renderPrompt(tok, "hi", { chat: true, system: "Be brief." })).toEqual(utf8(expected));
    const msgs = [{ role: "user", content: "hi" }];
    expect(tok.applyChatTemplate(msgs, { addGenerationPrompt: true, enableThinking: true })).toBe(
      "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
    );
    expect(tok.applyChatTemplate(msgs, { addGenerationPrompt: false, enableThinking: false })).toBe(
      "<|im_start|>user\nhi<|im_end|>\n",
    );
    expect(renderPrompt(tok, "hi")).toEqual([0x68, 0x69]);
  });
});
