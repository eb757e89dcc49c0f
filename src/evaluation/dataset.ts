// The one reader of question / contrastive-pair datasets, for `caa` and `eval-ab` alike.
//
// Files (the layout is detected from the content, not the file name):
//   - JSON Lines: one object per line (blank lines skipped); errors name the line (1-based);
//   - a JSON array of objects; errors name the item (0-based);
//   - the research line's combined file: ONE JSON object {eval_name: [item, ...], ...}; errors name
//     the eval and the item. Select evals with `evals` (--eval NAME), or take them all.
// Every item is one of (the field names are what the published files use):
//   letters     an A/B question: Anthropic's model-written evals
//                 {"question", "answer_matching_behavior": " (A)", "answer_not_matching_behavior": " (B)"}
//               (answers "(A)", " (A)", "A", "A.", "(A) some text", or a one-element list of one), or
//               the research line's items {"question", "matching_letter": "A", "not_matching_letter": "B",
//               "aligned_letter", "not_aligned_letter", "behavior_name", "behavior_polarity", ...}
//   text        answers that are not letters, e.g. Anthropic's persona evals (Yes/No)
//                 {"question", "statement", "answer_matching_behavior": " Yes", "answer_not_matching_behavior": " No", "label_confidence"}
//   completion  a prompt and two completions {"prompt", "positive", "negative"}
// Other fields are ignored. How an item becomes token ids is src/evaluation/prompt.ts.
import { InputError } from "../model/qwen3.js";
import { createRng } from "../generation/prng.js";

export type ItemKind = "letters" | "text" | "completion";

export interface DatasetItem {
  /** 0-based position in the file (in a combined file: in its eval's list) */
  index: number;
  /** where the item is in its file: "line 3" (JSON Lines, 1-based), "item 2" (array, 0-based), 'eval "x" item 2' */
  ref: string;
  /** the same after the file's label, for messages: "--dataset F line 3" */
  where: string;
  /** the eval it belongs to in a combined file, else null */
  eval: string | null;
  kind: ItemKind;
  /** the question, or the completion form's prompt */
  question: string;
  /**
   * The answer showing the behaviour and the other one. letters: the letters ("A", "B");
   * text: the answer as the file spells it (" Yes"); completion: the positive / negative completion.
   */
  matching: string;
  other: string;
  /**
   * Which answer is the aligned one where the file says so (the research line's aligned_letter), else
   * null. After orient("aligned") "matching" holds the aligned answer.
   */
  aligned: "matching" | "other" | null;
  /** set by balanceItems when it swapped the two choices in the question text */
  swapped?: boolean;
}

export interface Dataset {
  file: string;
  layout: "jsonl" | "array" | "combined";
  /** the evals of a combined file, in file order (all of them, not only the selected ones) */
  evals: string[] | null;
  items: DatasetItem[];
}

/** "(A)", " (A)", "A", "A.", "A)", "(A) text": the letter, else null. Bare words ("I agree") are not letters. */
export function answerLetter(answer: unknown): string | null {
  if (Array.isArray(answer) && answer.length === 1) answer = answer[0];
  if (typeof answer !== "string") return null;
  const m = /^\s*\(\s*([A-Za-z])\s*\)/.exec(answer) ?? /^\s*([A-Za-z])\s*$/.exec(answer) ?? /^\s*([A-Za-z])[.)](?:\s|$)/.exec(answer);
  return m ? m[1] : null;
}

/** An answer field as text: a string, or a one-element list of one. */
function answerText(answer: unknown): string | null {
  if (Array.isArray(answer) && answer.length === 1) answer = answer[0];
  return typeof answer === "string" ? answer : null;
}

