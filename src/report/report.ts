// The `jacsteer report` page: one self-contained HTML document (inline CSS, inline SVG, no scripts, no
// external resources) with what was run and a section per kind of input:
//   - singular spectra (sigma_i against i) of power-iteration results, and for exactly two of them
//     (typically sv = 0 and a steered point) how the spectrum and the top subspace move;
//   - cosine heatmaps between two vector sets (e.g. MELBO vectors against singular vectors);
//   - A/B logit difference against steering scale, one line per vector.
// Everything here is platform-neutral: the CLI (src/cli/report.ts) reads the files and writes the page.
import { atlasSection, stabilitySection, type AtlasInput, type StabilityInput } from "./atlas-stability.js";
import type { VectorSet } from "../io/vector-file.js";
import { InputError } from "../model/qwen3.js";
import { compareVectorSets, orthonormalBasis, principalAngles } from "../compare/compare.js";
import { compareRuns } from "../verify/verify.js";
import { abKey, type AbInput } from "./ab-input.js";
import { heatmap } from "./heatmap.js";
import { linePlot, type Series } from "./plot.js";
import { formatNumber } from "./scale.js";
import { escapeXml } from "./svg.js";
import { linearitySection, type LinearityInput } from "./linearity.js";

export interface SpectrumInput {
  label: string;
  /** the file as named on the command line */
  file: string;
  set: VectorSet;
  /** FILE:ROW: only these rows' singular values (at their own index i); absent: every row */
  rows?: number[];
}

export interface VectorSetSelection {
  /** as given on the command line: FILE or FILE:ROW */
  name: string;
  file: string;
  /** file rows used */
  rows: number[];
  /** the whole file */
  set: VectorSet;
}

export interface CosinePair {
  a: VectorSetSelection;
  b: VectorSetSelection;
}

export interface ReportInput {
  title: string;
  version: string;
  /** ISO time; left out for reproducible output */
  generatedAt?: string;
  /** the command line, shown verbatim */
  command?: string;
  spectra: SpectrumInput[];
  logSpectrum?: boolean;
  cosines: CosinePair[];
  /** signed cosines on a diverging scale instead of |cos| */
  signed?: boolean;
  ab: AbInput[];
  /** `jacsteer atlas` merged files and `jacsteer stability` results (report/atlas-stability.ts) */
  atlas?: AtlasInput[];
  stability?: StabilityInput[];
  /** linearity results (jacsteer linearity --out) */
  linearity?: LinearityInput[];
}

export interface RenderedReport {
  html: string;
  /** number of <svg> figures */
  figures: number;
  /** things a reader should know (points left out, runs that differ) */
  notes: string[];
}

const PAGE_WIDTH = 900;
const HALF_WIDTH = 446;
const deg = (r: number) => (r * 180) / Math.PI;
/** Angles in degrees with two decimals: a tenth of a degree matters when vectors nearly agree. */
const fmtDeg = (d: number) => (Number.isFinite(d) ? d.toFixed(2) : "–");
const esc = escapeXml;
const basename = (p: string) => p.split(/[\\/]/).pop() ?? p;

/** A default legend label for a spectrum file: where J was evaluated. */
export function spectrumLabel(file: string, meta: Record<string, string>): string {
  const point = meta.at ? `at ${basename(meta.at)} × ${meta.at_scale || "1"}` : "at sv = 0";
  return `${basename(file)} (${point})`;
}

function td(v: string, num = false): string {
  return num ? `<td class="num">${esc(v)}</td>` : `<td>${esc(v)}</td>`;
}

/** A path that may break after each slash (and nowhere else) when the column is narrow. */
function pathCell(p: string): string {
  return `<td class="path">${esc(p).replace(/([\\/])/g, "$1<wbr>")}</td>`;
}

function table(head: string[], rows: string[][], numeric: (col: number) => boolean, cls = ""): string {
  return (
    `<table${cls ? ` class="${cls}"` : ""}><thead><tr>${head.map((h, i) => `<th${numeric(i) ? ' class="num"' : ""}>${esc(h)}</th>`).join("")}</tr></thead>` +
    `<tbody>${rows.map((r) => `<tr>${r.map((c, i) => td(c, numeric(i))).join("")}</tr>`).join("")}</tbody></table>`
  );
}

