// The report as a browser shows it: headless Chromium renders the page, the screenshot is decoded
// (test/report/png.ts) and its pixels checked: the page is not blank, every series colour and every
// heatmap cell colour is on screen, markers sit where the plot's scales put them, and the same page
// with its <svg> elements removed fails the colour checks (so they test the SVG, not the tables).
// Without Chromium this file warns LOUDLY and skips; with JACSTEER_REQUIRE_CHROMIUM=1 it fails.
// JACSTEER_REPORT_SCREENSHOT=FILE.png keeps the report's screenshot for a person to look at.
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { countColor, decodePng, pixel, type Image } from "./png.js";
import { findChromium, jacsteer, makeRuns, readPng, REQUIRE_CHROMIUM, screenshot, tempDir } from "./fixtures.js";
import { linePlot } from "../../src/report/plot.js";
import { heatmap } from "../../src/report/heatmap.js";
import { SERIES_COLORS } from "../../src/report/colors.js";

const chromium = findChromium();
const work = tempDir("jacsteer-report-chromium-");
afterAll(() => work.remove());

const WIDTH = 1200;
// Tall enough for the whole report; the test checks that the bottom of the screenshot is empty.
const HEIGHT = 7000;

function render(html: string, name: string, width: number, height: number): Image {
  const file = join(work.dir, `${name}.html`), png = join(work.dir, `${name}.png`);
  writeFileSync(file, html);
  screenshot(chromium!, file, png, width, height);
  return decodePng(readPng(png));
}

function nonWhiteShare(img: Image, y0 = 0, y1 = img.height): number {
  let n = 0;
  for (let y = y0; y < y1; y++) {
    for (let x = 0; x < img.width; x++) {
      const p = (y * img.width + x) * 4;
      if (img.data[p] < 245 || img.data[p + 1] < 245 || img.data[p + 2] < 245) n++;
    }
  }
  return n / (img.width * (y1 - y0));
}

const close = (a: [number, number, number], hex: string, tol: number) => {
  const n = parseInt(hex.slice(1), 16);
  return Math.abs(a[0] - ((n >> 16) & 255)) <= tol && Math.abs(a[1] - ((n >> 8) & 255)) <= tol && Math.abs(a[2] - (n & 255)) <= tol;
};

