// How an A/B question becomes a prompt whose next token is the answer letter.
//
//   text = render(question) + answerPrefix
//   render(question) = the question itself, or with chat the checkpoint's chat template applied to
//                      [system?, user: question] with the generation prompt (thinking disabled), so
//                      the prefix starts the assistant's reply;
//   answerPrefix     = "\n\nAnswer: (" plain, "(" with chat (the CAA repository's choice: the reply
//                      opens with "(" and the letter comes next); settable.
// The letter's token id is the one token that encode(text + letter) adds to encode(text). When the
// tokenizer merges the letter with the prefix's last characters (e.g. "(A" as one token) the id of
// the letter encoded alone is used and the prompt is flagged, so the caller can warn.
import { InputError } from "../model/qwen3.js";
import { renderPromptText, type TextTokenizer } from "../tokenizer/index.js";
import type { AbQuestion } from "./dataset.js";

export const DEFAULT_ANSWER_PREFIX = { plain: "\n\nAnswer: (", chat: "(" } as const;

export interface AbPromptOptions {
  chat: boolean;
  system?: string;
  answerPrefix: string;
}

export interface AbPrompt {
  question: AbQuestion;
  text: string;
  tokens: number[];
  matchingId: number;
  otherId: number;
  /** The letter does not tokenize as one token after the prefix (see above). */
  letterMerged: boolean;
}

function encodeAs(tok: TextTokenizer, text: string, chat: boolean): number[] {
  // as renderPrompt: chat text carries its own special tokens
  return chat ? tok.encode(text, { addSpecialTokens: false }) : tok.encode(text);
}

export function buildAbPrompt(tok: TextTokenizer, q: AbQuestion, opts: AbPromptOptions): AbPrompt {
  const text = renderPromptText(tok, q.question, { chat: opts.chat, system: opts.system }) + opts.answerPrefix;
  const tokens = encodeAs(tok, text, opts.chat);
  let merged = false;
  const letterId = (letter: string): number => {
    const ext = encodeAs(tok, text + letter, opts.chat);
    if (ext.length === tokens.length + 1 && tokens.every((t, i) => ext[i] === t)) return ext[tokens.length];
    merged = true;
    const alone = tok.encode(letter, { addSpecialTokens: false });
    if (alone.length !== 1) throw new InputError(`--dataset: question ${q.index}: the answer letter "${letter}" is not a single token for this tokenizer`);
    return alone[0];
  };
  const matchingId = letterId(q.matching);
  const otherId = letterId(q.other);
  if (matchingId === otherId) throw new InputError(`--dataset: question ${q.index}: letters "${q.matching}" and "${q.other}" have the same token id ${matchingId}`);
  return { question: q, text, tokens, matchingId, otherId, letterMerged: merged };
}

/** "\\n" and "\\t" written literally in a flag become a newline and a tab ("\\\\" is a backslash). */
export function unescapeFlagText(s: string): string {
  return s.replace(/\\(n|t|\\)/g, (_, c: string) => (c === "n" ? "\n" : c === "t" ? "\t" : "\\"));
}
