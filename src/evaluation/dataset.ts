// A/B question datasets, as in Anthropic's model-written evaluations and the CAA repository.
//
// Accepted files (the format is detected from the content, not the file name):
//   - a JSON array of objects, or
//   - JSON Lines: one object per line (blank lines skipped),
// each object with
//   question                        string: the question, usually ending with the choices
//                                   ("...\n\nChoices:\n (A) Yes\n (B) No")
//   answer_matching_behavior        the answer showing the behaviour: "(A)", "A", " (A)", "(A) Yes",
//                                   or a one-element array of such a string
//   answer_not_matching_behavior    the other answer, in the same forms
// and any other fields (ignored). The answer's letter (A-Z, a-z) is what is scored.
import { InputError } from "../model/qwen3.js";

export interface AbQuestion {
  /** 0-based position in the file. */
  index: number;
  question: string;
  /** The letters of the two answers, e.g. "A" and "B". */
  matching: string;
  other: string;
}

const LETTER = /^\s*\(?\s*([A-Za-z])\s*(?:\)|\.|$|\s)/;

/** The letter of an answer field, or null if it has none. */
export function answerLetter(answer: unknown): string | null {
  if (Array.isArray(answer) && answer.length === 1) answer = answer[0];
  if (typeof answer !== "string") return null;
  const m = LETTER.exec(answer);
  return m ? m[1] : null;
}

/** Parse a dataset's text; `file` is named in every error. */
export function parseAbDataset(text: string, file: string): AbQuestion[] {
  let items: unknown[];
  const trimmed = text.trim();
  if (trimmed === "") throw new InputError(`--dataset ${file}: the file is empty`);
  if (trimmed.startsWith("[")) {
    try {
      items = JSON.parse(trimmed);
    } catch (e) {
      throw new InputError(`--dataset ${file}: not valid JSON (${(e as Error).message})`);
    }
  } else {
    items = [];
    const lines = text.split(/\r?\n/);
    lines.forEach((line, i) => {
      if (line.trim() === "") return;
      try {
        items.push(JSON.parse(line));
      } catch (e) {
        throw new InputError(`--dataset ${file}: line ${i + 1} is not valid JSON (expected a JSON array, or one JSON object per line: ${(e as Error).message})`);
      }
    });
  }
  if (items.length === 0) throw new InputError(`--dataset ${file}: no questions`);
  return items.map((item, index) => {
    const where = `--dataset ${file}: question ${index}`;
    if (typeof item !== "object" || item === null || Array.isArray(item)) throw new InputError(`${where}: expected an object`);
    const o = item as Record<string, unknown>;
    if (typeof o.question !== "string" || o.question === "") throw new InputError(`${where}: "question" must be a non-empty string`);
    const matching = answerLetter(o.answer_matching_behavior);
    const other = answerLetter(o.answer_not_matching_behavior);
    if (matching === null) throw new InputError(`${where}: "answer_matching_behavior" ${JSON.stringify(o.answer_matching_behavior)} has no answer letter (expected e.g. "(A)" or "A")`);
    if (other === null) throw new InputError(`${where}: "answer_not_matching_behavior" ${JSON.stringify(o.answer_not_matching_behavior)} has no answer letter (expected e.g. "(B)" or "B")`);
    if (matching === other) throw new InputError(`${where}: both answers are "${matching}"`);
    return { index, question: o.question, matching, other };
  });
}
