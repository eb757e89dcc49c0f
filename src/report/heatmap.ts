// A matrix as a grid of coloured cells with row/column labels and a colour bar. Cells show their value
// when they are large enough to hold it; outlined cells mark what the caller highlights (best matches).
import { diverging, sequential, textColorOn } from "./colors.js";
import { FONT } from "./plot.js";
import { el, escapeXml, text, textWidth } from "./svg.js";

export interface HeatmapOptions {
  title?: string;
  /** values[row][col]; null: an empty cell (drawn light grey, e.g. a layer pair with S >= T) */
  values: (number | null)[][];
  rowLabels: string[];
  colLabels: string[];
  rowTitle: string;
  colTitle: string;
  /** signed: diverging scale on [-1, 1]; otherwise a sequential scale on [0, 1] (values are clamped) */
  signed: boolean;
  colorBarLabel: string;
  /** cells to outline */
  highlight?: { row: number; col: number }[];
  /** total width available in px (default 900) */
  maxWidth?: number;
  description?: string;
  /**
   * Unsigned values on [lo, hi] instead of [0, 1] (sigma, KL): colours map (v - lo) / (hi - lo), the
   * colour bar is labelled in the values' units, and cells show `format(v)`.
   */
  range?: { lo: number; hi: number; format?: (v: number) => string };
  /** A cell's hover title (SVG <title>) instead of "row × col: value": a click-free way to read a cell. */
  cellTitles?: (string | null)[][];
}

export interface HeatmapResult {
  svg: string;
  /** cell (row, col) -> its rectangle, for tests */
  cell: (row: number, col: number) => { x: number; y: number; size: number; color: string };
  colorBar: { x: number; y: number; width: number; height: number; low: string; high: string };
}

const TEXT_COLOR = "#222222";
const COLOR_STEPS = 64;
const EMPTY_COLOR = "#eeeeee";