function parseItem(raw: unknown, index: number, label: string, ref: string, evalName: string | null): DatasetItem {
  const where = `${label} ${ref}`;
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new InputError(`${where}: expected a JSON object`);
  const o = raw as Record<string, unknown>;
  const base = { index, ref, eval: evalName, aligned: null as DatasetItem["aligned"] };
  const str = (k: string): string => {
    if (!(k in o)) throw new InputError(`${where}: missing field "${k}"`);
    if (typeof o[k] !== "string") throw new InputError(`${where}: field "${k}" must be a string`);
    return o[k] as string;
  };
  if ("prompt" in o || "positive" in o || "negative" in o) {
    const [prompt, positive, negative] = ["prompt", "positive", "negative"].map(str);
    if (positive === "" || negative === "") throw new InputError(`${where}: empty completion`);
    return { ...base, where, kind: "completion", question: prompt, matching: positive, other: negative };
  }
  if (!("question" in o)) {
    throw new InputError(`${where}: expected {"question", "answer_matching_behavior", "answer_not_matching_behavior"}, {"question", "matching_letter", "not_matching_letter"} or {"prompt", "positive", "negative"}`);
  }
  const question = str("question");
  if (question.trim() === "") throw new InputError(`${where}: "question" is empty`);
  if ("matching_letter" in o || "not_matching_letter" in o) {
    // the research line's combined-file item
    const m = answerLetter(str("matching_letter")), n = answerLetter(str("not_matching_letter"));
    if (m === null || n === null) throw new InputError(`${where}: "matching_letter" ${JSON.stringify(o.matching_letter)} and "not_matching_letter" ${JSON.stringify(o.not_matching_letter)} must be letters`);
    if (m === n) throw new InputError(`${where}: both answers are "${m}"`);
    let aligned: DatasetItem["aligned"] = null;
    if (typeof o.aligned_letter === "string") {
      const a = answerLetter(o.aligned_letter);
      if (a !== m && a !== n) throw new InputError(`${where}: "aligned_letter" ${JSON.stringify(o.aligned_letter)} is neither answer ("${m}", "${n}")`);
      aligned = a === m ? "matching" : "other";
    }
    return { ...base, where, kind: "letters", question, matching: m, other: n, aligned };
  }
  for (const k of ["answer_matching_behavior", "answer_not_matching_behavior"]) {
    if (!(k in o)) throw new InputError(`${where}: missing field "${k}"`);
    if (answerText(o[k]) === null) throw new InputError(`${where}: field "${k}" must be a string (or a list of one string)`);
  }
  const am = o.answer_matching_behavior, an = o.answer_not_matching_behavior;
  const lm = answerLetter(am), ln = answerLetter(an);
  if (lm !== null && ln !== null) {
    if (lm === ln) throw new InputError(`${where}: both answers are "${lm}"`);
    return { ...base, where, kind: "letters", question, matching: lm, other: ln };
  }
  const tm = answerText(am)!, tn = answerText(an)!;
  if (tm.trim() === "" || tn.trim() === "") throw new InputError(`${where}: empty answer`);
  if (tm.trim() === tn.trim()) throw new InputError(`${where}: both answers are ${JSON.stringify(tm.trim())}`);
  if ((lm === null) !== (ln === null)) throw new InputError(`${where}: one answer is a letter (${JSON.stringify(lm === null ? an : am)}) and the other is not (${JSON.stringify(lm === null ? am : an)})`);
  return { ...base, where, kind: "text", question, matching: tm, other: tn };
}

/**
 * Parse a dataset's text. `label` starts every error (e.g. "--dataset FILE"); `file` is kept in the
 * result. Items keep file order (a combined file: eval by eval).
 */
export function parseDataset(text: string, label: string, file = label): Dataset {
  const trimmed = text.trim();
  if (trimmed === "") throw new InputError(`${label}: the file is empty`);
  const items: DatasetItem[] = [];
  let layout: Dataset["layout"];
  let evals: string[] | null = null;
  let whole: unknown = undefined;
  if (trimmed.startsWith("[") || trimmed.startsWith("{")) {
    try {
      whole = JSON.parse(trimmed);
    } catch {
      // a JSON Lines file also starts with "{": parsed line by line below
    }
    if (whole === undefined && trimmed.startsWith("[")) {
      try {
        JSON.parse(trimmed);
      } catch (e) {
        throw new InputError(`${label}: not valid JSON (${(e as Error).message})`);
      }
    }
  }
  if (Array.isArray(whole)) {
    layout = "array";
    whole.forEach((raw, i) => items.push(parseItem(raw, i, label, `item ${i}`, null)));
  } else if (typeof whole === "object" && whole !== null && !("question" in whole) && !("prompt" in whole)) {
    // one object that is not itself an item: the combined {eval_name: [items]} file
    layout = "combined";
    evals = Object.keys(whole);
    for (const [name, list] of Object.entries(whole as Record<string, unknown>)) {
      if (!Array.isArray(list)) throw new InputError(`${label}: eval "${name}" is not a list of items (a combined file is {eval_name: [item, ...], ...})`);
      list.forEach((raw, i) => items.push(parseItem(raw, i, label, `eval "${name}" item ${i}`, name)));
    }
  } else {
    // JSON Lines (a file of one object that is not {eval: [...]} is one line of it)
    layout = "jsonl";
    text.split(/\r?\n/).forEach((line, i) => {
      if (line.trim() === "") return;
      let raw: unknown;
      try {
        raw = JSON.parse(line);
      } catch (e) {
        throw new InputError(`${label}: line ${i + 1} is not valid JSON (expected JSON Lines, a JSON array, or one {eval_name: [items]} object: ${(e as Error).message})`);
      }
      items.push(parseItem(raw, items.length, label, `line ${i + 1}`, null));
    });
  }
  if (items.length === 0) throw new InputError(`${label}: no items`);
  return { file, layout, evals, items };
}

/** Keep the named evals of a combined file (in the order named); `flag` is named in errors. */
export function selectEvals(ds: Dataset, names: readonly string[], label: string): DatasetItem[] {
  if (!names.length) return ds.items;
  if (!ds.evals) throw new InputError(`--eval ${names[0]}: ${label} is not a combined {eval_name: [items]} file`);
  const out: DatasetItem[] = [];
  for (const name of names) {
    if (!ds.evals.includes(name)) throw new InputError(`--eval ${name}: ${label} has no eval "${name}" (it has ${ds.evals.join(", ")})`);
    out.push(...ds.items.filter((it) => it.eval === name));
  }
  return out;
}