function figure(svg: string, caption: string): string {
  return `<figure>${svg}<figcaption>${caption}</figcaption></figure>`;
}

/** Steering site and target: "S 1 → T 3, last 4 positions". */
function site(meta: Record<string, string>): string {
  const s = meta.source_layer, t = meta.target_layer, p = meta.positions;
  const layers = s && t ? `S ${s} → T ${t}` : s ? `S ${s}` : "";
  const positions = !p ? "" : /^\d+$/.test(p) ? `last ${p} position${p === "1" ? "" : "s"}` : `positions ${p}`;
  const weights = meta.position_weights ? ` (weights ${meta.position_weights})` : "";
  return [layers, positions + weights].filter(Boolean).join(", ") || "–";
}

function promptCount(meta: Record<string, string>): string {
  if (!meta.tokens) return "";
  try {
    const t = JSON.parse(meta.tokens);
    if (Array.isArray(t)) return `${t.length} prompt(s) of ${t.map((p: unknown[]) => (Array.isArray(p) ? p.length : "?")).join(", ")} tokens`;
  } catch {
    /* not JSON: no count */
  }
  return "";
}

function runSummary(meta: Record<string, string>): string {
  const m = meta.method ?? "";
  const parts: string[] = [];
  if (m.startsWith("power-iter")) {
    if (meta.iterations) parts.push(`${meta.iterations} iterations, ${meta.converged === "true" ? "converged" : "NOT converged"}`);
    if (meta.init) parts.push(`init ${meta.init}`);
  } else if (m === "melbo") {
    if (meta.radius) parts.push(`radius ${formatNumber(Number(meta.radius))}`);
    if (meta.steps) parts.push(`${meta.steps} steps, lr ${meta.lr}, p ${meta.p}, q ${meta.q}`);
  } else if (m === "caa") {
    if (meta.pair_count) parts.push(`${meta.pair_count} pairs${meta.pairs_file ? ` from ${basename(meta.pairs_file)}` : ""}`);
    if (meta.normalize === "true") parts.push("normalised");
  }
  const prompts = promptCount(meta);
  if (prompts) parts.push(prompts);
  if (meta.chat === "true") parts.push("chat template");
  return parts.join("; ");
}

function inputsTable(input: ReportInput): string {
  const rows: string[] = [];
  const row = (role: string, file: string, cells: string[]) => rows.push(`<tr>${td(role)}${pathCell(file)}${cells.map((c) => td(c)).join("")}</tr>`);
  const vectorRow = (role: string, name: string, set: VectorSet) => {
    const meta = set.metadata;
    const point = meta.method?.startsWith("power-iter") ? (meta.at ? `${meta.at} × ${meta.at_scale || "1"}` : "sv = 0") : "–";
    row(role, name, [meta.method ?? "?", meta.model ?? "?", site(meta), point, `${set.vectors.length} × ${set.vectors[0]?.length ?? 0}`, runSummary(meta)]);
  };
  input.spectra.forEach((s) => vectorRow(`spectrum “${s.label}”`, s.file, s.set));
  input.cosines.forEach((c, i) => {
    vectorRow(`cosine ${i + 1}: A`, c.a.name, c.a.set);
    vectorRow(`cosine ${i + 1}: B`, c.b.name, c.b.set);
  });
  input.ab.forEach((a) => {
    const vectors = a.summary.linearity.length;
    const scales = new Set(a.summary.rows.map((r) => r.scale)).size;
    row(`A/B (${a.kind === "rows" ? "--out rows" : "--json summary"})`, a.file, [
      "eval-ab",
      a.meta.model ?? "?",
      `${a.meta.layer === null || a.meta.layer === undefined ? "" : `S ${a.meta.layer}, `}last position (answer letter)`,
      "–",
      `${vectors} vector(s) × ${scales} scale(s)`,
      [a.meta.questions !== undefined ? `${a.meta.questions} questions` : "", a.meta.dataset ? `from ${a.meta.dataset}` : "", a.meta.chat ? "chat template" : ""].filter(Boolean).join(" "),
    ]);
  });
  input.atlas?.forEach((a) => row("atlas", a.file, ["atlas", a.model, `${a.pairs.length} of ${a.planned} layer pairs`, "sv = 0", "per pair", a.complete ? "complete" : "incomplete"]));
  input.stability?.forEach((st) => row("stability", st.file, ["stability", st.model, `S ${st.source_layer}, T ${st.target_layer}`, "sv = 0", `${st.vectors.length} per run`, `${st.runs.length} runs`]));
  input.linearity?.forEach((l) => {
    const d = l.doc;
    row("linearity", l.file, [`linearity of ${d.method ?? "?"} vectors`, d.model, `S ${d.source_layer} → T ${d.target_layer}, positions ${d.positions}`, "sv = 0", `${d.vectors.length} vector(s) × ${d.radii.length} radii`, `${d.file}, ${d.tokens.length} prompt(s)`]);
  });
  const head = ["input", "file", "method", "model", "site", "Jacobian point", "vectors", "run"];
  return `<table class="files"><thead><tr>${head.map((h) => `<th>${esc(h)}</th>`).join("")}</tr></thead><tbody>${rows.join("")}</tbody></table>`;
}

