// `jacsteer eval-ab` end to end (the built CLI in dist/: run `npx tsc -p tsconfig.build.json` first):
// A/B logit differences against PyTorch (test/python/ab_logits.py: its own prompt construction and
// byte-level token ids, reference/qwen3_minimal.py in float64, steering by a forward hook), the
// summary against the per-question rows, and bad inputs.
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { makeTempDir, writeTempCheckpoint, SMALL_SHAPE } from "../helpers/checkpoints.js";
import { itWithTorch, runPython } from "../helpers/torch.js";
import { randn, rng } from "../helpers/random.js";
import { leastSquares, type AbRow } from "../../src/evaluation/ab.js";
import { BUNDLED_TINY, BYTE_SHAPE, ROOT, byteLevelCheckpoint, jacsteer, writeVectors, type Fixture } from "../generation/fixtures.js";

const work = makeTempDir("jacsteer-ab-cli-");
const cleanup: Fixture[] = [{ dir: work, remove: () => rmSync(work, { recursive: true, force: true }) }];
afterAll(() => cleanup.forEach((c) => c.remove()));
const DATASET = join(ROOT, "examples", "ab-dataset.json");

interface OutFile {
  answer_prefix: string | null;
  layer: number | null;
  questions: { index: number; tokens: number[]; matching_id: number; other_id: number }[];
  rows: AbRow[];
}

function torchDiffs(model: string, layer: number, vectors: Float32Array[], scales: number[], opts: { chat: boolean; system?: string; prefix: string }) {
  const dataset = JSON.parse(readFileSync(DATASET, "utf8")) as { question: string; answer_matching_behavior: string; answer_not_matching_behavior: string }[];
  const letter = (s: string) => /[A-Z]/.exec(s)![0];
  const input = {
    model,
    layer,
    questions: dataset.map((q) => ({ question: q.question, matching: letter(q.answer_matching_behavior), other: letter(q.answer_not_matching_behavior) })),
    answer_prefix: opts.prefix,
    chat: opts.chat,
    system: opts.system ?? null,
    vectors: vectors.map((v) => Array.from(v)),
    scales,
  };
  const inFile = join(work, `torch-in-${Math.random().toString(36).slice(2)}.json`), outFile = inFile.replace("-in-", "-out-");
  writeFileSync(inFile, JSON.stringify(input));
  runPython([join(ROOT, "test", "python", "ab_logits.py"), inFile, outFile]);
  return JSON.parse(readFileSync(outFile, "utf8")) as { tokens: number[][]; baseline: number[]; steered: number[][][]; baseline_logits: number[][] };
}

