// The report's sections for `jacsteer atlas` (heatmaps over layer pairs: sigma_1, the largest KL of any
// vector, the top vector's KL) and `jacsteer stability` (per vector: the best |cos| with each other run,
// the verdict, the bands of near-tied values). Drawn with the report's heatmap; every cell carries an
// SVG <title> with its numbers, and a table below lists them, so nothing needs a click.
import { heatmap } from "./heatmap.js";
import { escapeXml as esc } from "./svg.js";

/** The parts of atlas.json (src/cli/atlas.ts AtlasFile) the report reads. */
export interface AtlasInput {
  file: string;
  model: string;
  num_layers: number;
  complete: boolean;
  planned: number;
  pairs: {
    source: number;
    target: number;
    singular_values: number[];
    converged: boolean;
    products: number;
    max_kl: number;
    best_vector: number;
    top_vector_kl: number;
    kl: { vector: number; magnitude: number; kl_plus: number; kl_minus: number; max_kl: number; sign: number }[];
  }[];
}

/** The parts of a stability file (src/cli/stability.ts StabilityFile) the report reads. */
export interface StabilityInput {
  file: string;
  model: string;
  source_layer: number;
  target_layer: number;
  cos_threshold: number;
  gap_threshold: number;
  runs: { label: string; singular_values: number[]; converged: boolean }[];
  vectors: { index: number; sigma: number; relative_gap: number | null; best_cos: number[][]; min_best_cos: number; status: string; band: number | null }[];
  bands: { first: number; last: number; min_principal_cos: number; reproducible: boolean }[];
  reproducible_count: number;
}

const WIDTH = 900;
const sci = (x: number) => x.toExponential(2);
const fig = (svg: string, caption: string) => `<figure>${svg}<figcaption>${caption}</figcaption></figure>`;

function htmlTable(head: string[], rows: string[][]): string {
  return `<table><thead><tr>${head.map((h) => `<th>${esc(h)}</th>`).join("")}</tr></thead><tbody>${rows.map((r) => `<tr>${r.map((c, i) => `<td${i > 0 ? ' class="num"' : ""}>${esc(c)}</td>`).join("")}</tr>`).join("")}</tbody></table>`;
}

export function atlasSection(atlases: readonly AtlasInput[]): { html: string; figures: number } {
  let html = `<section id="atlas"><h2>Layer-pair atlas</h2>`;
  let figures = 0;
  for (const a of atlases) {
    const sources = [...new Set(a.pairs.map((p) => p.source))].sort((x, y) => x - y);
    const targets = [...new Set(a.pairs.map((p) => p.target))].sort((x, y) => x - y);
    const at = new Map(a.pairs.map((p) => [`${p.source},${p.target}`, p]));
    const grid = <T>(f: (p: AtlasInput["pairs"][number]) => T) => sources.map((s) => targets.map((t) => (at.has(`${s},${t}`) ? f(at.get(`${s},${t}`)!) : null)));
    const titles = grid((p) => `S ${p.source}, T ${p.target}: sigma_1 ${p.singular_values[0].toPrecision(4)}; max KL ${sci(p.max_kl)} (vector ${p.best_vector}); top vector's KL ${sci(p.top_vector_kl)}; ${p.products} products${p.converged ? "" : ", NOT converged"}`);
    for (const s of sources) for (const t of targets) if (!at.has(`${s},${t}`)) titles[sources.indexOf(s)][targets.indexOf(t)] = s >= t ? `S ${s}, T ${t}: no pair (S >= T)` : `S ${s}, T ${t}: not computed yet`;
    const maps: { title: string; values: (number | null)[][]; bar: string; caption: string }[] = [
      { title: "σ₁ of each layer pair", values: grid((p) => p.singular_values[0]), bar: "σ₁", caption: "the largest singular value of J for steering at the output of layer S, read at layer T" },
      { title: "largest KL of any vector", values: grid((p) => p.max_kl), bar: "KL (nats)", caption: "the largest mean KL(steered ‖ unsteered) over the pair's vectors, at the better sign of each" },
      { title: "KL of the top singular vector (vector 0)", values: grid((p) => p.top_vector_kl), bar: "KL (nats)", caption: "the top singular vector's KL at its better sign (compare with the map above: where they differ, a lower vector moves the output more)" },
    ];
    html += `<h3>${esc(a.file)}</h3><p>${esc(a.model)}: ${a.pairs.length} of ${a.planned} pairs${a.complete ? "" : " (incomplete: the atlas is still running or was interrupted)"}. Rows: source layer S; columns: target layer T. Hover a cell for its numbers; the table below lists them.</p>`;
    for (const m of maps) {
      const vals = m.values.flat().filter((v): v is number => v !== null);
      const lo = Math.min(...vals), hi = Math.max(...vals);
      const h = heatmap({ title: m.title, values: m.values, rowLabels: sources.map(String), colLabels: targets.map(String), rowTitle: "source layer S", colTitle: "target layer T", signed: false, colorBarLabel: m.bar, range: { lo, hi, format: (v) => v.toPrecision(3) }, cellTitles: titles, maxWidth: WIDTH, description: `${m.title}: source layer against target layer` });
      html += fig(h.svg, esc(m.caption) + ".");
      figures++;
    }
    const best = [...a.pairs].sort((x, y) => y.max_kl - x.max_kl).slice(0, 10);
    html += `<p>The ten pairs with the largest KL:</p>` + htmlTable(["pair", "σ₁", "max KL", "best vector", "its sign", "top vector's KL", "products", "converged"], best.map((p) => {
      const b = p.kl.find((k) => k.vector === p.best_vector && k.magnitude === p.kl[0].magnitude)!;
      return [`S ${p.source}, T ${p.target}`, p.singular_values[0].toPrecision(4), sci(p.max_kl), String(p.best_vector), b.sign > 0 ? "+" : "−", sci(p.top_vector_kl), String(p.products), p.converged ? "yes" : "no"];
    }));
    html += `<details><summary>Every pair (${a.pairs.length})</summary>` + htmlTable(["pair", "σ₁", "max KL", "best vector", "top vector's KL"], a.pairs.map((p) => [`S ${p.source}, T ${p.target}`, p.singular_values[0].toPrecision(4), sci(p.max_kl), String(p.best_vector), sci(p.top_vector_kl)])) + `</details>`;
  }
  return { html: html + "</section>", figures };
}

