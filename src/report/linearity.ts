// The report's linear-regime section (`jacsteer report --linearity FILE.json`, written by `jacsteer
// linearity --out`): ratio ||Delta(r v) - r J v|| / ||r J v|| against the radius, one line per
// direction, on log-log axes (the x axis is log10 r: the plot code's x axis is linear), the target
// ratio as a reference line, and a table with each direction's radius at the target.
import { InputError } from "../model/qwen3.js";
import { linePlot, type Series } from "./plot.js";
import { formatNumber } from "./scale.js";
import { escapeXml } from "./svg.js";

export const LINEARITY_FORMAT = "jacsteer.linearity.v1";

export interface LinearityFile {
  format: typeof LINEARITY_FORMAT;
  file: string;
  rows: number[];
  model: string;
  source_layer: number;
  target_layer: number;
  positions: string;
  position_weights: string | null;
  tokens: number[][];
  method: string | null;
  target_ratio: number;
  median_source_norm: number;
  radii: number[];
  radius_fractions: number[] | null;
  vectors: {
    row: number;
    norm: number;
    jv_norm: number;
    ratios: number[];
    delta_norms: number[];
    radius_at_target: number | null;
    radius_at_target_fraction: number | null;
    status: string;
    non_monotone: boolean;
  }[];
  passes: number;
  threads: number;
  seconds: number;
  kernels: string;
}

export interface LinearityInput {
  /** as named on the command line */
  file: string;
  doc: LinearityFile;
}

/** Parse and check a linearity result; errors name the flag and the file. */
export function parseLinearity(text: string, file: string, flag: string): LinearityInput {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new InputError(`${flag} ${file}: not valid JSON (${(e as Error).message})`);
  }
  const d = doc as Partial<LinearityFile>;
  if (!d || typeof d !== "object" || d.format !== LINEARITY_FORMAT) throw new InputError(`${flag} ${file}: not a jacsteer linearity result (format "${LINEARITY_FORMAT}" expected; write one with jacsteer linearity --out)`);
  const n = d.radii?.length ?? 0;
  if (!n || !Array.isArray(d.vectors) || !d.vectors.length) throw new InputError(`${flag} ${file}: no radii or no vectors`);
  d.vectors.forEach((v, i) => {
    if (!Array.isArray(v.ratios) || v.ratios.length !== n) throw new InputError(`${flag} ${file}: vectors[${i}].ratios has ${v.ratios?.length ?? 0} values for ${n} radii`);
  });
  return { file, doc: d as LinearityFile };
}

const esc = escapeXml;

/** The section: one figure and one table per file. `figure` and `table` are the report's own helpers. */
export function linearitySection(
  inputs: readonly LinearityInput[],
  notes: string[],
  helpers: { figure: (svg: string, caption: string) => string; table: (head: string[], rows: string[][], numeric: (c: number) => boolean) => string; width: number },
): { html: string; figures: number } {
  let html = `<section id="linearity"><h2>Linear regime: how far the Jacobian describes each direction</h2>`;
  let figures = 0;
  inputs.forEach(({ file, doc }, k) => {
    html += `<h3>${k + 1}. ${esc(file)}</h3>`;
    const series: Series[] = doc.vectors.map((v) => ({
      label: `row ${v.row}: ratio ${doc.target_ratio} at r = ${v.radius_at_target === null ? "–" : formatNumber(v.radius_at_target)}`,
      points: doc.radii.map((r, i) => ({ x: Math.log10(r), y: v.ratios[i]! })),
    }));
    const plot = linePlot({
      title: "||Δ(r v) − r J v|| / ||r J v|| against the radius r",
      xLabel: "log10 r (norm of the steering vector added at layer S)",
      yLabel: "ratio (log scale)",
      series,
      logY: true,
      hLines: [{ y: doc.target_ratio, label: `target ratio ${doc.target_ratio}`, color: "#666666", dash: "6 4" }],
      width: helpers.width,
      description: `ratio of the nonlinear remainder to the linear part against log10 of the radius, one line per direction (${series.length})`,
    });
    figures++;
    if (plot.dropped) notes.push(`${file}: ${plot.dropped} point(s) left out of the linearity plot (not finite or not positive).`);
    html += helpers.figure(
      plot.svg,
      `Layer ${doc.source_layer} → ${doc.target_layer}, positions ${esc(doc.positions)}, ${doc.tokens.length} prompt(s), model ${esc(doc.model)}; median layer-${doc.source_layer} norm ${formatNumber(doc.median_source_norm)}. ` +
        `Below the dashed line the Jacobian's prediction r J v is the larger part of the change; the crossing is interpolated on log-log axes.`,
    );
    const rows = doc.vectors.map((v) => [
      String(v.row),
      formatNumber(v.jv_norm),
      v.radius_at_target === null ? (v.status === "below-range" ? `< ${formatNumber(doc.radii[0]!)}` : v.status === "not-reached" ? `> ${formatNumber(doc.radii.at(-1)!)}` : "undefined") : formatNumber(v.radius_at_target),
      v.radius_at_target_fraction === null ? "–" : formatNumber(v.radius_at_target_fraction, 3),
      v.non_monotone ? "yes" : "no",
    ]);
    html += helpers.table(["row", "||J v||", `radius at ratio ${doc.target_ratio}`, "× median norm", "ratio falls somewhere"], rows, (c) => c > 0 && c < 4);
  });
  return { html: html + "</section>", figures };
}
