// An independent, deliberately naive reference for Qwen2/Qwen3's byte-level BPE, written from the
// format's definition and not from tokenizers.js: split on added tokens, NFC, the Qwen2 pre-tokenizer
// regex (Oniguruma's `(?i:...)` spelled out for JavaScript), bytes -> GPT-2 characters, then the
// classic GPT-2 merge loop (merge the lowest-ranked adjacent pair everywhere, repeat).
// Slow (quadratic per word); fine for test strings. Exotic Unicode whitespace is out of scope:
// JavaScript's \s and Oniguruma's differ there.

interface QwenTokenizerJson {
  added_tokens: { id: number; content: string }[];
  model: { vocab: Record<string, number>; merges: (string | [string, string])[] };
}

const QWEN2_PRETOKENIZE =
  /'(?:[sS]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+/gu;

function gpt2ByteChars(): string[] {
  // Bytes '!'..'~', '¡'..'¬', '®'..'ÿ' stand for themselves; the rest take U+0100, U+0101, ... in order.
  const keep = new Set<number>();
  for (const [lo, hi] of [[33, 126], [161, 172], [174, 255]]) for (let b = lo; b <= hi; b++) keep.add(b);
  const out: string[] = [];
  let extra = 0;
  for (let b = 0; b < 256; b++) out.push(String.fromCharCode(keep.has(b) ? b : 256 + extra++));
  return out;
}

export function makeReferenceEncoder(tj: QwenTokenizerJson): (text: string) => number[] {
  const byteChars = gpt2ByteChars();
  const ranks = new Map<string, number>();
  tj.model.merges.forEach((m, i) => {
    const [a, b] = typeof m === "string" ? m.split(" ") : m;
    ranks.set(a + "\u0000" + b, i);
  });
  const added = [...tj.added_tokens].sort((x, y) => y.content.length - x.content.length);
  const utf8 = new TextEncoder();

  const bpe = (word: string[]): string[] => {
    for (;;) {
      let best = -1, bestRank = Infinity;
      for (let i = 0; i + 1 < word.length; i++) {
        const r = ranks.get(word[i] + "\u0000" + word[i + 1]);
        if (r !== undefined && r < bestRank) (bestRank = r), (best = i);
      }
      if (best < 0) return word;
      const a = word[best], b = word[best + 1];
      const merged: string[] = [];
      for (let i = 0; i < word.length; i++) {
        if (i + 1 < word.length && word[i] === a && word[i + 1] === b) merged.push(a + b), i++;
        else merged.push(word[i]);
      }
      word = merged;
    }
  };

  const encodePlain = (text: string, out: number[]) => {
    for (const piece of text.normalize("NFC").match(QWEN2_PRETOKENIZE) ?? []) {
      const chars = Array.from(utf8.encode(piece), (b) => byteChars[b]);
      for (const t of bpe(chars)) {
        const id = Object.hasOwn(tj.model.vocab, t) ? tj.model.vocab[t] : undefined;
        if (id === undefined) throw new Error(`reference: no id for ${JSON.stringify(t)}`);
        out.push(id);
      }
    }
  };

  return (text: string) => {
    const out: number[] = [];
    let start = 0, i = 0;
    while (i < text.length) {
      const hit = added.find((a) => text.startsWith(a.content, i));
      if (hit) {
        encodePlain(text.slice(start, i), out);
        out.push(hit.id);
        i += hit.content.length;
        start = i;
      } else i++;
    }
    encodePlain(text.slice(start), out);
    return out;
  };
}