export function heatmap(o: HeatmapOptions): HeatmapResult {
  const rows = o.values.length, cols = rows ? o.values[0].length : 0;
  if (!rows || !cols) throw new Error("heatmap: empty matrix");
  if (o.values.some((r) => r.length !== cols)) throw new Error("heatmap: ragged matrix");
  if (o.rowLabels.length !== rows || o.colLabels.length !== cols) throw new Error("heatmap: label count does not match the matrix");
  const maxWidth = o.maxWidth ?? 900;
  const color = (v: number) => (o.signed ? diverging(v) : sequential(v));
  const range = o.range;
  // The colour bar's tick labels: in the values' units with a range (e.g. 1.23e-4), else -1..1.
  const widestTick = range ? "0.000e+00" : "−0.75";
  const unit = (v: number) => (range ? (range.hi > range.lo ? Math.min(1, Math.max(0, (v - range.lo) / (range.hi - range.lo))) : 0.5) : Math.abs(v));
  const show = (v: number) => (range?.format ? range.format(v) : (o.signed ? v : Math.abs(v)).toFixed(2));
  const lo = o.signed ? -1 : 0;

  const rowLabelWidth = Math.min(220, Math.max(...o.rowLabels.map((l) => textWidth(l, FONT.tick)))) + 10;
  const left = 22 + FONT.axis + 6 + rowLabelWidth;
  const barSpace = 16 + 10 + textWidth(widestTick, FONT.tick) + 12 + FONT.axis + 16;
  const cell = Math.max(6, Math.min(56, Math.floor(Math.min((maxWidth - left - barSpace - 30) / cols, 520 / rows))));
  const gridW = cell * cols, gridH = cell * rows;
  const title = o.title ? 30 : 8;
  const colLabelSize = FONT.tick;
  const top = title + 8 + FONT.axis + 8 + colLabelSize + 8;
  // Labels are thinned when cells are narrower than the labels they would carry.
  const colLabelWidth = Math.max(...o.colLabels.map((l) => textWidth(l, colLabelSize)));
  const colEvery = Math.max(1, Math.ceil((colLabelWidth + 6) / cell));
  const rowEvery = Math.max(1, Math.ceil((FONT.tick + 3) / cell));
  const showValues = cell >= 36;
  const barX = left + gridW + 20, barW = 16, barH = Math.max(gridH, 160), barY = top;
  const width = Math.ceil(Math.max(barX + barW + 10 + textWidth(widestTick, FONT.tick) + 12 + FONT.axis + 10, o.title ? textWidth(o.title, FONT.title) + 20 : 0));
  const height = Math.ceil(Math.max(top + gridH, barY + barH) + 16);

  const parts: string[] = [];
  if (o.title) parts.push(text(width / 2, 20, o.title, { size: FONT.title, anchor: "middle", weight: "600", fill: TEXT_COLOR, maxWidth: width - 20 }));
  parts.push(text(left + gridW / 2, title + 8 + FONT.axis, o.colTitle, { size: FONT.axis, anchor: "middle", fill: TEXT_COLOR, cls: "axis-label", maxWidth: Math.max(gridW, 300) }));
  parts.push(text(22, top + gridH / 2, o.rowTitle, { size: FONT.axis, anchor: "middle", fill: TEXT_COLOR, rotate: -90, cls: "axis-label", maxWidth: Math.max(gridH, 200) }));
  const cells: string[] = [];
  const fills: string[][] = [];
  for (let i = 0; i < rows; i++) {
    fills.push([]);
    for (let j = 0; j < cols; j++) {
      const v = o.values[i][j];
      const x = left + j * cell, y = top + i * cell;
      if (v === null) {
        fills[i].push(EMPTY_COLOR);
        const title = o.cellTitles?.[i]?.[j];
        cells.push(el("rect", { x, y, width: cell, height: cell, fill: EMPTY_COLOR }, title ? `<title>${escapeXml(title)}</title>` : ""));
        continue;
      }
      if (!Number.isFinite(v)) throw new Error(`heatmap: non-finite value at (${i}, ${j})`);
      const fill = color(o.signed ? v : unit(v));
      fills[i].push(fill);
      const label = o.cellTitles?.[i]?.[j] ?? `${o.rowLabels[i]} × ${o.colLabels[j]}: ${range?.format ? range.format(v) : v.toFixed(4)}`;
      cells.push(el("rect", { x, y, width: cell, height: cell, fill }, `<title>${escapeXml(label)}</title>`));
      if (showValues) cells.push(text(x + cell / 2, y + cell / 2, show(v), { size: 11, anchor: "middle", baseline: "middle", fill: textColorOn(fill) }));
    }
  }
  parts.push(el("g", { class: "cells" }, cells.join("")));
  for (const h of o.highlight ?? []) {
    parts.push(el("rect", { x: left + h.col * cell + 1, y: top + h.row * cell + 1, width: cell - 2, height: cell - 2, fill: "none", stroke: textColorOn(fills[h.row][h.col]), "stroke-width": 2 }));
  }
  parts.push(el("rect", { x: left, y: top, width: gridW, height: gridH, fill: "none", stroke: "#444444" }));
  const labels: string[] = [];
  for (let i = 0; i < rows; i += rowEvery) labels.push(text(left - 8, top + i * cell + cell / 2, o.rowLabels[i], { size: FONT.tick, anchor: "end", baseline: "middle", fill: TEXT_COLOR, maxWidth: rowLabelWidth - 10 }));
  for (let j = 0; j < cols; j += colEvery) labels.push(text(left + j * cell + cell / 2, top - 8, o.colLabels[j], { size: colLabelSize, anchor: "middle", fill: TEXT_COLOR }));
  parts.push(el("g", { class: "labels" }, labels.join("")));

  // Colour bar: discrete steps (exact colours at both ends, no gradient support needed), high at the top.
  const bar: string[] = [];
  const stepH = barH / COLOR_STEPS;
  for (let s = 0; s < COLOR_STEPS; s++) {
    const t = lo + ((s + 0.5) / COLOR_STEPS) * (1 - lo);
    const tEnd = s === 0 ? lo : s === COLOR_STEPS - 1 ? 1 : t;
    bar.push(el("rect", { x: barX, y: barY + barH - (s + 1) * stepH, width: barW, height: stepH + 0.5, fill: color(tEnd) }));
  }
  bar.push(el("rect", { x: barX, y: barY, width: barW, height: barH, fill: "none", stroke: "#444444" }));
  const barTicks = o.signed ? [-1, -0.5, 0, 0.5, 1] : [0, 0.25, 0.5, 0.75, 1];
  for (const t of barTicks) {
    const y = barY + barH - ((t - lo) / (1 - lo)) * barH;
    bar.push(el("line", { x1: barX + barW, y1: y, x2: barX + barW + 5, y2: y, stroke: "#444444" }));
    const tick = range ? (range.format ?? ((x: number) => x.toPrecision(3)))(range.lo + t * (range.hi - range.lo)) : t < 0 ? `−${Math.abs(t)}` : String(t);
    bar.push(text(barX + barW + 8, y, tick, { size: FONT.tick, baseline: "middle", fill: TEXT_COLOR }));
  }
  const barLabelX = barX + barW + 10 + textWidth(widestTick, FONT.tick) + 12;
  bar.push(text(barLabelX, barY + barH / 2, o.colorBarLabel, { size: FONT.axis, anchor: "middle", fill: TEXT_COLOR, rotate: 90, cls: "axis-label" }));
  parts.push(el("g", { class: "colorbar" }, bar.join("")));

  const desc = o.description ?? `${o.title ?? "heatmap"}: ${o.rowTitle} against ${o.colTitle}`;
  const svg = `<svg class="heatmap" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${escapeXml(desc)}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif"><title>${escapeXml(desc)}</title>${parts.join("")}</svg>`;
  return {
    svg,
    cell: (row, col) => ({ x: left + col * cell, y: top + row * cell, size: cell, color: fills[row][col] }),
    colorBar: { x: barX, y: barY, width: barW, height: barH, low: color(lo), high: color(1) },
  };
}
