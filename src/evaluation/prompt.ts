// How a dataset item (src/evaluation/dataset.ts) becomes token ids, for `eval-ab` (which answer token
// the model prefers) and `caa` (the activation at the answer token) alike, so a CAA vector is read
// exactly where eval-ab scores it.
//
//   text   = render(question) + prefix
//            render: the question itself, or with chat the checkpoint's chat template applied to
//            [system?, user: question] with the generation prompt (thinking disabled);
//            prefix: --answer-prefix when given, else "" with chat (the answer opens the assistant's
//            reply), "" when the question already ends in "Answer:" (Anthropic's A/B files), else
//            "\n\nAnswer:". Never "Answer:" twice.
//   answer = a letter item's "(A)" (or "A)" after a prefix ending in "("), a text item's answer
//            (" Yes"), each written as it follows `text`: after a space when `text` ends in a visible
//            character, without one after whitespace or "(";
//            a completion item appends its completion verbatim (that format's meaning: prompt and
//            completion are one text), with no prefix.
// The two sequences are text + matching answer and text + other answer, each tokenized as a whole.
// They must differ in exactly one token, at the same position (what comes before and after may be
// shared, like " (" and ")" around the letter): that position is the answer token. eval-ab scores
// logit(matching answer token) - logit(other answer token) after the shared tokens before it; CAA
// reads the layer-S output there. With a Qwen3 tokenizer and chat, "(A" is one token and is the one
// compared, as the research line's code does; with " (A)" after "Answer:" the letter "A" is.
import { renderPromptText, type TextTokenizer } from "../tokenizer/index.js";
import type { DatasetItem } from "./dataset.js";

export interface PromptStyle {
  chat: boolean;
  /** system message (chat only) */
  system?: string;
  /** text between the question and the answer; undefined: the format's default (above) */
  answerPrefix?: string;
}

export interface ItemPrompt {
  item: DatasetItem;
  /** the rendered question plus the answer prefix: the text both answers continue */
  text: string;
  /** the answers as appended to `text` */
  matchingAnswer: string;
  otherAnswer: string;
  /** token ids of text + answer, each tokenized as a whole */
  matchingTokens: number[];
  otherTokens: number[];
  /** index (in both lists) of the one token where the answers differ; null when there is none */
  answerPosition: number | null;
  /** why answerPosition is null: one line naming the item */
  problem?: string;
}

/** The answer prefix a question gets by default. */
export function defaultAnswerPrefix(question: string, chat: boolean): string {
  if (chat) return "";
  return /Answer:\s*$/.test(question) ? "" : "\n\nAnswer:";
}

/** True when `prefix` would put a second "Answer:" after a question that ends in one. */
export function doublesAnswer(question: string, prefix: string): boolean {
  return /Answer:\s*$/.test(question) && /Answer:/.test(prefix);
}

function follow(text: string, body: string): string {
  return text === "" || /[\s(]$/.test(text) ? body : " " + body;
}

function encodeAs(tok: TextTokenizer, text: string, chat: boolean): number[] {
  // as renderPrompt: rendered chat text carries its own special tokens
  return chat ? tok.encode(text, { addSpecialTokens: false }) : tok.encode(text);
}

/** The one position where two token lists differ, with only shared tokens before and after it. */
export function singleDifference(a: readonly number[], b: readonly number[]): { position: number } | { first: number; suffix: number } {
  let k = 0;
  while (k < a.length && k < b.length && a[k] === b[k]) k++;
  let s = 0;
  while (s < a.length - k && s < b.length - k && a[a.length - 1 - s] === b[b.length - 1 - s]) s++;
  if (a.length - k - s === 1 && b.length - k - s === 1) return { position: k };
  return { first: k, suffix: s };
}

export function buildItemPrompt(tok: TextTokenizer, item: DatasetItem, style: PromptStyle): ItemPrompt {
  const rendered = renderPromptText(tok, item.question, { chat: style.chat, system: style.system });
  let text: string, matchingAnswer: string, otherAnswer: string;
  if (item.kind === "completion") {
    text = rendered;
    [matchingAnswer, otherAnswer] = [item.matching, item.other];
  } else {
    text = rendered + (style.answerPrefix ?? defaultAnswerPrefix(item.question, style.chat));
    const body = (a: string) => (item.kind === "letters" ? (text.endsWith("(") ? `${a})` : `(${a})`) : a.trimStart());
    [matchingAnswer, otherAnswer] = [follow(text, body(item.matching)), follow(text, body(item.other))];
  }
  const matchingTokens = encodeAs(tok, text + matchingAnswer, style.chat);
  const otherTokens = encodeAs(tok, text + otherAnswer, style.chat);
  const diff = singleDifference(matchingTokens, otherTokens);
  const out: ItemPrompt = { item, text, matchingAnswer, otherAnswer, matchingTokens, otherTokens, answerPosition: null };
  if ("position" in diff) {
    out.answerPosition = diff.position;
  } else {
    const pieces = (ids: number[]) => JSON.stringify(ids.slice(diff.first, ids.length - diff.suffix).map((id) => tok.decode([id])));
    out.problem =
      diff.first === matchingTokens.length && diff.first === otherTokens.length
        ? `${item.where}: the answers ${JSON.stringify(matchingAnswer)} and ${JSON.stringify(otherAnswer)} give the same tokens`
        : `${item.where}: the answers ${JSON.stringify(matchingAnswer)} and ${JSON.stringify(otherAnswer)} are not single tokens that differ for this tokenizer (${pieces(matchingTokens)} vs ${pieces(otherTokens)}); one token per answer is compared`;
  }
  return out;
}

/** "\\n" and "\\t" written literally in a flag become a newline and a tab ("\\\\" is a backslash). */
export function unescapeFlagText(s: string): string {
  return s.replace(/\\(n|t|\\)/g, (_, c: string) => (c === "n" ? "\n" : c === "t" ? "\t" : "\\"));
}

/** One line showing a token: its id and its text. */
export function describeToken(tok: TextTokenizer, id: number): string {
  return `${id} ${JSON.stringify(tok.decode([id]))}`;
}