function spectraSection(input: ReportInput, notes: string[]): { html: string; figures: number } {
  const spectra = input.spectra;
  const shown = (s: SpectrumInput) => s.rows ?? s.set.singularValues!.map((_, i) => i);
  const series: Series[] = spectra.map((s) => ({ label: s.label, points: shown(s).map((i) => ({ x: i, y: s.set.singularValues![i] })) }));
  const plot = linePlot({
    title: "Singular values of the steering Jacobian",
    xLabel: "i (row in the vector file)",
    yLabel: input.logSpectrum ? "σᵢ (log scale)" : "σᵢ",
    series,
    integerX: true,
    logY: !!input.logSpectrum,
    yInclude: input.logSpectrum ? [] : [0],
    legend: true,
    width: PAGE_WIDTH,
    description: `singular values sigma_i against i for ${spectra.length} run(s)`,
  });
  if (plot.dropped) notes.push(`Singular spectra: ${plot.dropped} value(s) left out (not finite${input.logSpectrum ? ", or not positive on the log scale" : ""}).`);
  const n = Math.max(...spectra.map((s) => s.set.singularValues!.length));
  const listed = Array.from({ length: n }, (_, i) => i).filter((i) => spectra.some((s) => shown(s).includes(i)));
  // Runs are numbered in the table headers (labels can be long); the key comes above the table.
  const head = ["i", ...spectra.flatMap((_, k) => [`σ (${k + 1})`, `residual (${k + 1})`])];
  const rows = listed.map((i) => [String(i), ...spectra.flatMap((s) => (shown(s).includes(i) ? [formatNumber(s.set.singularValues![i], 6), formatNumber(s.set.residuals?.[i])] : ["–", "–"]))]);
  const unconverged = spectra.filter((s) => s.set.metadata.converged === "false").map((s) => s.label);
  let html = `<section id="spectra"><h2>Singular spectra</h2>`;
  html += figure(plot.svg, `σ<sub>i</sub> = ‖J v<sub>i</sub>‖ of each run, in descending order. Residuals ‖JᵀJ v − σ² v‖ certify convergence of each pair.${unconverged.length ? ` <strong>Not converged:</strong> ${esc(unconverged.join(", "))}.` : ""}`);
  html += runKey(spectra) + table(head, rows, (c) => c > 0);
  let figures = 1;
  if (spectra.length === 2 && spectra.some((s) => s.rows)) {
    const msg = "No spectrum comparison: it needs the whole spectrum of both runs (a FILE:ROW spectrum shows only that row).";
    notes.push(msg);
    html += `<p class="note">${esc(msg)}</p>`;
  } else if (spectra.length === 2) {
    const cmp = spectrumComparison(spectra[0], spectra[1], notes);
    html += cmp.html;
    figures += cmp.figures;
  }
  return { html: html + "</section>", figures };
}

export interface SpectrumComparison {
  /** pairs compared: min of the two counts */
  n: number;
  /** 100 (sigma'_i - sigma_i) / sigma_i */
  relChangePercent: number[];
  /** present when the vectors have the same length */
  subspace?: {
    /** |cos(v_i, v'_i)|, vector by vector */
    pairAbsCos: number[];
    /** principal angles between span(v_0..v_{n-1}) and span(v'_0..v'_{n-1}), degrees, ascending */
    principalAnglesDeg: number[];
    /** [k-1]: the largest principal angle between the top-k subspaces, degrees */
    topKMaxAngleDeg: number[];
  };
}