describe("jacsteer eval-ab against PyTorch", () => {
  const ck = byteLevelCheckpoint(BYTE_SHAPE, 8);
  cleanup.push(ck);
  const vectors = [randn(rng(41), BYTE_SHAPE.hidden_size), randn(rng(42), BYTE_SHAPE.hidden_size)];
  const vfile = writeVectors(join(work, "ab.safetensors"), vectors, { source_layer: "1" });
  const scales = [-4, 0, 4];

  for (const mode of [{ chat: false, prefix: "\n\nAnswer: (" }, { chat: true, system: "Answer with a letter.", prefix: "(" }]) {
    itWithTorch(`logit differences per question, vector and scale (${mode.chat ? "chat, system message" : "plain"})`, () => {
      const out = join(work, `rows-${mode.chat}.json`);
      const args = ["eval-ab", "--model", ck.dir, "--dataset", DATASET, "--vectors", vfile, "--scales", scales.join(","), "--out", out, "--json"];
      if (mode.chat) args.push("--chat", "--system", mode.system!);
      const r = jacsteer(args);
      expect(r.code, r.stderr).toBe(0);
      const file: OutFile = JSON.parse(readFileSync(out, "utf8"));
      // the default prefix (null: per item) puts "\n\nAnswer: (" plain, "(" in chat before the letter
      expect(file.answer_prefix).toBeNull();
      expect(file.layer).toBe(1);
      const t = torchDiffs(ck.dir, 1, vectors, scales, mode);
      // same prompts, built independently
      expect(file.questions.map((q) => q.tokens)).toEqual(t.tokens);
      let maxErr = 0;
      for (const row of file.rows) {
        const want = row.vector_index === null ? t.baseline[row.question] : t.steered[row.vector_index][scales.indexOf(row.scale)][row.question];
        maxErr = Math.max(maxErr, Math.abs(row.diff - want));
      }
      const scale = Math.max(...t.baseline_logits.flat().map(Math.abs));
      expect(maxErr / scale).toBeLessThan(1e-5);
      // the steering is not vacuous: the diffs move by far more than the tolerance
      const spread = Math.max(...file.rows.map((x) => Math.abs(x.shift)));
      expect(spread / scale).toBeGreaterThan(1e-2);
      // the --json summary is the summary of these rows
      const summary = JSON.parse(r.stdout);
      expect(summary.questions).toBe(8);
      expect(summary.rows).toHaveLength(6);
      for (const s of summary.rows) {
        const mine = file.rows.filter((x) => x.vector_index === s.vector_index && x.scale === s.scale);
        expect(s.mean_diff).toBeCloseTo(mine.reduce((a, x) => a + x.diff, 0) / mine.length, 10);
        expect(s.share_matching).toBe(mine.filter((x) => x.diff > 0).length / mine.length);
      }
      for (const lin of summary.linearity) {
        const pts = summary.rows.filter((s: { vector_index: number }) => s.vector_index === lin.vector_index);
        expect(lin.slope).toBeCloseTo(leastSquares(pts.map((p: { scale: number }) => p.scale), pts.map((p: { mean_diff: number }) => p.mean_diff)).slope!, 10);
      }
    });
  }
});

