// The dataset flags `caa` and `eval-ab` share: which file, which evals, which side is positive, the
// research line's train / held-out split and A/B balancing. Both commands read the file with the one
// reader (src/evaluation/dataset.ts) and select items here, so the same flags give `caa` the train
// items and `eval-ab` the held-out ones.
import { readFileSync } from "node:fs";
import { intFlag, numberFlag, stringList, type Options } from "./args.js";
import { UsageError } from "./errors.js";
import { balanceItems, orient, parseDataset, selectEvals, splitItems, type Dataset, type DatasetItem } from "../evaluation/dataset.js";

export const DATASET_OPTIONS: Options = {
  dataset: { type: "string" },
  eval: { type: "string", multiple: true },
  towards: { type: "string" },
  "train-fraction": { type: "string" },
  seed: { type: "string" },
  balance: { type: "boolean" },
  limit: { type: "string" },
};

export const DATASET_HELP = `  --dataset FILE           the items (required), one reader for every layout:
                             JSON Lines (one object per line), a JSON array of objects, or the research
                             line's combined file {eval_name: [item, ...], ...}; each item one of
                               {"question", "answer_matching_behavior": " (A)", "answer_not_matching_behavior": " (B)"}
                                 (Anthropic's A/B evals; "(A)", "A", "(A) text" or [" (A)"] too)
                               {"question", "answer_matching_behavior": " Yes", "answer_not_matching_behavior": " No"}
                                 (Anthropic's persona evals, or any other one-token answers)
                               {"question", "matching_letter": "A", "not_matching_letter": "B", "aligned_letter", ...}
                                 (the research line's combined file)
                               {"prompt", "positive", "negative"}   (a prompt and two completions)
  --eval NAME              only this eval of a combined file (repeatable, or NAME,NAME); default: all
  --towards SIDE           the positive answer: "matching" (answer_matching_behavior; default) or
                           "aligned" (the combined file's aligned_letter, which behavior_polarity flips)
  --train-fraction F       split every eval: a seeded sample of round(F x its items) for training (caa
                           uses them), the rest held out (eval-ab uses them); the same F and --seed give
                           both commands complementary items
  --seed N                 seed of the split and of --balance (default 0)
  --balance                make A and B each the positive answer for half of each eval's items, by
                           swapping the two choices "(A) ..." and "(B) ..." in the question text of a
                           seeded sample of the majority letter's items (A/B items only)
  --limit N                only the first N items (after the split and balancing)
`;

export interface DatasetChoice {
  dataset: Dataset;
  items: DatasetItem[];
  /** the JSON summary: which items were used for what */
  summary: Record<string, unknown>;
  /** one line for stderr */
  description: string;
}

/**
 * Read `--dataset` (or the command's alias flag) and select the items `purpose` uses: "train" (caa)
 * or "evaluate" (eval-ab); the split decides which when --train-fraction is given.
 */
export function chooseItems(f: Record<string, unknown>, purpose: "train" | "evaluate", file: string, flag = "--dataset"): DatasetChoice {
  const label = `${flag} ${file}`;
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new UsageError(`${label}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  const evalNames = stringList(f, "eval").flatMap((s) => s.split(",")).map((s) => s.trim()).filter((s) => s !== "");
  const towards = (f.towards as string | undefined) ?? "matching";
  if (towards !== "matching" && towards !== "aligned") throw new UsageError(`--towards ${towards}: expected "matching" or "aligned"`);
  const fraction = numberFlag(f, "train-fraction", undefined);
  if (fraction !== undefined && !(fraction > 0 && fraction < 1)) throw new UsageError(`--train-fraction ${fraction}: must be between 0 and 1 (exclusive)`);
  const seed = intFlag(f, "seed", 0, 0)!;
  if (!Number.isSafeInteger(seed)) throw new UsageError(`--seed ${f.seed}: too large`);
  const limit = intFlag(f, "limit", undefined, 1);

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
    if (!items.length) throw new UsageError(`--train-fraction ${fraction}: leaves no ${part} items`);
  } else {
    for (const k of Object.keys(all)) perEval[k] = { items: all[k], used: 0 };
  }
  if (f.balance) items = balanceItems(items, seed);
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
    balance: !!f.balance,
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
    (f.balance ? `; --balance swapped the choices of ${swapped.length} item(s)` : "");
  return { dataset, items, summary, description };
}