/**
 * Issue 6 item 3: how the spectrum and the top subspace move between two points (sv = 0 and a steered
 * one). Individual vectors are a poor measure where sigmas are nearly tied (they may swap or mix), so
 * the subspaces are compared too.
 */
export function compareSpectra(a: VectorSet, b: VectorSet): SpectrumComparison {
  const sa = a.singularValues, sb = b.singularValues;
  if (!sa || !sb) throw new Error("compareSpectra: both sets need singular values");
  const n = Math.min(sa.length, sb.length);
  const relChangePercent = Array.from({ length: n }, (_, i) => ((sb[i] - sa[i]) / sa[i]) * 100);
  if (a.vectors[0].length !== b.vectors[0].length) return { n, relChangePercent };
  const va = a.vectors.slice(0, n), vb = b.vectors.slice(0, n);
  const angles = (k: number) => principalAngles(orthonormalBasis(va.slice(0, k)), orthonormalBasis(vb.slice(0, k))).angles.map(deg);
  return {
    n,
    relChangePercent,
    subspace: {
      pairAbsCos: va.map((v, i) => Math.abs(cosine(v, vb[i]))),
      principalAnglesDeg: angles(n),
      topKMaxAngleDeg: Array.from({ length: n }, (_, k) => {
        const t = angles(k + 1);
        return t.length ? Math.max(...t) : NaN;
      }),
    },
  };
}

function spectrumComparison(a: SpectrumInput, b: SpectrumInput, notes: string[]): { html: string; figures: number } {
  const sa = a.set.singularValues!, sb = b.set.singularValues!;
  const n = Math.min(sa.length, sb.length);
  let html = `<h3 id="spectrum-comparison">How the spectrum and the top subspace move: “${esc(a.label)}” → “${esc(b.label)}”</h3>`;
  const differ = compareRuns(a.set.metadata, b.set.metadata, ["model_config", "source_layer", "target_layer", "positions", "tokens"]);
  if (differ.length) {
    const msg = `The two spectrum runs differ in ${differ.map((d) => d.key).join(", ")}, not only in the Jacobian point: the comparison mixes both changes.`;
    notes.push(msg);
    html += `<p class="note">${esc(msg)}</p>`;
  }
  const cmp = compareSpectra(a.set, b.set);
  const rel = cmp.relChangePercent;
  const sameSpace = cmp.subspace !== undefined;
  let figures = 0;
  const relPlot = linePlot({
    title: "Relative change of each singular value",
    xLabel: "i",
    yLabel: "(σᵢ′ − σᵢ) / σᵢ  [%]",
    series: [{ label: `${b.label} vs ${a.label}`, points: rel.map((y, i) => ({ x: i, y })) }],
    integerX: true,
    yInclude: [0],
    legend: false,
    width: sameSpace ? HALF_WIDTH : PAGE_WIDTH,
    plotHeight: 260,
    description: "relative change of sigma_i in percent against i",
  });
  figures++;
  let anglePlotSvg = "";
  const angles = cmp.subspace?.principalAnglesDeg ?? [];
  const pairCos = cmp.subspace?.pairAbsCos ?? [];
  const topK = cmp.subspace?.topKMaxAngleDeg ?? [];
  if (sameSpace) {
    const anglePlot = linePlot({
      title: "Movement of the top-k singular subspace",
      xLabel: "k (subspace of v₀ … vₖ₋₁)",
      yLabel: "largest principal angle [°]",
      series: [{ label: "largest angle between the top-k subspaces", points: topK.map((y, k) => ({ x: k + 1, y })) }],
      integerX: true,
      yTicks: [0, 15, 30, 45, 60, 75, 90],
      legend: false,
      width: HALF_WIDTH,
      plotHeight: 260,
      description: "largest principal angle in degrees between the top-k singular subspaces of the two runs, against k",
    });
    anglePlotSvg = anglePlot.svg;
    figures++;
  } else {
    const msg = `“${a.label}” and “${b.label}” have vectors of different lengths: no subspace comparison.`;
    notes.push(msg);
    html += `<p class="note">${esc(msg)}</p>`;
  }
  html += `<div class="side-by-side">${figure(relPlot.svg, `Relative change of σ<sub>i</sub> from “${esc(a.label)}” to “${esc(b.label)}”; positive: σ<sub>i</sub> grows at the second point.`)}${anglePlotSvg ? figure(anglePlotSvg, "0°: the top-k subspace is unchanged; 90°: some direction of it became orthogonal to the old one. Nearly equal σ's may swap their vectors without moving the subspace they span.") : ""}</div>`;
  const head = ["i", "σ (1)", "σ (2)", "Δσ/σ [%]", ...(sameSpace ? ["|cos(vᵢ, vᵢ′)|", "principal angle θᵢ [°]"] : [])];
  const rows = Array.from({ length: n }, (_, i) => [
    String(i),
    formatNumber(sa[i], 6),
    formatNumber(sb[i], 6),
    formatNumber(rel[i], 3),
    ...(sameSpace ? [formatNumber(pairCos[i], 4), i < angles.length ? fmtDeg(angles[i]) : "–"] : []),
  ]);
  html += runKey([a, b]) + table(head, rows, (c) => c > 0);
  if (sameSpace) html += `<p>Principal angles θ between span(v<sub>0</sub> … v<sub>${n - 1}</sub>) at the two points, ascending: the columns are the angles, not per-vector values.</p>`;
  return { html, figures };
}