function tests() {
  it("renders every plot of a real report: series colours, every heatmap cell, the colour bar; not without the SVGs", () => {
    const runs = makeRuns(work.dir);
    const out = join(work.dir, "report.html");
    const args = ["report", "--out", out, "--spectrum", `${runs.sv0}:sv = 0`, "--spectrum", `${runs.steered}:steered`, "--cosine", runs.melbo, runs.sv0];
    if (runs.abRows) args.push("--ab", runs.abRows);
    const r = jacsteer(args);
    expect(r.code, r.stderr).toBe(0);
    const html = readFileSync(out, "utf8");
    const img = render(html, "report", WIDTH, HEIGHT);
    if (process.env.JACSTEER_REPORT_SCREENSHOT) copyFileSync(join(work.dir, "report.png"), process.env.JACSTEER_REPORT_SCREENSHOT);
    expect([img.width, img.height]).toEqual([WIDTH, HEIGHT]);
    // Not blank, and the whole page fits (the last 150 rows are empty).
    expect(nonWhiteShare(img)).toBeGreaterThan(0.02);
    expect(nonWhiteShare(img, HEIGHT - 150, HEIGHT)).toBe(0);

    // Series colours: blue and vermillion in the spectra (and A/B), green in the A/B plot (third vector).
    const series = runs.abRows ? SERIES_COLORS.slice(0, 3) : SERIES_COLORS.slice(0, 2);
    const counts = Object.fromEntries(series.map((c) => [c, countColor(img, c, 6)]));
    for (const c of series) expect(counts[c], `pixels of ${c}: ${JSON.stringify(counts)}`).toBeGreaterThan(300);

    // Every cell of the heatmap: its fill colour covers at least a third of a cell somewhere on the page.
    const cells = /<g class="cells">([\s\S]*?)<\/g>/.exec(html)![1];
    const fills = [...cells.matchAll(/<rect x="[\d.]+" y="[\d.]+" width="([\d.]+)" height="[\d.]+" fill="(#[0-9a-f]{6})"/g)].map((m) => ({ size: Number(m[1]), fill: m[2] }));
    expect(fills.length).toBe(4 * 6);
    for (const f of fills) expect(countColor(img, f.fill, 2), `cell colour ${f.fill}`).toBeGreaterThan((f.size * f.size) / 3);
    // Colour bar ends (viridis): each end step shows at least one full 16-px row of its exact colour.
    for (const c of ["#440154", "#fde725"]) expect(countColor(img, c, 2), c).toBeGreaterThanOrEqual(16);

    // The same page without its SVGs: the tables and text remain, the colours are gone.
    const bare = render(html.replace(/<svg[\s\S]*?<\/svg>/g, ""), "bare", WIDTH, HEIGHT);
    expect(nonWhiteShare(bare)).toBeGreaterThan(0.005);
    for (const c of series) expect(countColor(bare, c, 6), `${c} without SVG`).toBeLessThan(20);
    expect(countColor(bare, "#fde725", 2)).toBe(0);
  });

  it("puts markers and cells at the pixels the plot's scales compute", () => {
    const plot = linePlot({
      title: "calibration",
      xLabel: "x",
      yLabel: "y",
      width: 700,
      series: [
        { label: "a", points: [0, 1, 2, 3, 4].map((x) => ({ x, y: x * x })) },
        { label: "b", points: [0, 1, 2, 3, 4].map((x) => ({ x, y: 16 - 3 * x })) },
      ],
    });
    const map = heatmap({ values: Array.from({ length: 12 }, (_, i) => Array.from({ length: 12 }, (_, j) => ((i * 12 + j) % 17) / 16)), rowLabels: Array.from({ length: 12 }, (_, i) => String(i)), colLabels: Array.from({ length: 12 }, (_, i) => String(i)), rowTitle: "A", colTitle: "B", signed: false, colorBarLabel: "|cos|", maxWidth: 700 });
    // Both drawn at known offsets: body margin 0, the plot at (0, 0), the heatmap below it.
    const page = `<!DOCTYPE html><html><head><style>body{margin:0}svg{display:block}</style></head><body>${plot.svg}${map.svg}</body></html>`;
    const img = render(page, "calibration", 800, plot.layout.height + 700);
    const { x, y } = plot.layout;
    // Interior points only: at the ends the frame is drawn over the markers.
    [1, 2, 3].forEach((v) => {
      expect(close(pixel(img, x(v), y(v * v)), SERIES_COLORS[0], 8), `series a at x=${v}: ${pixel(img, x(v), y(v * v))}`).toBe(true);
      expect(close(pixel(img, x(v), y(16 - 3 * v)), SERIES_COLORS[1], 8), `series b at x=${v}`).toBe(true);
    });
    // A point away from lines, markers and grid lines is background, so the check above is not trivially true.
    expect(close(pixel(img, x(2.25), y(11.5)), "#ffffff", 8), `background ${pixel(img, x(2.25), y(11.5))}`).toBe(true);
    for (let i = 0; i < 12; i += 5) {
      for (let j = 0; j < 12; j += 4) {
        const c = map.cell(i, j);
        // Off-centre: large cells print their value in the middle.
        const at = pixel(img, c.x + c.size * 0.2, plot.layout.height + c.y + c.size * 0.2);
        expect(close(at, c.color, 3), `cell (${i}, ${j}) ${at} vs ${c.color}`).toBe(true);
      }
    }
  });
}

if (chromium) {
  describe(`the report in headless Chromium (${chromium})`, tests);
} else if (REQUIRE_CHROMIUM) {
  describe("the report in headless Chromium", () => {
    it("needs Chromium", () => expect.fail("JACSTEER_REQUIRE_CHROMIUM=1 but no chromium on PATH (apt-get install -y chromium)"));
  });
} else {
  process.stderr.write("\n!!!!! SKIPPED (Chromium missing: apt-get install -y chromium): the report is NOT checked in a browser\n");
  describe("the report in headless Chromium", () => {
    it.skip("[needs Chromium] renders the report's SVG plots", () => {});
  });
}
