// The report's SVG helpers: tick choice, scale mapping, number formatting, escaping, colours, and the
// geometry of line plots and heatmaps checked against hand-computed positions.
import { describe, expect, it } from "vitest";
import { integerTicks, linearScale, logScale, logTicks, niceTicks, formatNumber, formatTick } from "../../src/report/scale.js";
import { coord, escapeXml, fitText, text, textWidth } from "../../src/report/svg.js";
import { diverging, luminance, sequential, SERIES_COLORS, textColorOn } from "../../src/report/colors.js";
import { linePlot } from "../../src/report/plot.js";
import { heatmap } from "../../src/report/heatmap.js";
import { rng } from "../helpers/random.js";

const NICE_MANTISSAS = [1, 2, 5];
function isNiceStep(step: number): boolean {
  const k = Math.floor(Math.log10(step) + 1e-12);
  const m = step / 10 ** k;
  return NICE_MANTISSAS.some((n) => Math.abs(m - n) < 1e-9) || Math.abs(m - 10) < 1e-9;
}

/** All numbers in attributes that hold coordinates. */
function coordinates(svg: string): string[] {
  return [...svg.matchAll(/\s(?:x|y|x1|x2|y1|y2|cx|cy|r|width|height|d|transform|viewBox)="([^"]*)"/g)].map((m) => m[1]);
}

describe("tick choice", () => {
  it("picks 1-2-5 steps that cover the range", () => {
    expect(niceTicks(0, 7.4, 5).values).toEqual([0, 2, 4, 6, 8]);
    expect(niceTicks(-10.6, 0, 4).values).toEqual([-12, -10, -8, -6, -4, -2, 0]);
    expect(niceTicks(0, 1, 4).values).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
    expect(niceTicks(0, 1, 2).labels).toEqual(["0.0", "0.5", "1.0"]);
    expect(niceTicks(-0.5, 0.75, 5).labels).toEqual(["-0.6", "-0.4", "-0.2", "0.0", "0.2", "0.4", "0.6", "0.8"]);
    // Decimal steps are exact numbers, not 0.30000000000000004.
    expect(niceTicks(0.1, 0.7, 6).values).toEqual([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]);
    expect(niceTicks(0.1, 0.7, 6).labels).toEqual(["0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7"]);
  });

  it("holds its invariants on random ranges", () => {
    const r = rng(5);
    for (let t = 0; t < 2000; t++) {
      const scale = 10 ** Math.floor(r() * 16 - 8);
      const a = (r() * 2 - 1) * scale, b = a + r() * scale * (r() < 0.1 ? 1e-3 : 1);
      const target = 3 + Math.floor(r() * 6);
      const ticks = niceTicks(a, b, target);
      const v = ticks.values;
      expect(v.length, `${a} ${b}`).toBeGreaterThanOrEqual(2);
      expect(v.length).toBeLessThanOrEqual(2 * target + 2);
      const step = v[1] - v[0];
      // The ticks cover the data (to a millionth of a step: float division decides the last bit).
      expect(v[0]).toBeLessThanOrEqual(Math.min(a, b) + step * 1e-6);
      expect(v[v.length - 1]).toBeGreaterThanOrEqual(Math.max(a, b) - step * 1e-6);
      expect(isNiceStep(step), `step ${step} for [${a}, ${b}]`).toBe(true);
      for (let i = 1; i < v.length; i++) expect(Math.abs(v[i] - v[i - 1] - step)).toBeLessThan(step * 1e-6);
      expect(ticks.domain).toEqual([v[0], v[v.length - 1]]);
      expect(new Set(ticks.labels).size, `labels ${ticks.labels.join(" ")}`).toBe(ticks.labels.length);
      for (const l of ticks.labels) expect(l).not.toMatch(/NaN|Infinity|0000000|99999/);
      // Labels read back as the tick values (to the label's precision).
      ticks.labels.forEach((l, i) => expect(Math.abs(Number(l) - v[i])).toBeLessThanOrEqual(step * 1e-3 + Math.abs(v[i]) * 1e-9));
    }
  });

  it("pads a degenerate range", () => {
    expect(niceTicks(3, 3).values.length).toBeGreaterThanOrEqual(2);
    expect(niceTicks(0, 0).values).toContain(0);
  });

  it("index axes: integer ticks, at most maxTicks, never below the data", () => {
    expect(integerTicks(0, 5, 10).values).toEqual([0, 1, 2, 3, 4, 5]);
    expect(integerTicks(1, 6, 10).values).toEqual([1, 2, 3, 4, 5, 6]);
    expect(integerTicks(0, 63, 8).values).toEqual([0, 10, 20, 30, 40, 50, 60]);
    expect(integerTicks(0, 0, 10).domain).toEqual([0, 1]);
    for (let hi = 1; hi < 500; hi += 7) {
      const t = integerTicks(0, hi, 9);
      expect(t.values.length).toBeLessThanOrEqual(9);
      expect(t.values.every(Number.isInteger)).toBe(true);
      expect(t.values[t.values.length - 1]).toBeLessThanOrEqual(hi);
    }
  });

  it("log axes: decades when the range spans several, 1-2-5 or 1..9 multiples inside a short range", () => {
    expect(logTicks(1e-3, 1e2).values).toEqual([1e-3, 1e-2, 0.1, 1, 10, 100]);
    expect(logTicks(1e-3, 1e2).labels).toEqual(["0.001", "0.01", "0.1", "1", "10", "100"]);
    expect(logTicks(0.5, 30).values).toEqual([0.5, 1, 2, 5, 10, 20]);
    expect(logTicks(5.1, 7.5).values).toEqual([6, 7]);
    const t = logTicks(5.13, 5.2);
    t.values.forEach((v) => expect(v >= 5.13 && v <= 5.2).toBe(true));
    expect(t.values.length).toBeGreaterThanOrEqual(2);
    expect(logTicks(1e-30, 1e30).values.length).toBeLessThanOrEqual(9);
    expect(logTicks(1e-7, 1e-5).labels).toEqual(["1e-7", "1e-6", "1e-5"]);
  });

  it("formats numbers without float noise", () => {
    expect(formatTick(0.30000000000000004, 0.1)).toBe("0.3");
    expect(formatTick(2.5e-7, 5e-8)).toBe("2.5e-7");
    expect(formatTick(3e6, 1e6)).toBe("3e6");
    expect(formatNumber(7.416013507)).toBe("7.416");
    expect(formatNumber(-0.000012346)).toBe("-1.235e-5");
    expect(formatNumber(null)).toBe("–");
    expect(formatNumber(NaN)).toBe("NaN");
  });
});