/** "(1) label — file; (2) ...": the key to numbered table columns. */
function runKey(spectra: SpectrumInput[]): string {
  return `<p class="key">${spectra.map((s, k) => `(${k + 1}) ${esc(s.label)} — <code>${esc(s.file)}</code>`).join("; ")}</p>`;
}

function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let ab = 0, aa = 0, bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  return ab / Math.sqrt(aa * bb);
}

function setTitle(which: string, s: VectorSetSelection): string {
  return `${which}: ${basename(s.name)}${s.set.metadata.method ? ` (${s.set.metadata.method})` : ""}`;
}

function cosineSection(input: ReportInput): { html: string; figures: number } {
  let html = `<section id="cosines"><h2>Cosine similarities</h2>`;
  input.cosines.forEach((pair, p) => {
    const A = pair.a.rows.map((r) => pair.a.set.vectors[r]);
    const B = pair.b.rows.map((r) => pair.b.set.vectors[r]);
    if (A[0].length !== B[0].length) throw new InputError(`--cosine ${pair.a.name} ${pair.b.name}: vectors of length ${A[0].length} and ${B[0].length} (different hidden sizes)`);
    const res = compareVectorSets(A, B, { a: (i) => `--cosine A ${pair.a.file}:${pair.a.rows[i]}`, b: (j) => `--cosine B ${pair.b.file}:${pair.b.rows[j]}` });
    const svA = pair.a.set.singularValues;
    const rowLabels = pair.a.rows.map((r) => (svA ? `${r} (σ ${formatNumber(svA[r], 3)})` : String(r)));
    const colLabels = pair.b.rows.map(String);
    const map = heatmap({
      title: `${input.signed ? "cos" : "|cos|"} between A and B`,
      values: res.cosines.map((row) => row.map((c) => (input.signed ? c : Math.abs(c)))),
      rowLabels,
      colLabels,
      rowTitle: setTitle("A", pair.a),
      colTitle: setTitle("B", pair.b),
      signed: !!input.signed,
      colorBarLabel: input.signed ? "cosine" : "|cosine|",
      highlight: res.bestMatches.map((m) => ({ row: m.a, col: m.b })),
      maxWidth: PAGE_WIDTH,
      description: `${input.signed ? "signed" : "absolute"} cosine similarity between ${pair.a.name} (rows) and ${pair.b.name} (columns)`,
    });
    html += `<h3>${p + 1}. ${esc(pair.a.name)} (A, rows) vs ${esc(pair.b.name)} (B, columns)</h3>`;
    html += figure(map.svg, `${input.signed ? "Signed cosines (blue negative, red positive)" : "Absolute cosines (singular vectors have no preferred sign)"}; outlined: the best match in B of each vector of A. Row labels are file rows${svA ? " with their singular values" : ""}.`);
    const best = res.bestMatches.map((m) => [String(pair.a.rows[m.a]), String(pair.b.rows[m.b]), formatNumber(Math.abs(m.cos), 4), m.cos >= 0 ? "+" : "−", fmtDeg(deg(Math.acos(Math.min(1, Math.abs(m.cos)))))]);
    html += `<h4>Best match in B for each vector of A</h4>` + table(["A row", "B row", "|cos|", "sign", "angle [°]"], best, (c) => c !== 3);
    html += `<p>Principal angles between span(A) (rank ${res.rankA}) and span(B) (rank ${res.rankB}), degrees: ${res.principalAngles.map((t) => fmtDeg(deg(t))).join(", ")}.</p>`;
  });
  return { html: html + "</section>", figures: input.cosines.length };
}

