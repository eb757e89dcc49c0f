// `jacsteer report` end to end on real outputs of the other commands (built CLI in dist/: run
// `npx tsc -p tsconfig.build.json` first): the page's structure and numbers, and bad inputs (exit 1,
// one line naming the flag and file, no --out file left behind).
import { existsSync, readFileSync, writeFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectSelfContained, jacsteer, makeRuns, svgCoordinateValues, tempDir, type Runs } from "./fixtures.js";

const work = tempDir("jacsteer-report-cli-");
afterAll(() => work.remove());
let runs: Runs;
beforeAll(() => {
  runs = makeRuns(work.dir);
});

const count = (s: string, re: RegExp) => (s.match(re) ?? []).length;
/** The cells of the table that follows `heading` (text of <td>s, row by row). */
function tableAfter(html: string, heading: RegExp): string[][] {
  const at = html.search(heading);
  expect(at, `heading ${heading}`).toBeGreaterThan(0);
  const table = /<table>[\s\S]*?<\/table>/.exec(html.slice(at))![0];
  return [...table.matchAll(/<tr>([\s\S]*?)<\/tr>/g)].map((r) => [...r[1].matchAll(/<td[^>]*>([\s\S]*?)<\/td>/g)].map((c) => c[1])).filter((r) => r.length);
}

