// Line/marker plots as static SVG: axes, nice ticks, grid, axis labels, optional error bars and
// reference lines, and a legend below the plot area (below, so that long labels such as file paths
// never cover data). Text is sized for reading at 100% zoom (13-15 px).
import { seriesStyle, type Marker } from "./colors.js";
import { integerTicks, linearScale, logScale, logTicks, niceTicks, padRange, type Scale } from "./scale.js";
import { coord, el, escapeXml, text, textWidth } from "./svg.js";

export interface Point {
  x: number;
  y: number;
  /** half-width of a vertical error bar */
  err?: number;
}

export interface Series {
  label: string;
  points: Point[];
  color?: string;
  marker?: Marker | "none";
  dash?: string;
  /** connect the points (default true) */
  line?: boolean;
}

export interface ReferenceLine {
  y: number;
  label: string;
  color?: string;
  dash?: string;
}

export interface LinePlotOptions {
  title?: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  /** total width in px (default 900) */
  width?: number;
  /** height of the plot area in px (default 320) */
  plotHeight?: number;
  logY?: boolean;
  /** x is an index: integer ticks */
  integerX?: boolean;
  /** values the y axis must include (e.g. 0) */
  yInclude?: number[];
  /** fixed y ticks (e.g. 0, 30, 60, 90 for angles): the axis spans their range (and any data outside it) */
  yTicks?: number[];
  xInclude?: number[];
  hLines?: ReferenceLine[];
  /** one sentence for screen readers */
  description?: string;
  /** draw the legend (default: yes, unless there is a single series and no reference line) */
  legend?: boolean;
}

export interface PlotResult {
  svg: string;
  /** points left out: non-finite, or not positive on a log axis */
  dropped: number;
  /** where each series' points landed, in SVG pixels (tests check the rendering against these) */
  layout: { x: Scale; y: Scale; width: number; height: number };
}

export const FONT = {
  tick: 13,
  axis: 14,
  title: 15,
  legend: 13,
};

const AXIS_COLOR = "#444444";
const GRID_COLOR = "#e3e3e3";
const ZERO_COLOR = "#b0b0b0";
const TEXT_COLOR = "#222222";
const MARKER_R = 4.5;

export function markerSvg(kind: Marker | "none", x: number, y: number, color: string, r = MARKER_R): string {
  const c = (v: number) => coord(v);
  switch (kind) {
    case "none":
      return "";
    case "circle":
      return el("circle", { cx: x, cy: y, r, fill: color });
    case "square":
      return el("rect", { x: x - r * 0.9, y: y - r * 0.9, width: r * 1.8, height: r * 1.8, fill: color });
    case "diamond":
      return el("path", { d: `M${c(x)} ${c(y - r * 1.25)}L${c(x + r * 1.25)} ${c(y)}L${c(x)} ${c(y + r * 1.25)}L${c(x - r * 1.25)} ${c(y)}Z`, fill: color });
    case "triangle":
      return el("path", { d: `M${c(x)} ${c(y - r * 1.3)}L${c(x + r * 1.2)} ${c(y + r * 0.9)}L${c(x - r * 1.2)} ${c(y + r * 0.9)}Z`, fill: color });
    case "triangle-down":
      return el("path", { d: `M${c(x)} ${c(y + r * 1.3)}L${c(x + r * 1.2)} ${c(y - r * 0.9)}L${c(x - r * 1.2)} ${c(y - r * 0.9)}Z`, fill: color });
    case "cross": {
      const a = r * 1.1, b = r * 0.45;
      return el("path", { d: `M${c(x - b)} ${c(y - a)}h${c(2 * b)}v${c(a - b)}h${c(a - b)}v${c(2 * b)}h${c(b - a)}v${c(a - b)}h${c(-2 * b)}v${c(b - a)}h${c(b - a)}v${c(-2 * b)}h${c(a - b)}Z`, fill: color });
    }
  }
}

interface LegendEntry {
  label: string;
  color: string;
  marker: Marker | "none";
  dash?: string;
  line: boolean;
}

const LEGEND_ROW = 22;
const LEGEND_SWATCH = 34;

/** Lay legend entries out in rows that fit `width`; long labels get a row of their own (shortened if still too long). */
function legendLayout(entries: LegendEntry[], width: number): { rows: { entry: LegendEntry; x: number; maxWidth: number }[][]; height: number } {
  const rows: { entry: LegendEntry; x: number; maxWidth: number }[][] = [];
  let row: { entry: LegendEntry; x: number; maxWidth: number }[] = [];
  let x = 0;
  for (const entry of entries) {
    const w = LEGEND_SWATCH + textWidth(entry.label, FONT.legend) + 24;
    if (row.length && x + w > width) {
      rows.push(row);
      row = [];
      x = 0;
    }
    row.push({ entry, x, maxWidth: width - x - LEGEND_SWATCH });
    x += w;
  }
  if (row.length) rows.push(row);
  return { rows, height: rows.length * LEGEND_ROW };
}