function abSection(input: ReportInput, notes: string[]): { html: string; figures: number } {
  let html = `<section id="ab"><h2>A/B evaluation: logit difference against steering scale</h2>`;
  let figures = 0;
  input.ab.forEach((ab, k) => {
    const s = ab.summary;
    html += `<h3>${k + 1}. ${esc(ab.file)}</h3>`;
    const series: Series[] = s.linearity.map((l) => {
      const rows = s.rows.filter((r) => r.vector_index === l.vector_index).sort((x, y) => x.scale - y.scale);
      const fit = l.slope === null ? "no fit (one scale)" : `slope ${formatNumber(l.slope)} per unit scale, R² ${formatNumber(l.r2)}`;
      return {
        // File names without their directories: the table below has the full names.
        label: `${l.vector_index}: ${basename(l.vector)} — ${fit}`,
        points: rows.map((r) => ({ x: r.scale, y: r.mean_diff, err: ab.standardErrors?.get(abKey(l.vector_index, r.scale)) })),
      };
    });
    if (!series.length) {
      html += `<p>Unsteered only (no vectors): mean logit difference ${formatNumber(s.baseline.mean_diff)} over ${s.baseline.n} questions; ${formatNumber(s.baseline.share_matching * 100, 3)}% prefer the matching letter.</p>`;
      return;
    }
    const plot = linePlot({
      title: "Mean logit(matching) − logit(other) against scale",
      xLabel: "steering scale (vector × scale added at layer S)",
      yLabel: "mean logit difference",
      series,
      hLines: [{ y: s.baseline.mean_diff, label: `unsteered: ${formatNumber(s.baseline.mean_diff)}`, color: "#666666", dash: "6 4" }],
      yInclude: [0],
      width: PAGE_WIDTH,
      description: `mean logit difference between the matching and the other answer letter against steering scale, one line per vector (${series.length})`,
    });
    figures++;
    if (plot.dropped) notes.push(`${ab.file}: ${plot.dropped} point(s) left out (not finite).`);
    const questions = ab.meta.questions ?? s.baseline.n;
    html += figure(
      plot.svg,
      `Mean over ${questions} question(s)${ab.meta.dataset ? ` of ${esc(ab.meta.dataset)}` : ""} of the logit difference between the answer letter matching the behaviour and the other letter, at the last prompt position. ` +
        (ab.kind === "rows" ? "Error bars: ±1 standard error over questions. " : "") +
        "Legend: least-squares fit of the mean difference against scale.",
    );
    const se = (vi: number, scale: number) => ab.standardErrors?.get(abKey(vi, scale));
    const rows = [s.baseline, ...s.rows].map((r) => [
      r.vector_index === null ? "(unsteered)" : `${r.vector_index}: ${r.vector}`,
      r.vector_index === null ? "–" : String(r.scale),
      String(r.n),
      formatNumber(r.share_matching, 3),
      formatNumber(r.share_other, 3),
      formatNumber(r.mean_diff) + (r.vector_index !== null && se(r.vector_index, r.scale) !== undefined ? ` ± ${formatNumber(se(r.vector_index, r.scale)!, 2)}` : ""),
      formatNumber(r.mean_shift),
      formatNumber(r.mean_p_matching, 3),
    ]);
    html += table(["vector", "scale", "n", "share matching", "share other", "mean diff", "mean shift", "mean p(matching)"], rows, (c) => c > 0);
  });
  return { html: html + "</section>", figures };
}

