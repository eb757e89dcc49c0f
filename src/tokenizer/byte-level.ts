// The bundled tiny model's tokenizer: byte-level BPE with exactly 256 tokens and no merges, so every
// text encodes to its UTF-8 bytes (id = byte value) and every id sequence decodes back. Written to
// models/tiny/ by scripts/make-tiny-tokenizer.ts; kept here so tests can check the files are current.

/**
 * GPT-2's byte -> printable character table (`bytes_to_unicode` in openai/gpt-2 `encoder.py`):
 * printable Latin-1 bytes map to themselves, the other 68 bytes to U+0100.. in byte order.
 */
export function bytesToUnicode(): string[] {
  const table = new Array<string>(256);
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  let next = 0;
  for (let b = 0; b < 256; b++) table[b] = String.fromCodePoint(printable(b) ? b : 256 + next++);
  return table;
}

/** A tokenizer.json whose token id i is byte i. */
export function makeByteLevelTokenizerJson(): object {
  const vocab: Record<string, number> = {};
  bytesToUnicode().forEach((ch, byte) => (vocab[ch] = byte));
  const byteLevel = { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false };
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [],
    // No normalizer: the ids must be the bytes of the text exactly as given.
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: byteLevel,
    decoder: byteLevel,
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: [],
    },
  };
}

/**
 * Qwen3's chat format for plain system/user/assistant messages, spelled out in ordinary text (the
 * tiny vocabulary has no special tokens, so "<|im_start|>" is 12 byte tokens). Honours
 * add_generation_prompt and enable_thinking (false appends the empty think block, as Qwen3's does).
 */
export const TINY_CHAT_TEMPLATE =
  "{%- for message in messages %}" +
  "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}" +
  "{%- endfor %}" +
  "{%- if add_generation_prompt %}" +
  "{{- '<|im_start|>assistant\\n' }}" +
  "{%- if enable_thinking is defined and enable_thinking is false %}" +
  "{{- '<think>\\n\\n</think>\\n\\n' }}" +
  "{%- endif %}" +
  "{%- endif %}";

export function makeTinyTokenizerConfig(): object {
  return {
    tokenizer_class: "PreTrainedTokenizerFast",
    add_bos_token: false,
    add_prefix_space: false,
    bos_token: null,
    eos_token: null,
    pad_token: null,
    unk_token: null,
    clean_up_tokenization_spaces: false,
    chat_template: TINY_CHAT_TEMPLATE,
  };
}

/** The two files exactly as written to disk (2-space JSON, trailing newline), so the output is deterministic. */
export function tinyTokenizerFiles(): { "tokenizer.json": string; "tokenizer_config.json": string } {
  const text = (o: object) => JSON.stringify(o, null, 2) + "\n";
  return {
    "tokenizer.json": text(makeByteLevelTokenizerJson()),
    "tokenizer_config.json": text(makeTinyTokenizerConfig()),
  };
}
