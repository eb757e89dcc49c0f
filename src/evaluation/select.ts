// Which items of a dataset a run uses: the evals, which side is positive, the research line's train /
// held-out split and A/B balancing, a limit. One implementation for caa and eval-ab (CLI and library):
// the same choices give caa the train items and eval-ab the held-out ones. Platform-neutral (the text
// is read by the caller).
import { InputError } from "../model/qwen3.js";
import { balanceItems, orient, parseDataset, selectEvals, splitItems, type Dataset, type DatasetItem } from "./dataset.js";

/** A dataset's text and which of its items to use. */
export interface DatasetInput {
  /** The file's text: JSON Lines, a JSON array, or the combined {eval: [items]} object. */
  text: string;
  /** Its name, for messages and the summary (default "dataset"). */
  file?: string;
  /** How messages name it (default "--dataset FILE"). */
  label?: string;
  /** Only these evals of a combined file (default all). */
  evals?: readonly string[];
  /** The positive answer: "matching" (default) or "aligned". */
  towards?: "matching" | "aligned";
  /** Split every eval: this share for training (caa), the rest held out (eval-ab). */
  trainFraction?: number;
  /** Seed of the split and of balance (default 0). */
  seed?: number;
  /** A and B each the positive answer for half of each eval's items. */
  balance?: boolean;
  /** Only the first N items (after the split and balancing). */
  limit?: number;
}

export interface DatasetChoice {
  dataset: Dataset;
  items: DatasetItem[];
  /** the JSON summary: which items were used for what */
  summary: Record<string, unknown>;
  /** one line for stderr */
  description: string;
}

/**
 * Select the items `purpose` uses: "train" (caa) or "evaluate" (eval-ab); the split decides which
 * when trainFraction is given.
 */
export function selectDatasetItems(input: DatasetInput, purpose: "train" | "evaluate"): DatasetChoice {
  const file = input.file ?? "dataset";
  const label = input.label ?? `--dataset ${file}`;
  const text = input.text;
  const evalNames = (input.evals ?? []).flatMap((s) => s.split(",")).map((s) => s.trim()).filter((s) => s !== "");
  const towards = input.towards ?? "matching";
  if (towards !== "matching" && towards !== "aligned") throw new InputError(`--towards ${towards}: expected "matching" or "aligned"`);
  const fraction = input.trainFraction;
  if (fraction !== undefined && !(fraction > 0 && fraction < 1)) throw new InputError(`--train-fraction ${fraction}: must be between 0 and 1 (exclusive)`);
  const seed = input.seed ?? 0;
  if (!Number.isSafeInteger(seed) || seed < 0) throw new InputError(`--seed ${seed}: expected a non-negative safe integer`);
  const limit = input.limit;
  if (limit !== undefined && !(Number.isInteger(limit) && limit >= 1)) throw new InputError(`--limit ${limit}: must be at least 1`);

  const dataset = parseDataset(text, label, file);
  let items = orient(selectEvals(dataset, evalNames, label), towards);
  const total = items.length;
  const perEval: Record<string, { items: number; train?: number; held_out?: number; used: number }> = {};
  const count = (list: DatasetItem[]) => {
    const c: Record<string, number> = {};
    for (const it of list) c[it.eval ?? ""] = (c[it.eval ?? ""] ?? 0) + 1;
    return c;
  };
  const all = count(items);
  let part: "all" | "train" | "held out" = "all";
  if (fraction !== undefined) {
    const split = splitItems(items, { fraction, seed, evals: dataset.evals });
    const [tr, ho] = [count(split.train), count(split.heldOut)];
    for (const k of Object.keys(all)) perEval[k] = { items: all[k], train: tr[k] ?? 0, held_out: ho[k] ?? 0, used: 0 };
    part = purpose === "train" ? "train" : "held out";
    items = purpose === "train" ? split.train : split.heldOut;
    if (!items.length) throw new InputError(`--train-fraction ${fraction}: leaves no ${part} items`);
  } else {
    for (const k of Object.keys(all)) perEval[k] = { items: all[k], used: 0 };
  }
  if (input.balance) items = balanceItems(items, seed);
  if (limit !== undefined) items = items.slice(0, limit);
  const used = count(items);
  for (const k of Object.keys(perEval)) perEval[k].used = used[k] ?? 0;
  const swapped = items.filter((it) => it.swapped).map((it) => it.ref);

  const kinds = { letters: 0, text: 0, completion: 0 };
  for (const it of items) kinds[it.kind]++;
  const summary = {
    file,
    layout: dataset.layout,
    evals: dataset.evals ? (evalNames.length ? evalNames : dataset.evals) : null,
    towards,
    items_selected: total,
    split: fraction === undefined ? null : { train_fraction: fraction, seed, used: part },
    balance: !!input.balance,
    limit: limit ?? null,
    per_eval: dataset.evals ? perEval : null,
    kinds,
    used: items.map((it) => it.ref),
    swapped,
  };
  const evalPart = dataset.evals ? ` (${summary.evals!.length} eval(s): ${summary.evals!.join(", ")})` : "";
  const splitPart =
    fraction === undefined
      ? `${limit !== undefined && items.length < total ? `the first ${items.length}` : `all ${items.length}`} of ${total} item(s)`
      : `the ${part} part of a seeded split (--train-fraction ${fraction}, --seed ${seed}): ${Object.entries(perEval).map(([k, c]) => `${k ? `${k} ` : ""}${c.train} train / ${c.held_out} held out`).join(", ")}; using ${items.length}`;
  const description =
    `${file}${evalPart}: ${dataset.layout === "combined" ? "combined file" : dataset.layout === "array" ? "JSON array" : "JSON Lines"}; ${splitPart}` +
    ` (${[kinds.letters && `${kinds.letters} A/B`, kinds.text && `${kinds.text} text-answer`, kinds.completion && `${kinds.completion} prompt/completion`].filter(Boolean).join(", ")})` +
    (towards === "aligned" ? "; positive = the aligned answer" : "") +
    (input.balance ? `; --balance swapped the choices of ${swapped.length} item(s)` : "");
  return { dataset, items, summary, description };
}