describe("jacsteer report", () => {
  it("writes one self-contained page from power-iter (sv = 0 and steered), MELBO, compare and eval-ab outputs", () => {
    const out = join(work.dir, "report.html");
    const args = ["report", "--out", out, "--title", "Tiny <model> & steering", "--spectrum", `${runs.sv0}:sv = 0`, "--spectrum", `${runs.steered}:steered (4 x v0)`, "--cosine", runs.melbo, runs.sv0];
    if (runs.abRows) args.push("--ab", runs.abRows, "--ab", runs.abSummary!);
    const r = jacsteer(args);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(/wrote .*report\.html \(\d+ figure\(s\)/);
    const html = readFileSync(out, "utf8");
    // spectra; relative change and top-k angles (two spectra); one heatmap; one plot per A/B file
    const expected = 1 + 2 + 1 + (runs.abRows ? 2 : 0);
    expect(count(html, /<svg /g)).toBe(expected);
    expect(r.stderr).toContain(`(${expected} figure(s)`);
    expectSelfContained(html);
    expect(html).not.toMatch(/NaN|Infinity|undefined|\[object/);
    for (const v of svgCoordinateValues(html)) expect(v).toMatch(/^[-\d. a-zA-Z(),]*$/);
    // header: title (escaped), version, what was run
    const version = JSON.parse(readFileSync(join(process.cwd(), "package.json"), "utf8")).version;
    expect(html).toContain("<h1>Tiny &lt;model&gt; &amp; steering</h1>");
    expect(html).toContain(`jacsteer ${version}`);
    expect(html).toContain("power-iter/lanczos");
    expect(html).toContain("melbo");
    expect(html).toContain("S 1 → T 3, last 4 positions");
    expect(html).toContain(`${runs.sv0}:0 × 4`); // the steered run's Jacobian point
    // axis labels
    for (const label of ["i (row in the vector file)", "σᵢ", "(σᵢ′ − σᵢ) / σᵢ  [%]", "largest principal angle [°]", "|cosine|"]) expect(html).toContain(label);
    if (runs.abRows) for (const label of ["steering scale (vector × scale added at layer S)", "mean logit difference"]) expect(html).toContain(label);

    // The comparison table against the two runs' own JSON summaries (sigma, relative change).
    const rows = tableAfter(html, /id="spectrum-comparison"/);
    const s0 = runs.json.sv0.singular_values, s1 = runs.json.steered.singular_values;
    expect(rows.length).toBe(6);
    rows.forEach((row, i) => {
      expect(Number(row[1])).toBeCloseTo(s0[i], 4);
      expect(Number(row[2])).toBeCloseTo(s1[i], 4);
      expect(Number(row[3])).toBeCloseTo((100 * (s1[i] - s0[i])) / s0[i], 1);
      expect(Number(row[4])).toBeGreaterThanOrEqual(0);
      expect(Number(row[4])).toBeLessThanOrEqual(1.0001);
      expect(Number(row[5])).toBeGreaterThanOrEqual(0);
      expect(Number(row[5])).toBeLessThanOrEqual(90);
    });

    // The best matches against `jacsteer compare --json` on the same files.
    const cmp = jacsteer(["compare", runs.melbo, runs.sv0, "--json"]);
    expect(cmp.code, cmp.stderr).toBe(0);
    const best = JSON.parse(cmp.stdout).best_matches as { a: number; b: number; abs_cos: number }[];
    const table = tableAfter(html, /<h4>Best match in B/);
    expect(table.length).toBe(best.length);
    best.forEach((m, i) => {
      expect(Number(table[i][0])).toBe(m.a);
      expect(Number(table[i][1])).toBe(m.b);
      expect(Number(table[i][2])).toBeCloseTo(m.abs_cos, 3);
    });
    const angles = JSON.parse(cmp.stdout).principal_angles_deg as number[];
    const shown = /Principal angles between span\(A\)[^:]*: ([\d., ]*\d)\.<\/p>/.exec(html)![1].split(", ").map(Number);
    shown.forEach((a, i) => expect(a).toBeCloseTo(angles[i], 1));

    // The A/B summary's fitted slope and R^2 are in the legend, as eval-ab computed them.
    if (runs.abSummary) {
      const summary = JSON.parse(readFileSync(runs.abSummary, "utf8"));
      for (const l of summary.linearity) expect(html).toMatch(new RegExp(`slope ${String(Number(l.slope.toPrecision(4))).replace(/[.-]/g, "\\$&")} per unit scale`));
    }
  });

  it("a single spectrum on a log scale; signed cosines; only what was asked for", () => {
    const out = join(work.dir, "log.html");
    const r = jacsteer(["report", "--out", out, "--spectrum", runs.steered, "--log-spectrum", "--cosine", `${runs.melbo}:1`, runs.sv0, "--signed"]);
    expect(r.code, r.stderr).toBe(0);
    const html = readFileSync(out, "utf8");
    expect(count(html, /<svg /g)).toBe(2);
    expect(html).toContain("σᵢ (log scale)");
    expect(html).not.toContain("spectrum-comparison");
    expect(html).not.toContain('id="ab"');
    expect(html).toContain('fill="#053061"'); // diverging colour bar
    expect(html).toContain("steered.safetensors (at sv0.safetensors:0 × 4)"); // the default label names the point
    expectSelfContained(html);
  });

  it("--spectrum FILE:ROW means that row, as FILE:ROW does everywhere (-1 the last), not a label", () => {
    const out = join(work.dir, "rows.html");
    const r = jacsteer(["report", "--out", out, "--spectrum", `${runs.sv0}:1`, "--spectrum", `${runs.steered}:-1:last one`]);
    expect(r.code, r.stderr).toBe(0);
    const html = readFileSync(out, "utf8");
    const rows = tableAfter(html, /id="spectra"/);
    // row 1 of the first file, the last row (5: both runs have 6 vectors) of the second: two table
    // rows, each with one file's sigma
    expect(rows.map((c) => c[0])).toEqual(["1", "5"]);
    expect(Number(rows[0][1])).toBeCloseTo(runs.json.sv0.singular_values[1], 4);
    expect(Number(rows[1][3])).toBeCloseTo(runs.json.steered.singular_values[5], 4);
    expect(rows[0][3]).toBe("–");
    expect(rows[1][1]).toBe("–");
    expect(html).toContain("sv0.safetensors (at sv = 0), row 1");
    expect(html).toContain("last one");
    expect(html).not.toContain('id="spectrum-comparison"');
    expect(r.stderr).toMatch(/note: No spectrum comparison: it needs the whole spectrum of both runs/);
    const bad = jacsteer(["report", "--out", join(work.dir, "bad-row.html"), "--spectrum", `${runs.sv0}:99`]);
    expect(bad.code).toBe(1);
    expect(bad.stderr.trim()).toMatch(/^jacsteer: error: --spectrum .*sv0\.safetensors:99: row 99 out of range \(the file has \d+ vectors/);
  });

  describe("bad inputs: exit 1, one line naming the flag and file, no output file", () => {
    const cases: [string, () => string[], RegExp][] = [
      ["missing --out", () => ["report", "--spectrum", runs.sv0], /--out FILE\.html is required/],
      ["--out not .html", () => ["report", "--spectrum", runs.sv0, "--out", join(work.dir, "r.txt")], /--out .*r\.txt: the file name must end in \.html/],
      ["--out in a missing directory", () => ["report", "--spectrum", runs.sv0, "--out", join(work.dir, "nope", "r.html")], /--out .*: directory .* does not exist/],
      ["nothing to report", () => ["report", "--out", join(work.dir, "bad.html")], /nothing to report/],
      ["missing spectrum file", () => ["report", "--out", join(work.dir, "bad.html"), "--spectrum", join(work.dir, "missing.safetensors:label")], /--spectrum .*missing\.safetensors:label: file .*missing\.safetensors does not exist/],
      ["spectrum of a MELBO file (no singular values)", () => ["report", "--out", join(work.dir, "bad.html"), "--spectrum", runs.melbo], /--spectrum .*melbo\.safetensors: no singular_values tensor \(method melbo\)/],
      ["spectrum of a JSON file", () => ["report", "--out", join(work.dir, "bad.html"), "--spectrum", runs.abSummary ?? writeJunk("x.json")], /--spectrum .*\.json: not a jacsteer vector file/],
      ["--ab of a vector file", () => ["report", "--out", join(work.dir, "bad.html"), "--ab", runs.sv0], /--ab .*sv0\.safetensors: not JSON/],
      ["--ab of compare's JSON", () => ["report", "--out", join(work.dir, "bad.html"), "--ab", writeCompareJson()], /--ab .*compare\.json: not an eval-ab result/],
      ["--ab missing", () => ["report", "--out", join(work.dir, "bad.html"), "--ab", join(work.dir, "none.json")], /--ab .*none\.json: file does not exist/],
      ["--cosine with one file", () => ["report", "--out", join(work.dir, "bad.html"), "--cosine", runs.sv0], /--cosine needs two vector files/],
      ["--cosine row out of range", () => ["report", "--out", join(work.dir, "bad.html"), "--cosine", `${runs.sv0}:99`, runs.melbo], /--cosine A .*sv0\.safetensors:99: row 99 out of range/],
      ["--cosine of a JSON file", () => ["report", "--out", join(work.dir, "bad.html"), "--cosine", runs.sv0, writeJunk("y.json")], /--cosine B .*y\.json: not a jacsteer vector file/],
      ["--signed without --cosine", () => ["report", "--out", join(work.dir, "bad.html"), "--spectrum", runs.sv0, "--signed"], /--signed needs --cosine/],
      ["unknown flag", () => ["report", "--out", join(work.dir, "bad.html"), "--spectrum", runs.sv0, "--bogus"], /bogus/],
    ];
    for (const [name, args, message] of cases) {
      it(name, () => {
        const argv = args();
        const before = readdirSync(work.dir).sort();
        const r = jacsteer(argv);
        expect(r.code, r.stderr).toBe(1);
        const lines = r.stderr.trim().split("\n");
        expect(lines.length, r.stderr).toBe(1);
        expect(lines[0]).toMatch(/^jacsteer: error: /);
        expect(lines[0]).toMatch(message);
        expect(existsSync(join(work.dir, "bad.html"))).toBe(false);
        // no temporary file left either
        expect(readdirSync(work.dir).sort().filter((f) => !before.includes(f))).toEqual([]);
      });
    }
  });

  it("--help", () => {
    const r = jacsteer(["report", "--help"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/--spectrum FILE\[:ROW\]\[:LABEL\]/);
  });
});

function writeJunk(name: string): string {
  const p = join(work.dir, name);
  if (!existsSync(p)) writeFileSync(p, JSON.stringify({ hello: "world" }));
  return p;
}

function writeCompareJson(): string {
  const p = join(work.dir, "compare.json");
  if (!existsSync(p)) writeFileSync(p, jacsteer(["compare", runs.melbo, runs.sv0, "--json"]).stdout);
  return p;
}