export function stabilitySection(inputs: readonly StabilityInput[]): { html: string; figures: number } {
  let html = `<section id="stability"><h2>Stability of the singular vectors</h2>`;
  let figures = 0;
  for (const s of inputs) {
    const R = s.runs.length;
    // Run r's vector i: its smallest best |cos| with any other run.
    const values = s.runs.map((_, r) => s.vectors.map((v) => Math.min(...v.best_cos[r].filter((_, o) => o !== r))));
    const titles = s.runs.map((run, r) => s.vectors.map((v) => `${run.label}, vector ${v.index}: best |cos| with each other run ${v.best_cos[r].filter((_, o) => o !== r).map((c) => c.toFixed(3)).join(", ")}; ${v.status}`));
    const h = heatmap({ title: "Smallest best |cos| with the other runs", values, rowLabels: s.runs.map((r) => r.label), colLabels: s.vectors.map((v) => String(v.index)), rowTitle: "run", colTitle: "singular vector i", signed: false, colorBarLabel: "|cos|", cellTitles: titles, maxWidth: WIDTH, highlight: s.vectors.flatMap((v) => (v.status === "not reproducible" ? [] : s.runs.map((_, r) => ({ row: r, col: v.index })))) });
    figures++;
    html += `<h3>${esc(s.file)}</h3><p>${esc(s.model)}, S ${s.source_layer}, T ${s.target_layer}: ${R} runs; ${s.reproducible_count} of ${s.vectors.length} vectors reproducible (alone or within a reproducible band). A vector is reproducible when every other run has a vector with |cos| ≥ ${s.cos_threshold} with it; values within a relative gap of ${s.gap_threshold} form a band, reproducible when every principal angle between two runs' band subspaces has cos ≥ ${s.cos_threshold}.</p>`;
    html += fig(h.svg, "Each cell: the run's vector i against its best match in every other run, the smallest of those |cos|. Outlined: reproducible vectors and the vectors of reproducible bands.");
    html += htmlTable(["i", "σ (mean)", "gap to next", "min best |cos|", "verdict"], s.vectors.map((v) => [String(v.index), v.sigma.toPrecision(5), v.relative_gap === null ? "–" : v.relative_gap.toFixed(4), v.min_best_cos.toFixed(4), v.status + (v.band === null ? "" : ` (band ${s.bands[v.band].first}–${s.bands[v.band].last})`)]));
    if (s.bands.length) html += `<p>Near-tied bands:</p>` + htmlTable(["band", "smallest principal cos", "reproducible"], s.bands.map((b) => [`${b.first}–${b.last}`, b.min_principal_cos.toFixed(4), b.reproducible ? "yes" : "no"]));
    const unconverged = s.runs.filter((r) => !r.converged).map((r) => r.label);
    if (unconverged.length) html += `<p class="note">Not converged: ${esc(unconverged.join("; "))}: differences may be solver error, not instability.</p>`;
  }
  return { html: html + "</section>", figures };
}
