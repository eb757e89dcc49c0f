// The report page from in-memory inputs: the spectrum comparison against a rotation of known angle,
// the page's structure (figures, escaping, no NaN, nothing external), eval-ab inputs of both kinds,
// and the test PNG decoder against its own encoder over every row filter.
import { describe, expect, it } from "vitest";
import { compareSpectra, renderReport, type ReportInput } from "../../src/report/report.js";
import { parseAbResult } from "../../src/report/ab-input.js";
import type { VectorSet } from "../../src/io/vector-file.js";
import { decodePng, encodePng } from "./png.js";
import { rng } from "../helpers/random.js";
import { expectSelfContained } from "./fixtures.js";

const D = 8;
const e = (i: number, scale = 1) => Float32Array.from({ length: D }, (_, j) => (j === i ? scale : 0));

function set(vectors: Float32Array[], sigmas: number[] | undefined, metadata: Record<string, string>): VectorSet {
  return { vectors, singularValues: sigmas, residuals: sigmas?.map(() => 1e-6), metadata: { format: "jacsteer.vectors.v1", ...metadata } };
}

const BASE_META = { method: "power-iter/jvp", model: "tiny", model_config: "{}", source_layer: "1", target_layer: "3", positions: "4", tokens: "[[1,2,3]]", converged: "true", iterations: "10" };

/** A at sv = 0: e0, e1, e2. B: e0 kept, e1 turned by theta towards e5, e2 kept; sigmas scaled. */
function rotatedPair(theta: number) {
  const turned = Float32Array.from({ length: D }, (_, j) => (j === 1 ? Math.cos(theta) : j === 5 ? Math.sin(theta) : 0));
  const a = set([e(0), e(1), e(2)], [4, 2, 1], BASE_META);
  const b = set([e(0, -1), turned, e(2)], [5, 1.5, 1], { ...BASE_META, at: "x.safetensors:0", at_scale: "4" });
  return { a, b };
}

describe("compareSpectra (issue 6 item 3)", () => {
  it("relative changes of sigma and principal angles of a known rotation", () => {
    const theta = 0.3;
    const { a, b } = rotatedPair(theta);
    const c = compareSpectra(a, b);
    expect(c.n).toBe(3);
    expect(c.relChangePercent).toEqual([25, -25, 0]);
    const deg = (theta * 180) / Math.PI;
    const s = c.subspace!;
    // |cos| ignores the sign flip of v0
    expect(s.pairAbsCos[0]).toBeCloseTo(1, 6);
    expect(s.pairAbsCos[1]).toBeCloseTo(Math.cos(theta), 6);
    expect(s.pairAbsCos[2]).toBeCloseTo(1, 6);
    expect(s.principalAnglesDeg[0]).toBeCloseTo(0, 3);
    expect(s.principalAnglesDeg[1]).toBeCloseTo(0, 3);
    expect(s.principalAnglesDeg[2]).toBeCloseTo(deg, 4);
    // top-1: unchanged; top-2 and top-3 contain the turned direction
    expect(s.topKMaxAngleDeg[0]).toBeCloseTo(0, 3);
    expect(s.topKMaxAngleDeg[1]).toBeCloseTo(deg, 4);
    expect(s.topKMaxAngleDeg[2]).toBeCloseTo(deg, 4);
  });

  it("a swap of two vectors moves each vector by 90 degrees but not the subspace they span", () => {
    const a = set([e(0), e(1), e(2)], [3, 2.9, 1], BASE_META);
    const b = set([e(1), e(0), e(2)], [3, 2.9, 1], BASE_META);
    const s = compareSpectra(a, b).subspace!;
    expect(s.pairAbsCos[0]).toBeCloseTo(0, 6);
    expect(s.topKMaxAngleDeg[0]).toBeCloseTo(90, 4);
    expect(s.topKMaxAngleDeg[1]).toBeCloseTo(0, 3);
    expect(Math.max(...s.principalAnglesDeg)).toBeCloseTo(0, 3);
  });

  it("different hidden sizes: sigmas only", () => {
    const a = set([e(0)], [1], BASE_META);
    const b = set([Float32Array.of(1, 0)], [2], BASE_META);
    expect(compareSpectra(a, b)).toEqual({ n: 1, relChangePercent: [100] });
  });
});