describe("scale mapping", () => {
  it("linear: ends to ends, proportional between, reversed ranges (SVG y grows downwards)", () => {
    const s = linearScale([-2, 6], [100, 300]);
    expect(s(-2)).toBe(100);
    expect(s(6)).toBe(300);
    expect(s(0)).toBe(150);
    const y = linearScale([0, 10], [400, 0]);
    expect(y(0)).toBe(400);
    expect(y(10)).toBe(0);
    expect(y(2.5)).toBe(300);
  });

  it("log: the geometric mean maps to the middle", () => {
    const s = logScale([0.01, 100], [0, 400]);
    expect(s(0.01)).toBeCloseTo(0, 10);
    expect(s(100)).toBeCloseTo(400, 10);
    expect(s(1)).toBeCloseTo(200, 10);
    expect(s(Math.sqrt(0.01 * 1))).toBeCloseTo(100, 10);
  });

  it("refuses bad domains", () => {
    expect(() => linearScale([1, 1], [0, 1])).toThrow();
    expect(() => logScale([0, 1], [0, 1])).toThrow();
    expect(() => logScale([-1, 1], [0, 1])).toThrow();
  });
});

describe("escaping and text", () => {
  it("escapes markup characters in content and attributes", () => {
    expect(escapeXml(`<script>alert("x")</script> & 'y'`)).toBe("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;");
    expect(escapeXml("&amp;")).toBe("&amp;amp;");
  });

  it("drops characters XML forbids and repairs lone surrogates", () => {
    expect(escapeXml("a\u0000b\u0007c\u001Fd\te\nf")).toBe("abcd\te\nf");
    expect(escapeXml("x\uD800y")).toBe("x\uFFFDy");
    expect(escapeXml("😀")).toBe("😀");
  });

  it("text(): escaped content; a shortened label keeps its full text in a <title>", () => {
    const t = text(10, 20, `</text><script>x</script>`, { size: 13 });
    expect(t).not.toContain("<script>");
    expect(t).toContain("&lt;/text&gt;&lt;script&gt;");
    const long = "/a/very/long/path/to/some/deeply/nested/directory/with/results.safetensors";
    const short = text(0, 0, long, { size: 13, maxWidth: 150 });
    expect(short).toContain(`<title>${long}</title>`);
    const shown = short.replace(/<title>.*<\/title>/, "").replace(/<[^>]+>/g, "");
    expect(shown.startsWith("…")).toBe(true);
    expect(shown.endsWith("results.safetensors")).toBe(true);
    expect(textWidth(shown, 13)).toBeLessThanOrEqual(150);
    expect(fitText("short", 13, 150)).toBe("short");
  });

  it("coordinates: rounded, and NaN/infinity refused", () => {
    expect(coord(1.23456)).toBe("1.23");
    expect(coord(-0.001)).toBe("0");
    expect(() => coord(NaN)).toThrow(/non-finite/);
    expect(() => coord(Infinity)).toThrow(/non-finite/);
  });
});

