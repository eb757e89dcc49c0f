// Shared by the report tests: real outputs of the other commands (the built CLI on the bundled tiny
// model), the self-containment check of a page, and headless Chromium.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "vitest";

export const ROOT = process.cwd();
const BIN = join(ROOT, "bin", "jacsteer.js");
export const AB_DATASET = join(ROOT, "examples", "ab-dataset.json");

export function jacsteer(args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8", timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

export function tempDir(prefix: string): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

function ok(args: string[]) {
  const r = jacsteer(args);
  if (r.code !== 0) throw new Error(`jacsteer ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
  return r;
}

export interface Runs {
  dir: string;
  /** power-iter at sv = 0 */
  sv0: string;
  /** power-iter at the steered point sv0 = 4 * (row 0 of sv0) */
  steered: string;
  melbo: string;
  /** eval-ab --out rows and --json summary (absent without examples/ab-dataset.json) */
  abRows?: string;
  abSummary?: string;
  json: { sv0: { singular_values: number[] }; steered: { singular_values: number[] } };
}

/** Real inputs for a report: power iteration twice (sv = 0 and a steered point), MELBO, eval-ab. About 3 s. */
export function makeRuns(dir: string): Runs {
  const prompt = ["--prompt", "The cat sat on the mat"];
  const site = ["--source-layer", "1", "--target-layer", "3"];
  const sv0 = join(dir, "sv0.safetensors"), steered = join(dir, "steered.safetensors"), melbo = join(dir, "melbo.safetensors");
  const j0 = JSON.parse(ok(["power-iter", ...prompt, ...site, "--num-vectors", "6", "--max-iters", "400", "--tol", "1e-6", "--out", sv0, "--json"]).stdout);
  const j1 = JSON.parse(ok(["power-iter", ...prompt, ...site, "--num-vectors", "6", "--max-iters", "400", "--tol", "1e-6", "--at", `${sv0}:0`, "--at-scale", "4", "--out", steered, "--json"]).stdout);
  ok(["melbo", ...prompt, ...site, "--num-vectors", "4", "--steps", "60", "--out", melbo]);
  const runs: Runs = { dir, sv0, steered, melbo, json: { sv0: j0, steered: j1 } };
  if (existsSync(AB_DATASET)) {
    runs.abRows = join(dir, "ab-rows.json");
    runs.abSummary = join(dir, "ab-summary.json");
    const r = ok(["eval-ab", "--dataset", AB_DATASET, "--limit", "4", "--vectors", `${sv0}:0`, "--vectors", `${sv0}:1`, "--vectors", `${melbo}:0`, "--scales", "-8,-4,0,4,8", "--out", runs.abRows, "--json"]);
    writeFileSync(runs.abSummary, r.stdout);
  }
  return runs;
}

/**
 * Nothing loads from elsewhere and nothing runs: every "<" in the page starts a real tag (text is
 * escaped), so the tags are checked: no elements that fetch or execute, no src/url()/@import, links
 * only to anchors in the page.
 */
export function expectSelfContained(html: string): void {
  const tags = html.match(/<[^>]*>/g) ?? [];
  expect(tags.length).toBeGreaterThan(10);
  for (const t of tags) {
    expect(t, t).not.toMatch(/^<\/?(script|link|img|iframe|object|embed|base|image|use|foreignObject|audio|video|source)\b/i);
    expect(t, t).not.toMatch(/\s(src|xlink:href|srcset|on\w+)=|url\(|javascript:|https?:/i);
    const href = /\shref="([^"]*)"/.exec(t);
    if (href) expect(href[1].startsWith("#"), t).toBe(true);
  }
  const style = /<style>([\s\S]*?)<\/style>/.exec(html)?.[1] ?? "";
  expect(style).not.toMatch(/url\(|@import|https?:/i);
}

/** Every number in a coordinate-bearing attribute of the SVG elements (x, y, d, transform, ...). */
export function svgCoordinateValues(html: string): string[] {
  return [...html.matchAll(/\s(?:x|y|x1|x2|y1|y2|cx|cy|r|width|height|d|points|transform|viewBox)="([^"]*)"/g)].map((m) => m[1]);
}

// --- headless Chromium -------------------------------------------------------------------------

export const REQUIRE_CHROMIUM = process.env.JACSTEER_REQUIRE_CHROMIUM === "1";

/** Debian's `chromium` (or chromium-browser / google-chrome), or $JACSTEER_CHROMIUM (one lookup for the tests and benches). */
export { findChromiumBinary as findChromium } from "../../bench/browser.js";

/**
 * Screenshot `file` at width x height CSS pixels (device scale 1). --headless is Chromium's new
 * headless mode (the only one since version 132); --no-sandbox because CI runs as root;
 * --hide-scrollbars so the page keeps its full width; a fresh profile each time.
 */
export function screenshot(chromium: string, htmlFile: string, pngFile: string, width: number, height: number): void {
  const profile = mkdtempSync(join(tmpdir(), "jacsteer-chromium-"));
  try {
    const r = spawnSync(
      chromium,
      ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars", "--no-first-run", "--force-device-scale-factor=1", `--user-data-dir=${profile}`, `--window-size=${width},${height}`, `--screenshot=${pngFile}`, `file://${htmlFile}`],
      { encoding: "utf8", timeout: 60_000 },
    );
    if (r.status !== 0 || !existsSync(pngFile)) throw new Error(`${chromium} exited ${r.status} without a screenshot: ${(r.stderr ?? "").split("\n").filter((l) => !/dbus|Fontconfig/.test(l)).slice(-5).join("\n")}`);
  } finally {
    rmSync(profile, { recursive: true, force: true });
  }
}

export function readPng(path: string): Uint8Array {
  return new Uint8Array(readFileSync(path));
}