const abRows = (() => {
  // Two questions, two vectors, scales -1, 0, 1; diff = base + slope * scale + per-question offset.
  const rows: Record<string, unknown>[] = [];
  const r = rng(3);
  for (let q = 0; q < 2; q++) {
    const base = q === 0 ? 0.5 : -0.1;
    rows.push({ question: q, vector: null, vector_index: null, scale: 0, matching: "A", other: "B", matching_id: 65, other_id: 66, logit_matching: base, logit_other: 0, diff: base, baseline_diff: base, shift: 0, p_matching: 1 / (1 + Math.exp(-base)) });
    for (let v = 0; v < 2; v++) {
      for (const scale of [-1, 0, 1]) {
        const diff = base + (v + 1) * scale + (scale ? 0.1 * r() : 0);
        rows.push({ question: q, vector: `v.safetensors:${v}`, vector_index: v, scale, matching: "A", other: "B", matching_id: 65, other_id: 66, logit_matching: diff, logit_other: 0, diff, baseline_diff: base, shift: diff - base, p_matching: 1 / (1 + Math.exp(-diff)) });
      }
    }
  }
  return rows;
})();
const rowsFile = JSON.stringify({ dataset: "d <x>.json", model: "tiny", layer: 1, chat: false, answer_prefix: "(", questions: [{ index: 0 }, { index: 1 }], rows: abRows });

describe("eval-ab inputs", () => {
  it("a rows file: means and standard errors per vector and scale, by hand", () => {
    const ab = parseAbResult(rowsFile, "rows.json");
    expect(ab.kind).toBe("rows");
    expect(ab.meta).toMatchObject({ dataset: "d <x>.json", model: "tiny", layer: 1, questions: 2 });
    for (const v of [0, 1]) {
      for (const scale of [-1, 0, 1]) {
        const diffs = abRows.filter((r) => r.vector_index === v && r.scale === scale).map((r) => r.diff as number);
        const mean = (diffs[0] + diffs[1]) / 2;
        const se = Math.abs(diffs[0] - diffs[1]) / 2; // sample sd / sqrt(2) for two values
        const row = ab.summary.rows.find((r) => r.vector_index === v && r.scale === scale)!;
        expect(row.mean_diff).toBeCloseTo(mean, 12);
        expect(ab.standardErrors!.get(`${v}\u0000${scale}`)).toBeCloseTo(se, 12);
      }
    }
    expect(ab.summary.linearity.map((l) => l.vector_index)).toEqual([0, 1]);
  });

  it("a --json summary is taken as written", () => {
    const ab = parseAbResult(rowsFile, "rows.json");
    const json = JSON.stringify({ dataset: "d.json", model: "tiny", questions: 2, layer: 1, scales: [-1, 0, 1], ...ab.summary });
    const s = parseAbResult(json, "sum.json");
    expect(s.kind).toBe("summary");
    expect(s.summary).toEqual(ab.summary);
    expect(s.standardErrors).toBeUndefined();
  });

  it("anything else is refused with a line naming the flag and file", () => {
    expect(() => parseAbResult("not json", "x.json")).toThrow(/^--ab x\.json: not JSON/);
    expect(() => parseAbResult(JSON.stringify({ cosines: [[1]], best_matches: [] }), "cmp.json")).toThrow(/--ab cmp\.json: not an eval-ab result/);
    expect(() => parseAbResult(JSON.stringify({ rows: [{ a: 1 }] }), "r.json")).toThrow(/not an eval-ab result/);
    const noBaseline = JSON.stringify({ questions: [], rows: abRows.filter((r) => r.vector_index !== null) });
    expect(() => parseAbResult(noBaseline, "nb.json")).toThrow(/no unsteered/);
  });
});