describe("colours", () => {
  it("viridis rises in luminance; the diverging scale is darkest at the ends and near-white at 0", () => {
    let prev = -1;
    for (let t = 0; t <= 1.0001; t += 0.05) {
      const L = luminance(sequential(t));
      expect(L).toBeGreaterThan(prev);
      prev = L;
    }
    expect(sequential(0)).toBe("#440154");
    expect(sequential(1)).toBe("#fde725");
    expect(diverging(-1)).toBe("#053061");
    expect(diverging(1)).toBe("#67001f");
    expect(luminance(diverging(0))).toBeGreaterThan(0.9);
  });

  it("text on a cell contrasts with it (WCAG ratio at least 4.5)", () => {
    for (let t = 0; t <= 1; t += 0.1) {
      for (const bg of [sequential(t), diverging(2 * t - 1)]) {
        const fg = textColorOn(bg);
        const [a, b] = [luminance(bg), luminance(fg)].sort((x, y) => y - x);
        expect((a + 0.05) / (b + 0.05), `${fg} on ${bg}`).toBeGreaterThanOrEqual(4.5);
      }
    }
  });

  it("series colours are distinct from each other and from white", () => {
    const set = new Set(SERIES_COLORS);
    expect(set.size).toBe(SERIES_COLORS.length);
    for (const c of SERIES_COLORS) expect(luminance(c)).toBeLessThan(0.5);
  });
});

describe("linePlot", () => {
  const series = [
    { label: "first <a>", points: [0, 1, 2, 3].map((i) => ({ x: i, y: 8 - i })) },
    { label: "second & more", points: [0, 1, 2, 3].map((i) => ({ x: i, y: 6 - i / 2 })) },
  ];

  it("puts markers where the axes say (positions computed here by hand)", () => {
    const { svg } = linePlot({ xLabel: "i", yLabel: "sigma", series, integerX: true, yInclude: [0], width: 600, plotHeight: 300 });
    // The frame is the plot area: the one rect with fill none and the axis colour.
    const frame = /<rect x="([\d.]+)" y="([\d.]+)" width="([\d.]+)" height="([\d.]+)" fill="none" stroke="#444444"\/>/.exec(svg)!;
    const [fx, fy, fw, fh] = frame.slice(1).map(Number);
    expect(fh).toBe(300);
    // x: indices 0..3 with half a step of room on each side; y: ticks 0..8 (nice step 2) and 2.5% of
    // the span (0.2) of room above and below.
    const expectX = (i: number) => fx + ((i + 0.5) / 4) * fw;
    const expectY = (v: number) => fy + fh - ((v + 0.2) / 8.4) * fh;
    const circles = [...svg.matchAll(/<circle cx="([\d.]+)" cy="([\d.]+)"/g)].map((m) => [Number(m[1]), Number(m[2])]);
    // four markers of the first series (circles) plus the legend's
    expect(circles.length).toBe(5);
    for (let i = 0; i < 4; i++) {
      expect(circles[i][0]).toBeCloseTo(expectX(i), 1);
      expect(circles[i][1]).toBeCloseTo(expectY(8 - i), 1);
    }
    // Tick labels of y: 0, 2, 4, 6, 8 at the matching heights.
    for (const v of [0, 2, 4, 6, 8]) expect(svg).toContain(`y="${coord(expectY(v))}" font-size="13" text-anchor="end" fill="#222222" dominant-baseline="central">${v}</text>`);
  });

  it("escapes labels, writes no NaN, counts left-out points", () => {
    const bad = [{ label: "x", points: [{ x: 0, y: 1 }, { x: 1, y: NaN }, { x: 2, y: Infinity }, { x: 3, y: 2 }] }];
    const p = linePlot({ title: "T <b>", xLabel: "x & y", yLabel: "<y>", series: [...series, ...bad] });
    expect(p.dropped).toBe(2);
    expect(p.svg).not.toMatch(/NaN|Infinity/);
    expect(p.svg).toContain("first &lt;a&gt;");
    expect(p.svg).toContain("second &amp; more");
    expect(p.svg).toContain("T &lt;b&gt;");
    expect(p.svg).not.toContain("<b>");
    for (const c of coordinates(p.svg)) expect(c).not.toMatch(/NaN|Infinity|undefined/);
  });

  it("log axis: non-positive values are left out, the rest spread by decades", () => {
    const p = linePlot({ xLabel: "i", yLabel: "s", logY: true, integerX: true, series: [{ label: "s", points: [100, 10, 1, 0, -1].map((y, x) => ({ x, y })) }] });
    expect(p.dropped).toBe(2);
    const ys = [...p.svg.matchAll(/<circle cx="[\d.]+" cy="([\d.]+)"/g)].map((m) => Number(m[1]));
    // equal ratios, equal distances
    expect(ys[1] - ys[0]).toBeCloseTo(ys[2] - ys[1], 1);
  });

  it("refuses to draw nothing", () => {
    expect(() => linePlot({ xLabel: "x", yLabel: "y", series: [{ label: "s", points: [{ x: 0, y: NaN }] }] })).toThrow(/nothing finite/);
  });

  it("legend rows never exceed the plot width and long labels are shortened", () => {
    const many = Array.from({ length: 9 }, (_, i) => ({ label: `/some/long/path/number/${i}/vectors.safetensors:${i} — slope 0.001 per unit, R² 0.99`, points: [{ x: 0, y: i }, { x: 1, y: i + 1 }] }));
    const p = linePlot({ xLabel: "x", yLabel: "y", series: many, width: 500 });
    const legend = /<g class="legend">(.*?)<\/g>/.exec(p.svg)![1];
    const texts = [...legend.matchAll(/<text x="([\d.]+)"[^>]*>(?:<title>[^<]*<\/title>)?([^<]*)<\/text>/g)];
    expect(texts.length).toBe(9);
    for (const t of texts) expect(Number(t[1]) + textWidth(t[2], 13)).toBeLessThanOrEqual(500);
  });
});