describe("jacsteer eval-ab on the bundled tiny model", () => {
  it.skipIf(!existsSync(join(BUNDLED_TINY, "config.json")))("prints a table with the baseline, each (vector, scale) and the linearity per vector", () => {
    const vfile = writeVectors(join(work, "tiny.safetensors"), [randn(rng(7), 64)], { source_layer: "1" });
    const r = jacsteer(["eval-ab", "--dataset", DATASET, "--vectors", vfile, "--scales", "-8,-4,0,4,8", "--limit", "3"]);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trim().split("\n");
    expect(lines[0]).toMatch(/^vector\s+scale\s+n\s+matching\s+other\s+mean diff\s+mean shift\s+p\(match\)$/);
    expect(lines[1]).toMatch(/^\(unsteered\)\s+-\s+3\s/);
    expect(lines.filter((l) => l.startsWith(`0: ${vfile}:0`))).toHaveLength(5);
    expect(r.stdout).toMatch(new RegExp(`0: ${vfile}:0: slope -?\\d+\\.\\d+ per unit scale, intercept -?\\d+\\.\\d+, R\\^2 \\d\\.\\d+`));
    expect(r.stderr).toMatch(/first item \(--dataset .*ab-dataset\.json item 0\): prompt "We would like to change your goal[^"]*\\n\\nAnswer: \(" \(\d+ tokens\)/);
    expect(r.stderr).toContain('first item: scores logit(65 "A") - logit(66 "B") at its last position (matching minus other)');
  });
});

describe("jacsteer eval-ab --threads and --weights", () => {
  const ck = byteLevelCheckpoint(BYTE_SHAPE, 8);
  cleanup.push(ck);
  const vfile = writeVectors(join(work, "tw.safetensors"), [randn(rng(3), BYTE_SHAPE.hidden_size), randn(rng(4), BYTE_SHAPE.hidden_size)], { source_layer: "1" });
  const run = (extra: string[], tag: string) => {
    const out = join(work, `tw-${tag}.json`);
    const r = jacsteer(["eval-ab", "--model", ck.dir, "--dataset", DATASET, "--vectors", vfile, "--scales", "-4,0,4", "--out", out, "--json", ...extra]);
    expect(r.code, r.stderr).toBe(0);
    return { r, rows: (JSON.parse(readFileSync(out, "utf8")) as OutFile).rows, summary: JSON.parse(r.stdout) };
  };

  it("the rows are bitwise the same for 1 and 2 threads, resident and streamed weights; the summary says which ran", () => {
    const one = run(["--threads", "1", "--weights", "resident"], "1");
    const two = run(["--threads", "2", "--weights", "stream"], "2");
    expect(two.rows).toEqual(one.rows);
    expect([one.summary.threads, one.summary.weights]).toEqual([1, "resident"]);
    expect([two.summary.threads, two.summary.weights]).toEqual([2, "stream"]);
    expect(two.r.stderr).toMatch(/forward: weights streamed from the checkpoint every pass/);
  });

  it("--threads above the core count is capped with a line", () => {
    const { r, summary } = run(["--threads", "999"], "999");
    expect(r.stderr).toMatch(/--threads 999: this machine has \d+ cores?; using \d+/);
    expect(summary.threads).toBeLessThan(999);
  });
});

describe("jacsteer eval-ab bad inputs: exit 1, one line, no --out file", () => {
  const ck = byteLevelCheckpoint(BYTE_SHAPE, 8);
  cleanup.push(ck);
  const noTok = writeTempCheckpoint(SMALL_SHAPE, { seed: 3 });
  cleanup.push(noTok);
  const vfile = writeVectors(join(work, "ok.safetensors"), [randn(rng(1), BYTE_SHAPE.hidden_size)]);
  const wrong = writeVectors(join(work, "wrong.safetensors"), [randn(rng(1), 5)]);
  const badJson = join(work, "bad.json");
  writeFileSync(badJson, "[{\"question\": ");
  const multiToken = join(work, "multitoken.json");
  writeFileSync(multiToken, JSON.stringify([{ question: "q", answer_matching_behavior: " Yes", answer_not_matching_behavior: " No" }]));
  const out = join(work, "never.json");
  const cases: [string, string[], RegExp][] = [
    ["no --dataset", [], /--dataset FILE is required/],
    ["missing dataset", ["--dataset", join(work, "nope.json")], /--dataset .*nope\.json: file does not exist/],
    ["dataset not JSON", ["--dataset", badJson], /--dataset .*bad\.json: not valid JSON/],
    ["answers that are several tokens each", ["--dataset", multiToken], /--dataset .*multitoken\.json item 0: the answers " Yes" and " No" are not single tokens that differ for this tokenizer/],
    ["bad --scales", ["--dataset", DATASET, "--vectors", vfile, "--scales", "1;2"], /--scales 1;2: expected comma-separated numbers/],
    ["vector of the wrong dimension", ["--dataset", DATASET, "--vectors", wrong, "--scales", "1"], /vectors have length 5, the model's hidden size is 32/],
    ["missing vector file", ["--dataset", DATASET, "--vectors", join(work, "gone.safetensors"), "--scales", "1"], /gone\.safetensors: file .* does not exist/],
    ["--out not .json", ["--dataset", DATASET, "--out", join(work, "x.csv")], /--out .*x\.csv: the file name must end in \.json/],
    ["--out in a missing directory", ["--dataset", DATASET, "--out", join(work, "no", "x.json")], /directory .* does not exist/],
    ["--system without --chat", ["--dataset", DATASET, "--system", "hi"], /--system needs --chat/],
    ["bad --weights", ["--dataset", DATASET, "--weights", "disk"], /--weights disk: expected one of auto, resident, stream/],
    ["bad --threads", ["--dataset", DATASET, "--threads", "0"], /--threads/],
  ];
  for (const [name, extra, msg] of cases) {
    it(name, () => {
      const hasOut = extra.includes("--out");
      const r = jacsteer(["eval-ab", "--model", ck.dir, ...extra, ...(hasOut ? [] : ["--out", out])]);
      expect(r.code, r.stderr).toBe(1);
      const lines = r.stderr.trim().split("\n");
      expect(lines, r.stderr).toHaveLength(1);
      expect(lines[0]).toMatch(/^jacsteer: error: /);
      expect(lines[0]).toMatch(msg);
      expect(existsSync(out)).toBe(false);
    });
  }
  it("a checkpoint without tokenizer.json", () => {
    const r = jacsteer(["eval-ab", "--model", noTok.dir, "--dataset", DATASET]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toMatch(/^jacsteer: error: --model .*: no tokenizer\.json \(eval-ab tokenizes the questions\)$/);
  });
});