function legendSvg(entries: LegendEntry[], left: number, top: number, width: number): { svg: string; height: number } {
  const { rows, height } = legendLayout(entries, width);
  const parts: string[] = [];
  rows.forEach((row, r) => {
    const y = top + r * LEGEND_ROW + LEGEND_ROW / 2;
    for (const { entry, x, maxWidth } of row) {
      const x0 = left + x;
      if (entry.line) parts.push(el("line", { x1: x0 + 2, y1: y, x2: x0 + LEGEND_SWATCH - 8, y2: y, stroke: entry.color, "stroke-width": 2.5, "stroke-dasharray": entry.dash }));
      parts.push(markerSvg(entry.marker, x0 + (LEGEND_SWATCH - 6) / 2, y, entry.color));
      parts.push(text(x0 + LEGEND_SWATCH, y, entry.label, { size: FONT.legend, fill: TEXT_COLOR, baseline: "middle", maxWidth }));
    }
  });
  return { svg: el("g", { class: "legend" }, parts.join("")), height };
}

/** Tick labels with a real minus sign (U+2212), which lines up with the digits. */
const minus = (s: string) => s.replace(/^-/, "\u2212");

/** Draw a line/marker plot. Throws on an empty plot (nothing finite to show): callers decide what to say. */
export function linePlot(o: LinePlotOptions): PlotResult {
  const width = o.width ?? 900;
  const plotHeight = o.plotHeight ?? 320;
  let dropped = 0;
  const series = o.series.map((s, i) => {
    const style = seriesStyle(i);
    const points = s.points.filter((p) => {
      const ok = Number.isFinite(p.x) && Number.isFinite(p.y) && (!o.logY || p.y > 0) && (p.err === undefined || Number.isFinite(p.err));
      if (!ok) dropped++;
      return ok;
    });
    return { label: s.label, points, color: s.color ?? style.color, marker: s.marker ?? style.marker, dash: s.dash ?? style.dash, line: s.line ?? true };
  });
  const xs = series.flatMap((s) => s.points.map((p) => p.x)).concat(o.xInclude ?? []);
  const ys = series.flatMap((s) => s.points.flatMap((p) => (p.err ? [p.y - p.err, p.y + p.err] : [p.y]))).concat(o.yInclude ?? [], (o.hLines ?? []).map((h) => h.y));
  const yData = o.logY ? ys.filter((y) => y > 0) : ys;
  if (xs.length === 0 || yData.length === 0) throw new Error("linePlot: nothing finite to plot");
  const xlo = Math.min(...xs), xhi = Math.max(...xs);
  const xt = o.integerX ? integerTicks(xlo, xhi, Math.min(12, Math.floor(width / 50))) : niceTicks(...padRange(xlo, xhi), Math.max(3, Math.round(width / 110)));
  const ylo = Math.min(...yData), yhi = Math.max(...yData);
  const yt = o.yTicks
    ? { domain: [Math.min(ylo, ...o.yTicks), Math.max(yhi, ...o.yTicks)] as [number, number], values: o.yTicks, labels: o.yTicks.map(String) }
    : o.logY
      ? logTicks(ylo / 1.08, yhi * 1.08)
      : niceTicks(ylo, yhi, Math.max(3, Math.round(plotHeight / 60)));

  const title = o.title ? 30 : 8;
  const yTickWidth = Math.max(...yt.labels.map((l) => textWidth(l, FONT.tick)));
  const left = 22 + FONT.axis + 8 + yTickWidth + 8;
  const right = 22;
  const plotWidth = width - left - right;
  const top = title + 10;
  // An index axis gets half a step of room at each end so end markers are not cut by the frame.
  // A little room inside the frame at each end, so that markers and error bars at the first or last
  // tick are not drawn over by the frame: half a step on an index axis, 2.5% of the span otherwise.
  const xPad = o.integerX ? 0.5 : 0.025 * (xt.domain[1] - xt.domain[0]);
  const x = linearScale([xt.domain[0] - xPad, xt.domain[1] + xPad], [left, left + plotWidth]);
  const yPad = o.logY ? 0 : 0.025 * (yt.domain[1] - yt.domain[0]);
  const y = (o.logY ? logScale : linearScale)([yt.domain[0] - yPad, yt.domain[1] + yPad], [top + plotHeight, top]);
  const bottomAxis = top + plotHeight + 8 + FONT.tick + 6 + FONT.axis + 8;
  const legendEntries: LegendEntry[] = series.map((s) => ({ label: s.label, color: s.color, marker: s.marker, dash: s.dash, line: s.line && s.points.length > 1 }));
  for (const h of o.hLines ?? []) legendEntries.push({ label: h.label, color: h.color ?? "#666666", marker: "none", dash: h.dash ?? "5 4", line: true });
  const showLegend = o.legend ?? legendEntries.length > 1;
  const legend = showLegend ? legendSvg(legendEntries, left, bottomAxis + 4, plotWidth) : { svg: "", height: 0 };
  const height = Math.ceil(bottomAxis + 4 + legend.height + 8);

  const parts: string[] = [];
  if (o.title) parts.push(text(width / 2, 20, o.title, { size: FONT.title, anchor: "middle", weight: "600", fill: TEXT_COLOR, maxWidth: width - 20 }));
  // grid and ticks
  const grid: string[] = [];
  const ticks: string[] = [];
  xt.values.forEach((v, i) => {
    const px = x(v);
    grid.push(el("line", { x1: px, y1: top, x2: px, y2: top + plotHeight, stroke: GRID_COLOR }));
    ticks.push(el("line", { x1: px, y1: top + plotHeight, x2: px, y2: top + plotHeight + 5, stroke: AXIS_COLOR }));
    ticks.push(text(px, top + plotHeight + 8 + FONT.tick, minus(xt.labels[i]), { size: FONT.tick, anchor: "middle", fill: TEXT_COLOR }));
  });
  yt.values.forEach((v, i) => {
    const py = y(v);
    // y = 0 inside the plot is where the sign changes: a darker line.
    grid.push(el("line", { x1: left, y1: py, x2: left + plotWidth, y2: py, stroke: v === 0 && !o.logY ? ZERO_COLOR : GRID_COLOR }));
    ticks.push(el("line", { x1: left - 5, y1: py, x2: left, y2: py, stroke: AXIS_COLOR }));
    ticks.push(text(left - 8, py, minus(yt.labels[i]), { size: FONT.tick, anchor: "end", fill: TEXT_COLOR, baseline: "middle" }));
  });
  parts.push(el("g", { class: "grid" }, grid.join("")));
  // reference lines under the data
  for (const h of o.hLines ?? []) {
    if (o.logY && !(h.y > 0)) continue;
    parts.push(el("line", { x1: left, y1: y(h.y), x2: left + plotWidth, y2: y(h.y), stroke: h.color ?? "#666666", "stroke-width": 1.5, "stroke-dasharray": h.dash ?? "5 4" }));
  }
  // Series with error bars at the same x are shifted apart by a few pixels so the bars stay visible.
  const withErr = series.filter((s) => s.points.some((p) => p.err));
  const dodge = (si: number) => (withErr.length > 1 ? (si - (series.length - 1) / 2) * 5 : 0);
  // data
  for (const [si, s] of series.entries()) {
    const g: string[] = [];
    const pts = s.points.map((p) => [x(p.x) + dodge(si), y(p.y)] as const);
    if (s.line && pts.length > 1) {
      g.push(el("path", { d: pts.map(([px, py], i) => `${i ? "L" : "M"}${coord(px)} ${coord(py)}`).join(""), fill: "none", stroke: s.color, "stroke-width": 2, "stroke-dasharray": s.dash, "stroke-linejoin": "round" }));
    }
    s.points.forEach((p) => {
      if (!p.err) return;
      const px = x(p.x) + dodge(si), y0 = y(o.logY ? Math.max(p.y - p.err, y.domain[0]) : p.y - p.err), y1 = y(p.y + p.err);
      g.push(el("path", { d: `M${coord(px)} ${coord(y0)}V${coord(y1)}M${coord(px - 4)} ${coord(y0)}h8M${coord(px - 4)} ${coord(y1)}h8`, stroke: s.color, "stroke-width": 1.3, fill: "none" }));
    });
    pts.forEach(([px, py]) => g.push(markerSvg(s.marker, px, py, s.color)));
    parts.push(el("g", { class: "series", "data-label": s.label }, g.join("")));
  }
  // frame and axes on top
  parts.push(el("rect", { x: left, y: top, width: plotWidth, height: plotHeight, fill: "none", stroke: AXIS_COLOR }));
  parts.push(el("g", { class: "ticks" }, ticks.join("")));
  parts.push(text(left + plotWidth / 2, top + plotHeight + 8 + FONT.tick + 6 + FONT.axis, o.xLabel, { size: FONT.axis, anchor: "middle", fill: TEXT_COLOR, cls: "axis-label", maxWidth: plotWidth }));
  parts.push(text(22, top + plotHeight / 2, o.yLabel, { size: FONT.axis, anchor: "middle", fill: TEXT_COLOR, rotate: -90, cls: "axis-label", maxWidth: plotHeight }));
  parts.push(legend.svg);

  const desc = o.description ?? `${o.title ?? "plot"}: ${o.yLabel} against ${o.xLabel}`;
  const svg = `<svg class="plot" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${escapeXml(desc)}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">` + `<title>${escapeXml(desc)}</title>` + parts.join("") + "</svg>";
  return { svg, dropped, layout: { x, y, width, height } };
}