/**
 * Which answer counts as the positive side: "matching" (the file's answer_matching_behavior, as the
 * published evals label it) or "aligned" (the research line's aligned_letter; polarity flips it for
 * evals whose matching answer is the misaligned one). Every item must say which side is aligned.
 */
export function orient(items: readonly DatasetItem[], towards: "matching" | "aligned"): DatasetItem[] {
  if (towards === "matching") return items.slice();
  return items.map((it) => {
    if (it.aligned === null) throw new InputError(`--towards aligned: ${it.where} has no "aligned_letter" (only the research line's combined file says which answer is aligned)`);
    return it.aligned === "matching" ? it : { ...it, matching: it.other, other: it.matching, aligned: "matching" };
  });
}

/** Fisher-Yates with the project's portable PRNG, so a seed gives the same split everywhere. */
function shuffled<T>(xs: readonly T[], rand: () => number): T[] {
  const a = xs.slice();
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

const groupKey = (it: DatasetItem) => it.eval ?? "";

function groups(items: readonly DatasetItem[]): Map<string, DatasetItem[]> {
  const g = new Map<string, DatasetItem[]>();
  for (const it of items) {
    const list = g.get(groupKey(it));
    if (list) list.push(it);
    else g.set(groupKey(it), [it]);
  }
  return g;
}

export interface Split {
  train: DatasetItem[];
  heldOut: DatasetItem[];
}

/**
 * The research line's split: per eval (a file without evals is one group), a seeded sample of
 * round(fraction * n) items for training; the rest is held out for evaluation. Both parts keep file
 * order, so `caa` and `eval-ab` given the same flags use complementary items. Eval k of the file
 * (its position in `evals`) draws from the stream seeded with seed + k, so selecting fewer evals
 * does not change the split of the others.
 */
export function splitItems(items: readonly DatasetItem[], opts: { fraction: number; seed: number; evals?: readonly string[] | null }): Split {
  const train = new Set<DatasetItem>();
  for (const [key, list] of groups(items)) {
    const k = opts.evals ? Math.max(0, opts.evals.indexOf(key)) : 0;
    const n = Math.round(opts.fraction * list.length);
    for (const it of shuffled(list, createRng(opts.seed + k)).slice(0, n)) train.add(it);
  }
  return { train: items.filter((it) => train.has(it)), heldOut: items.filter((it) => !train.has(it)) };
}

/**
 * Swap the two choices " (A) ..." and " (B) ..." in a question's text. The choices are the lines that
 * start (after spaces) with "(A)" and "(B)", A first; B's text runs to the next blank line, a line
 * starting "Answer:", or the end. Null when the question does not have exactly that shape.
 */
export function swapChoices(question: string): string | null {
  const markers = (letter: string) => [...question.matchAll(new RegExp(`(^|\\n)[ \\t]*\\(${letter}\\)`, "g"))];
  const a = markers("A"), b = markers("B"), c = markers("C");
  if (a.length !== 1 || b.length !== 1 || c.length !== 0) return null;
  const aEnd = a[0].index! + a[0][0].length; // just after "(A)"
  const bStart = b[0].index!; // at the newline before B's line
  const bEnd = b[0].index! + b[0][0].length;
  if (bStart < aEnd) return null;
  const rest = question.slice(bEnd);
  const stop = /\n[ \t]*\n|\nAnswer:/.exec(rest);
  const bTextEnd = bEnd + (stop ? stop.index : rest.length);
  const textA = question.slice(aEnd, bStart), textB = question.slice(bEnd, bTextEnd);
  return question.slice(0, aEnd) + textB + question.slice(bStart, bEnd) + textA + question.slice(bTextEnd);
}

/**
 * Balance A/B items so that A and B are each the positive ("matching") answer for half of each
 * eval's items (one more for one of them when the count is odd), by swapping the choices in the
 * question text of a seeded sample of the majority letter's items; the fewest items change. Only
 * two-choice A/B questions can be balanced; anything else is an error naming the item.
 */
export function balanceItems(items: readonly DatasetItem[], seed: number): DatasetItem[] {
  const swap = new Set<DatasetItem>();
  for (const it of items) {
    const letters = [it.matching, it.other].sort().join("");
    if (it.kind !== "letters" || letters !== "AB") throw new InputError(`--balance: ${it.where} is not an A/B question (balancing swaps the choices (A) and (B))`);
    if (swapChoices(it.question) === null) throw new InputError(`--balance: ${it.where}: cannot find exactly one "(A)" and one "(B)" choice line to swap in the question`);
  }
  let k = 0;
  for (const list of groups(items).values()) {
    const a = list.filter((it) => it.matching === "A"), b = list.filter((it) => it.matching === "B");
    const [major, minor] = a.length >= b.length ? [a, b] : [b, a];
    const excess = Math.floor((major.length - minor.length) / 2);
    for (const it of shuffled(major, createRng(seed + 7919 * ++k)).slice(0, excess)) swap.add(it);
  }
  return items.map((it) =>
    swap.has(it) ? { ...it, question: swapChoices(it.question)!, matching: it.other, other: it.matching, swapped: true } : it,
  );
}