describe("heatmap", () => {
  it("colours cells by value, outlines highlights, and has a colour bar with exact end colours", () => {
    const values = [
      [0, 0.5, 1],
      [0.25, 0.75, 0.1],
    ];
    const h = heatmap({ values, rowLabels: ["r0", "r1"], colLabels: ["c0", "c1", "c2"], rowTitle: "A <rows>", colTitle: "B", signed: false, colorBarLabel: "|cos|", highlight: [{ row: 0, col: 2 }] });
    expect(h.cell(0, 0).color).toBe("#440154");
    expect(h.cell(0, 2).color).toBe("#fde725");
    expect(h.colorBar.low).toBe("#440154");
    expect(h.colorBar.high).toBe("#fde725");
    expect(h.svg).toContain('fill="#440154"');
    expect(h.svg).toContain("A &lt;rows&gt;");
    // cells are laid out on a grid: equal sizes, columns advance by one cell
    expect(h.cell(0, 1).x - h.cell(0, 0).x).toBe(h.cell(0, 0).size);
    expect(h.cell(1, 0).y - h.cell(0, 0).y).toBe(h.cell(0, 0).size);
    const c = h.cell(0, 2);
    expect(h.svg).toContain(`<rect x="${coord(c.x + 1)}" y="${coord(c.y + 1)}" width="${coord(c.size - 2)}" height="${coord(c.size - 2)}" fill="none"`);
    expect(h.svg).not.toMatch(/NaN|Infinity/);
  });

  it("signed: diverging scale with -1 blue and +1 red; |values| otherwise", () => {
    const h = heatmap({ values: [[-1, 1, 0]], rowLabels: ["a"], colLabels: ["x", "y", "z"], rowTitle: "A", colTitle: "B", signed: true, colorBarLabel: "cos" });
    expect(h.cell(0, 0).color).toBe("#053061");
    expect(h.cell(0, 1).color).toBe("#67001f");
    const u = heatmap({ values: [[-1]], rowLabels: ["a"], colLabels: ["x"], rowTitle: "A", colTitle: "B", signed: false, colorBarLabel: "|cos|" });
    expect(u.cell(0, 0).color).toBe("#fde725");
  });

  it("thins labels of large matrices and refuses non-finite values", () => {
    const n = 64;
    const values = Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => Math.abs(Math.cos(i * j))));
    const h = heatmap({ values, rowLabels: values.map((_, i) => String(i)), colLabels: values.map((_, i) => String(i)), rowTitle: "A", colTitle: "B", signed: false, colorBarLabel: "|cos|" });
    const labels = /<g class="labels">(.*?)<\/g>/.exec(h.svg)![1];
    const count = (labels.match(/<text/g) ?? []).length;
    expect(count).toBeLessThan(2 * n);
    expect(count).toBeGreaterThan(8);
    expect(() => heatmap({ values: [[NaN]], rowLabels: ["a"], colLabels: ["b"], rowTitle: "A", colTitle: "B", signed: false, colorBarLabel: "" })).toThrow(/non-finite/);
  });
});