describe("renderReport", () => {
  const { a, b } = rotatedPair(0.3);
  const evil = set([e(3), e(4)], undefined, { method: "melbo", model: `<img src=x onerror=alert(1)>`, source_layer: "1", target_layer: "3", positions: "2" });
  const input: ReportInput = {
    title: `Report <b>&</b>`,
    version: "9.9.9",
    generatedAt: "2020-01-01T00:00:00Z",
    command: `jacsteer report --title '<b>'`,
    spectra: [
      { label: "sv = 0", file: "a.safetensors", set: a },
      { label: "steered <x>", file: "b.safetensors", set: b },
    ],
    cosines: [{ a: { name: "m.safetensors", file: "m.safetensors", rows: [0, 1], set: evil }, b: { name: "a.safetensors", file: "a.safetensors", rows: [0, 1, 2], set: a } }],
    ab: [parseAbResult(rowsFile, "rows.json")],
  };

  it("one figure per plot, all inline, nothing external, no NaN, everything escaped", () => {
    const { html, figures } = renderReport(input);
    // spectra, relative change, top-k angles, heatmap, A/B
    expect(figures).toBe(5);
    expect((html.match(/<svg /g) ?? []).length).toBe(5);
    expect(html.startsWith("<!DOCTYPE html>")).toBe(true);
    expect(html).not.toMatch(/NaN|Infinity|undefined/);
    expectSelfContained(html);
    expect(html).toContain("Report &lt;b&gt;&amp;&lt;/b&gt;");
    expect(html).toContain("steered &lt;x&gt;");
    expect(html).toContain("&lt;img src=x onerror=alert(1)&gt;");
    expect(html).toContain("jacsteer 9.9.9");
    expect(html).toContain("d &lt;x&gt;.json");
    // axis labels of each plot
    for (const label of ["i (row in the vector file)", "σᵢ", "largest principal angle [°]", "steering scale (vector × scale added at layer S)", "mean logit difference"]) expect(html).toContain(label);
    // the angle table shows the rotation angle
    expect(html).toContain(`<td class="num">${((0.3 * 180) / Math.PI).toFixed(2)}</td>`);
  });

  it("a log spectrum, a single spectrum (no comparison), signed cosines", () => {
    const { html, figures } = renderReport({ ...input, spectra: [input.spectra[0]], logSpectrum: true, signed: true, ab: [] });
    expect(figures).toBe(2);
    expect(html).toContain("σᵢ (log scale)");
    expect(html).not.toContain("spectrum-comparison");
    expect(html).toContain('fill="#053061"'); // the diverging colour bar's low end
  });

  it("a spectrum input needs singular values", () => {
    expect(() => renderReport({ ...input, spectra: [{ label: "m", file: "m.safetensors", set: evil }], cosines: [], ab: [] })).toThrow(/--spectrum m\.safetensors: no singular_values/);
  });

  it("runs that differ in more than the point are flagged", () => {
    const other = { ...b, metadata: { ...b.metadata, target_layer: "2" } };
    const { html, notes } = renderReport({ ...input, spectra: [input.spectra[0], { label: "T2", file: "c.safetensors", set: other }] });
    expect(notes.join(" ")).toMatch(/differ in target_layer/);
    expect(html).toContain('class="note"');
  });
});

describe("PNG decoder (for the Chromium screenshots)", () => {
  it("decodes RGB and RGBA images written with each of the five row filters", () => {
    const r = rng(11);
    for (const channels of [3, 4] as const) {
      const w = 37, h = 23;
      const px = Uint8Array.from({ length: w * h * channels }, (_, i) => (i % 7 === 0 ? 255 : Math.floor(r() * 256)));
      const png = encodePng(w, h, px, channels, [0, 1, 2, 3, 4]);
      const img = decodePng(png);
      expect([img.width, img.height]).toEqual([w, h]);
      for (let p = 0; p < w * h; p++) {
        for (let c = 0; c < channels; c++) expect(img.data[p * 4 + c]).toBe(px[p * channels + c]);
        if (channels === 3) expect(img.data[p * 4 + 3]).toBe(255);
      }
    }
  });

  it("refuses what it does not decode", () => {
    expect(() => decodePng(new Uint8Array(20))).toThrow(/not a PNG/);
  });
});