const CSS = `
*{box-sizing:border-box}
body{font:15px/1.45 "DejaVu Sans",Helvetica,Arial,sans-serif;color:#222;background:#fff;max-width:1000px;margin:24px auto;padding:0 24px}
h1{font-size:25px;margin:0 0 6px}
h2{font-size:20px;border-bottom:1px solid #ddd;padding-bottom:4px;margin:36px 0 12px}
h3{font-size:16.5px;margin:24px 0 8px;overflow-wrap:anywhere}
h4{font-size:15px;margin:14px 0 4px}
p{max-width:900px}
.meta{color:#555;margin:0 0 12px}
table{border-collapse:collapse;font-size:13.5px;margin:8px 0 16px}
th,td{padding:3px 10px;border-bottom:1px solid #e5e5e5;text-align:left;vertical-align:top}
th{background:#f3f3f3;font-weight:600}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
th.num{white-space:normal}
table.files td{overflow-wrap:break-word}
table.files{width:100%}
figure{margin:12px 0 18px}
figcaption{font-size:13.5px;color:#444;max-width:900px;margin-top:4px}
svg{max-width:100%;height:auto;display:block}
code{font-family:"DejaVu Sans Mono",monospace;font-size:13px;background:#f3f3f3;padding:1px 4px;overflow-wrap:anywhere}
.key{font-size:13.5px;margin:8px 0 0}
.note{background:#fff6e0;border-left:4px solid #E69F00;padding:6px 10px}
.side-by-side{display:flex;flex-wrap:wrap;gap:8px}
.side-by-side figure{flex:0 1 ${HALF_WIDTH}px;margin:12px 0}
nav ul{margin:4px 0;padding-left:20px}
`;

/** The whole page. */
export function renderReport(input: ReportInput): RenderedReport {
  const notes: string[] = [];
  for (const s of input.spectra) {
    if (!s.set.singularValues) throw new InputError(`--spectrum ${s.file}: no singular_values (method ${s.set.metadata.method ?? "unknown"}): only power-iter results have a spectrum`);
  }
  const sections: { id: string; title: string; html: string; figures: number }[] = [];
  if (input.spectra.length) sections.push({ id: "spectra", title: "Singular spectra", ...spectraSection(input, notes) });
  if (input.cosines.length) sections.push({ id: "cosines", title: "Cosine similarities", ...cosineSection(input) });
  if (input.ab.length) sections.push({ id: "ab", title: "A/B evaluation", ...abSection(input, notes) });
  if (input.atlas?.length) sections.push({ id: "atlas", title: "Layer-pair atlas", ...atlasSection(input.atlas) });
  if (input.stability?.length) sections.push({ id: "stability", title: "Stability of the singular vectors", ...stabilitySection(input.stability) });
  if (input.linearity?.length) sections.push({ id: "linearity", title: "Linear regime", ...linearitySection(input.linearity, notes, { figure, table, width: PAGE_WIDTH }) });
  const figures = sections.reduce((s, x) => s + x.figures, 0);

  const head =
    `<header><h1>${esc(input.title)}</h1>` +
    `<p class="meta">jacsteer ${esc(input.version)}${input.generatedAt ? ` · generated ${esc(input.generatedAt)}` : ""}</p>` +
    (input.command ? `<p>Command: <code>${esc(input.command)}</code></p>` : "") +
    `</header>`;
  const nav = sections.length > 1 ? `<nav><ul>${sections.map((s) => `<li><a href="#${s.id}">${esc(s.title)}</a></li>`).join("")}</ul></nav>` : "";
  const inputs = `<section id="inputs"><h2>What was run</h2>${inputsTable(input)}</section>`;
  const notesHtml = notes.length ? `<section id="notes"><h2>Notes</h2><ul>${notes.map((n) => `<li>${esc(n)}</li>`).join("")}</ul></section>` : "";
  const html =
    `<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">` +
    `<meta name="generator" content="jacsteer ${esc(input.version)}"><title>${esc(input.title)}</title><style>${CSS}</style></head>\n<body>\n` +
    head + nav + inputs + sections.map((s) => s.html).join("\n") + notesHtml +
    `\n</body></html>\n`;
  return { html, figures, notes };
}
