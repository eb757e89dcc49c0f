// The report's atlas heatmaps and stability section from in-memory inputs: every cell's hover title
// carries its numbers, empty (S >= T) cells are grey and say why, the colour scale spans the values
// (smallest value at the bottom colour, largest at the top); the heatmap's value range mapping; the
// CLI's refusal of a file of another kind.
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { renderReport } from "../../src/report/report.js";
import { heatmap } from "../../src/report/heatmap.js";
import { sequential } from "../../src/report/colors.js";
import type { AtlasInput, StabilityInput } from "../../src/report/atlas-stability.js";
import { makeTempDir } from "../helpers/checkpoints.js";
import { expectSelfContained } from "./fixtures.js";
import { jacsteer } from "../generation/fixtures.js";

const work = makeTempDir("jacsteer-report-atlas-");
afterAll(() => rmSync(work, { recursive: true, force: true }));

const pair = (source: number, target: number, sigma: number, kl: number[]) => ({
  source, target, singular_values: [sigma, sigma / 2], converged: true, products: 16,
  kl: kl.map((k, v) => ({ vector: v, magnitude: 0.35, kl_plus: k, kl_minus: k / 2, max_kl: k, sign: 1 })),
  max_kl: Math.max(...kl), best_vector: kl.indexOf(Math.max(...kl)), top_vector_kl: kl[0],
});
const ATLAS: AtlasInput = { file: "run/atlas.json", model: "tiny", num_layers: 4, complete: false, planned: 6, pairs: [pair(0, 1, 2, [0.1, 0.3]), pair(0, 2, 5, [0.2, 0.1]), pair(1, 2, 3, [0.05, 0.01]), pair(1, 3, 4, [0.02, 0.01])] };

const STABILITY: StabilityInput = {
  file: "s.json", model: "tiny", source_layer: 1, target_layer: 3, cos_threshold: 0.9, gap_threshold: 0.05, reproducible_count: 1,
  runs: [{ label: "all prompts, seed 0", singular_values: [3, 1], converged: true }, { label: "all prompts, seed 1", singular_values: [3, 1], converged: false }],
  vectors: [
    { index: 0, sigma: 3, relative_gap: 0.66, best_cos: [[1, 0.99], [0.98, 1]], min_best_cos: 0.98, status: "reproducible", band: null },
    { index: 1, sigma: 1, relative_gap: null, best_cos: [[1, 0.5], [0.4, 1]], min_best_cos: 0.4, status: "not reproducible", band: null },
  ],
  bands: [],
};

const input = { title: "t", version: "0", spectra: [], cosines: [], ab: [], atlas: [ATLAS], stability: [STABILITY] };

describe("atlas and stability sections", () => {
  it("three atlas heatmaps and a stability heatmap, each cell readable without a click", () => {
    const { html, figures } = renderReport(input);
    expect(figures).toBe(4);
    expectSelfContained(html);
    expect(html).toContain("<title>S 0, T 2: sigma_1 5.000; max KL 2.00e-1 (vector 0); top vector&#39;s KL 2.00e-1; 16 products</title>");
    expect(html).toContain("S 1, T 1: no pair (S &gt;= T)");
    expect(html).toContain("S 0, T 3: not computed yet");
    expect(html).toContain("4 of 6 pairs (incomplete");
    expect(html).toContain("all prompts, seed 0, vector 1: best |cos| with each other run 0.500; not reproducible");
    expect(html).toContain("Not converged: all prompts, seed 1");
    // the ten-best table lists the pair with the largest KL first
    expect(html.indexOf("<td>S 0, T 1</td>")).toBeLessThan(html.indexOf("<td>S 0, T 2</td>"));
  });

  it("the value range: the smallest value takes the bottom colour, the largest the top, the bar is in value units", () => {
    const h = heatmap({ values: [[2, null], [3.5, 5]], rowLabels: ["0", "1"], colLabels: ["1", "2"], rowTitle: "S", colTitle: "T", signed: false, colorBarLabel: "σ", range: { lo: 2, hi: 5, format: (v) => v.toPrecision(3) } });
    expect(h.cell(0, 0).color).toBe(sequential(0));
    expect(h.cell(1, 1).color).toBe(sequential(1));
    expect(h.cell(1, 0).color).toBe(sequential(0.5));
    expect(h.cell(0, 1).color).toBe("#eeeeee");
    expect(h.svg).toContain(">3.50<"); // the bar's middle tick, in sigma units
    expect(h.svg).toContain(">5.00<");
  });
});

describe("jacsteer report --atlas / --stability: bad input", () => {
  it("a file of another kind is refused with one line naming it", () => {
    const f = join(work, "other.json");
    writeFileSync(f, JSON.stringify({ format: "something" }));
    for (const flag of ["--atlas", "--stability"]) {
      const r = jacsteer(["report", flag, f, "--out", join(work, "r.html")]);
      expect(r.code).toBe(1);
      expect(r.stderr.trim()).toMatch(new RegExp(`^jacsteer: error: ${flag} .*other\\.json: not a jacsteer\\.(atlas|stability)\\.v1 file`));
    }
    const r = jacsteer(["report", "--atlas", join(work, "nope"), "--out", join(work, "r.html")]);
    expect(r.stderr.trim()).toMatch(/--atlas .*nope: file does not exist/);
  }, 60_000);
});
