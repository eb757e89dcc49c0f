// The dataset flags `caa` and `eval-ab` share: which file, which evals, which side is positive, the
// research line's train / held-out split and A/B balancing. Both commands read the file with the one
// reader (src/evaluation/dataset.ts) and select items here, so the same flags give `caa` the train
// items and `eval-ab` the held-out ones.
import { readFileSync } from "node:fs";
import { intFlag, numberFlag, stringList, type Options } from "./args.js";
import { UsageError } from "./errors.js";
import { selectDatasetItems, type DatasetChoice } from "../evaluation/select.js";

export type { DatasetChoice };

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
  const towards = (f.towards as string | undefined) ?? "matching";
  if (towards !== "matching" && towards !== "aligned") throw new UsageError(`--towards ${towards}: expected "matching" or "aligned"`);
  const seed = intFlag(f, "seed", 0, 0)!;
  if (!Number.isSafeInteger(seed)) throw new UsageError(`--seed ${f.seed}: too large`);
  return selectDatasetItems(
    { text, file, label, evals: stringList(f, "eval"), towards, trainFraction: numberFlag(f, "train-fraction", undefined), seed, balance: !!f.balance, limit: intFlag(f, "limit", undefined, 1) },
    purpose,
  );
}
