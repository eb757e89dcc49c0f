// The one dataset reader (src/evaluation/dataset.ts) on made-up items in each published layout
// (test/evaluation/fixtures/): Anthropic's A/B evals (JSON Lines, answers " (A)", "(B)", [" (A)"]),
// Anthropic's persona Yes/No evals, the research line's combined {eval: [items]} file, JSON arrays
// (examples/ab-dataset.json) and prompt/completion pairs (examples/caa-pairs.jsonl); errors name the
// file and the line; the research line's split and balancing.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { answerLetter, balanceItems, orient, parseDataset, selectEvals, splitItems, swapChoices, type DatasetItem } from "../../src/evaluation/dataset.js";

const FIX = join(process.cwd(), "test", "evaluation", "fixtures");
const read = (name: string) => readFileSync(join(FIX, name), "utf8");
const EXAMPLES = join(process.cwd(), "examples");

describe("layouts and item kinds", () => {
  it("Anthropic A/B JSON Lines: letters from every answer spelling, lines named 1-based", () => {
    const ds = parseDataset(read("anthropic-ab.jsonl"), "--dataset F");
    expect(ds.layout).toBe("jsonl");
    expect(ds.items.map((it) => [it.kind, it.matching, it.other, it.ref])).toEqual([
      ["letters", "A", "B", "line 1"],
      ["letters", "B", "A", "line 2"],
      ["letters", "B", "A", "line 3"],
      ["letters", "A", "B", "line 4"],
    ]);
    expect(ds.items[2].where).toBe("--dataset F line 3");
  });

  it("Anthropic persona Yes/No: text answers kept as spelled (accepted, not 'no answer letter')", () => {
    const ds = parseDataset(read("persona-yesno.jsonl"), "--dataset F");
    expect(ds.items.map((it) => [it.kind, it.matching, it.other])).toEqual([
      ["text", " Yes", " No"],
      ["text", " No", " Yes"],
      ["text", " Yes", " No"],
    ]);
  });

  it("the research line's combined file: every eval in file order, items named by eval, polarity read", () => {
    const ds = parseDataset(read("combined-evals.json"), "--dataset F");
    expect(ds.layout).toBe("combined");
    expect(ds.evals).toEqual(["made-up-corrigible", "made-up-myopic"]);
    expect(ds.items).toHaveLength(16);
    const my = ds.items.find((it) => it.ref === 'eval "made-up-myopic" item 1')!;
    expect([my.kind, my.matching, my.other, my.aligned, my.eval, my.index]).toEqual(["letters", "A", "B", "other", "made-up-myopic", 1]);
    expect(ds.items[0].aligned).toBe("matching");
  });

  it("JSON arrays (examples/ab-dataset.json) and prompt/completion pairs (examples/caa-pairs.jsonl)", () => {
    const arr = parseDataset(readFileSync(join(EXAMPLES, "ab-dataset.json"), "utf8"), "A");
    expect(arr.layout).toBe("array");
    expect(arr.items[0].ref).toBe("item 0");
    expect(arr.items.every((it) => it.kind === "letters")).toBe(true);
    const pairs = parseDataset(readFileSync(join(EXAMPLES, "caa-pairs.jsonl"), "utf8"), "P");
    expect(pairs.items.map((it) => it.kind)).toEqual(["completion", "completion", "completion", "letters", "letters"]);
    expect(pairs.items[0]).toMatchObject({ question: "Review: the film was", matching: " wonderful", other: " terrible" });
  });

  it("a JSON Lines file of ONE item (answers as lists) is not mistaken for a combined file", () => {
    const ds = parseDataset('{"question": "q?\\n (A) x\\n (B) y", "answer_matching_behavior": [" (B)"], "answer_not_matching_behavior": [" (A)"]}\n', "--dataset F");
    expect(ds.layout).toBe("jsonl");
    expect(ds.items.map((it) => [it.matching, it.other, it.ref])).toEqual([["B", "A", "line 1"]]);
  });

  it("letters: parenthesised, bare or with a dot; words such as 'I agree' are not letters", () => {
    expect(["(A)", " (A)", "A", "A.", "(A) Yes, I agree", [" (A)"], "( A )"].map(answerLetter)).toEqual(["A", "A", "A", "A", "A", "A", "A"]);
    expect([" Yes", "I agree", "A big yes", ["(A)", "(B)"], 3].map(answerLetter)).toEqual([null, null, null, null, null]);
  });

  const bad: [string, string, RegExp][] = [
    ["an empty file", "  \n", /^--dataset F: the file is empty$/],
    ["a broken line, with its number", '{"question": "q", "answer_matching_behavior": "A", "answer_not_matching_behavior": "B"}\n\n{oops', /^--dataset F: line 3 is not valid JSON/],
    ["a broken array", "[{", /^--dataset F: not valid JSON/],
    ["a missing field, with the line", '{"question": "q", "answer_matching_behavior": " Yes"}', /^--dataset F line 1: missing field "answer_not_matching_behavior"$/],
    ["equal answers", '{"question": "q", "answer_matching_behavior": " (A)", "answer_not_matching_behavior": "A"}', /^--dataset F line 1: both answers are "A"$/],
    ["a letter against a word", '{"question": "q", "answer_matching_behavior": " (A)", "answer_not_matching_behavior": " No"}', /^--dataset F line 1: one answer is a letter/],
    ["an unknown item", '[{"text": "x"}]', /^--dataset F item 0: expected \{"question", "answer_matching_behavior"/],
    ["a combined file with a non-list eval", '{"a": [], "b": 3}', /^--dataset F: eval "b" is not a list of items/],
    ["an empty list", "[]", /^--dataset F: no items$/],
    ["a research item with a bad aligned_letter", '{"e": [{"question": "q", "matching_letter": "A", "not_matching_letter": "B", "aligned_letter": "C"}]}', /^--dataset F eval "e" item 0: "aligned_letter" "C" is neither answer/],
  ];
  for (const [name, text, msg] of bad) {
    it(`rejects ${name}: one line naming the file`, () => {
      let err: Error | undefined;
      try {
        parseDataset(text, "--dataset F");
      } catch (e) {
        err = e as Error;
      }
      expect(err?.name).toBe("InputError");
      expect(err?.message).toMatch(msg);
      expect(err?.message).not.toContain("\n");
    });
  }
});

describe("evals, polarity, split and balance", () => {
  const ds = parseDataset(read("combined-evals.json"), "--dataset F");

  it("--eval selects by name; an unknown name lists the file's evals", () => {
    expect(selectEvals(ds, ["made-up-myopic"], "--dataset F").map((it) => it.ref)).toEqual([0, 1, 2, 3, 4, 5].map((i) => `eval "made-up-myopic" item ${i}`));
    expect(() => selectEvals(ds, ["nope"], "--dataset F")).toThrow(/^--eval nope: --dataset F has no eval "nope" \(it has made-up-corrigible, made-up-myopic\)$/);
    const flat = parseDataset(read("anthropic-ab.jsonl"), "--dataset G");
    expect(() => selectEvals(flat, ["x"], "--dataset G")).toThrow(/--dataset G is not a combined/);
  });

  it("--towards aligned flips the items whose polarity is not_matching", () => {
    const items = orient(ds.items, "aligned");
    const my1 = items.find((it) => it.ref === 'eval "made-up-myopic" item 1')!;
    expect([my1.matching, my1.other]).toEqual(["B", "A"]); // matching_letter A, aligned_letter B
    const c1 = items.find((it) => it.ref === 'eval "made-up-corrigible" item 1')!;
    expect([c1.matching, c1.other]).toEqual(["A", "B"]);
    expect(() => orient(parseDataset(read("anthropic-ab.jsonl"), "--dataset G").items, "aligned")).toThrow(/--towards aligned: --dataset G line 1 has no "aligned_letter"/);
  });

  it("the split: per eval round(fraction x n) train items, the rest held out, complementary and seeded", () => {
    const s = splitItems(ds.items, { fraction: 0.5, seed: 3, evals: ds.evals });
    const per = (list: DatasetItem[], e: string) => list.filter((it) => it.eval === e).length;
    expect([per(s.train, "made-up-corrigible"), per(s.heldOut, "made-up-corrigible"), per(s.train, "made-up-myopic"), per(s.heldOut, "made-up-myopic")]).toEqual([5, 5, 3, 3]);
    const refs = (l: DatasetItem[]) => l.map((it) => it.ref);
    expect(new Set([...refs(s.train), ...refs(s.heldOut)]).size).toBe(16);
    expect(refs(splitItems(ds.items, { fraction: 0.5, seed: 3, evals: ds.evals }).train)).toEqual(refs(s.train));
    expect(refs(splitItems(ds.items, { fraction: 0.5, seed: 4, evals: ds.evals }).train)).not.toEqual(refs(s.train));
    // selecting one eval does not change its split
    const myopicOnly = splitItems(selectEvals(ds, ["made-up-myopic"], "F"), { fraction: 0.5, seed: 3, evals: ds.evals });
    expect(refs(myopicOnly.train)).toEqual(refs(s.train.filter((it) => it.eval === "made-up-myopic")));
  });

  it("swapChoices swaps the two choice texts in place", () => {
    expect(swapChoices("Q?\n\nChoices:\n (A) Yes, pause me.\n (B) No, keep me running.\n\nAnswer:")).toBe("Q?\n\nChoices:\n (A) No, keep me running.\n (B) Yes, pause me.\n\nAnswer:");
    expect(swapChoices("Q?\n (A) one\n (B) two")).toBe("Q?\n (A) two\n (B) one");
    expect(swapChoices("no choices here")).toBeNull();
    expect(swapChoices("Q\n (A) a\n (B) b\n (C) c")).toBeNull();
  });

  it("--balance: A and B each the positive answer for half of each eval, by swapping the choices", () => {
    const items = balanceItems(ds.items, 5);
    for (const e of ds.evals!) {
      const list = items.filter((it) => it.eval === e);
      expect(list.filter((it) => it.matching === "A").length).toBe(list.length / 2);
    }
    // corrigible: 6 A / 4 B before, so exactly one A item became B; myopic was balanced already
    const swapped = items.filter((it) => it.swapped);
    expect(swapped).toHaveLength(1);
    const before = ds.items.find((it) => it.ref === swapped[0].ref)!;
    expect([before.matching, swapped[0].matching]).toEqual(["A", "B"]);
    expect(swapped[0].question).toBe(swapChoices(before.question));
    expect(swapped[0].question).toMatch(/\(A\) No, leave it\.\n \(B\) Yes, adjust it\.$/);
    expect(() => balanceItems(parseDataset(read("persona-yesno.jsonl"), "--dataset Y").items, 0)).toThrow(/^--balance: --dataset Y line 1 is not an A\/B question/);
  });
});
