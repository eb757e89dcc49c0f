// `jacsteer report`: one self-contained HTML file with SVG plots of results other commands wrote
// (src/report/ draws; this file reads the inputs and writes the page atomically).
import { existsSync, readFileSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { parseFlags, stringList, type Options } from "./args.js";
import { UsageError } from "./errors.js";
import { log } from "./session.js";
import { version } from "./output.js";
import { decodeVectorFile, parseVectorRef, resolveRow, VectorFileError, type VectorSet } from "../io/vector-file.js";
import { openSafetensorsFile, writeFileAtomic } from "../node/safetensors-file.js";
import { packageRoot } from "../node/runtime.js";
import { parseAbResult, type AbInput } from "../report/ab-input.js";
import type { AtlasInput, StabilityInput } from "../report/atlas-stability.js";
import { parseLinearity } from "../report/linearity.js";
import { renderReport, spectrumLabel, type CosinePair, type SpectrumInput, type VectorSetSelection } from "../report/report.js";

export const REPORT_HELP = `jacsteer report: one self-contained HTML file (inline SVG plots, no scripts, no external files)

  --out FILE.html            the report (required); written atomically
  --title TEXT               page title (default "jacsteer report")
  --spectrum FILE[:ROW][:LABEL]  a power-iter vector file (repeatable): sigma_i against i, labelled
                             LABEL (default: the file name and its Jacobian point, e.g. "at sv = 0");
                             FILE:ROW shows only that row's sigma, as FILE:ROW means everywhere (-1 =
                             the last row); a LABEL that is an integer needs the ROW before it.
                             With exactly two: the relative change of each sigma and the principal
                             angles between the two top subspaces (e.g. sv = 0 against --at ... --at-scale A)
  --log-spectrum             log scale for sigma
  --cosine A B               a cosine heatmap between two vector files, A FILE or FILE:ROW (rows of the
                             map), B likewise (columns), with best matches and principal angles (repeatable)
  --signed                   signed cosines on a blue-white-red scale (default |cos|: singular vectors
                             have no preferred sign)
  --ab FILE.json             an eval-ab result, its --json summary or its --out rows (repeatable): mean
                             logit difference against scale, one line per vector, slope and R^2 in the
                             legend (with --out rows also +-1 standard error over questions)
  --atlas DIR|FILE.json       a \`jacsteer atlas\` result (its --out-dir or its atlas.json; repeatable): heatmaps
                             over (S, T) of sigma_1, the largest KL of any vector and the top vector's KL,
                             each cell's numbers in its hover title, the ten best pairs in a table
  --stability FILE.json      a \`jacsteer stability --out\` result (repeatable): per run and vector the
                             smallest best |cos| with the other runs, the verdicts, the near-tied bands
  --linearity FILE.json      a jacsteer linearity --out result (repeatable): ratio ||Delta(r v) - r J v|| / ||r J v||
                             against the radius, one line per direction, and each one's radius at the target

Every section is optional; at least one input is needed.
`;

const OPTIONS: Options = {
  out: { type: "string" },
  title: { type: "string" },
  spectrum: { type: "string", multiple: true },
  "log-spectrum": { type: "boolean" },
  signed: { type: "boolean" },
  ab: { type: "string", multiple: true },
  atlas: { type: "string", multiple: true },
  stability: { type: "string", multiple: true },
  linearity: { type: "string", multiple: true },
  help: { type: "boolean", short: "h" },
};

/** `--cosine A B` takes two values, which node:util's parseArgs cannot express: take them out first. */
export function extractCosinePairs(argv: readonly string[]): { rest: string[]; pairs: [string, string][] } {
  const rest: string[] = [];
  const pairs: [string, string][] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--cosine") {
      const x = argv[i + 1], y = argv[i + 2];
      if (x === undefined || y === undefined || x.startsWith("--") || y.startsWith("--")) throw new UsageError("--cosine needs two vector files: --cosine A.safetensors[:ROW] B.safetensors[:ROW]");
      pairs.push([x, y]);
      i += 2;
    } else if (a.startsWith("--cosine=")) {
      throw new UsageError("--cosine takes two values separated by a space: --cosine A.safetensors B.safetensors");
    } else rest.push(a);
  }
  return { rest, pairs };
}

function isFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

/**
 * `FILE[:ROW][:LABEL]`: the whole argument if it names a file, else the shortest prefix before a colon
 * that does; what follows is ROW (an integer, as in FILE:ROW everywhere) and/or LABEL.
 */
export function splitSpectrumArg(arg: string): { file: string; row: number | undefined; label: string | undefined } {
  if (isFile(arg)) return { file: arg, row: undefined, label: undefined };
  for (let i = arg.indexOf(":"); i >= 0; i = arg.indexOf(":", i + 1)) {
    if (i > 0 && isFile(arg.slice(0, i))) {
      const rest = arg.slice(i + 1);
      const m = /^(-?\d+)(?::(.*))?$/.exec(rest);
      if (m) return { file: arg.slice(0, i), row: Number(m[1]), label: m[2] || undefined };
      return { file: arg.slice(0, i), row: undefined, label: rest || undefined };
    }
  }
  const guess = arg.includes(":") && !/^[A-Za-z]:[\\/]/.test(arg) ? arg.slice(0, arg.indexOf(":")) : arg;
  throw new VectorFileError(`--spectrum ${arg}: file ${guess} does not exist`);
}

function readVectorFile(file: string, flag: string): VectorSet {
  if (!existsSync(file)) throw new VectorFileError(`${flag} ${file}: file does not exist`);
  if (!isFile(file)) throw new VectorFileError(`${flag} ${file}: not a file`);
  let r;
  try {
    r = openSafetensorsFile(file);
  } catch (e) {
    throw new VectorFileError(`${flag} ${file}: not a jacsteer vector file (${(e as Error).message.replace(`${file}: `, "")})`);
  }
  try {
    return decodeVectorFile(r, file);
  } catch (e) {
    throw new VectorFileError(`${flag} ${(e as Error).message}`);
  } finally {
    r.close?.();
  }
}

function selection(arg: string, flag: string): VectorSetSelection {
  const { file, row } = parseVectorRef(arg);
  // A file whose own name ends in ":N" is taken whole.
  const [f, r] = row !== null && !isFile(file) && isFile(arg) ? [arg, null] : [file, row];
  const set = readVectorFile(f, flag);
  return { name: arg, file: f, rows: r === null ? set.vectors.map((_, i) => i) : [resolveRow(r, set.vectors.length, `${flag} ${arg}`)], set };
}

function readAb(file: string): AbInput {
  if (!existsSync(file)) throw new UsageError(`--ab ${file}: file does not exist`);
  let content: string;
  try {
    content = readFileSync(file, "utf8");
  } catch (e) {
    throw new UsageError(`--ab ${file}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  return parseAbResult(content, file, "--ab");
}

function isDirectory(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** A JSON result of another command, checked for its format field; one line naming the file otherwise. */
function readJsonResult<T>(file: string, flag: string, format: string): T & { file: string } {
  const text = readText(file, flag);
  let parsed: { format?: unknown };
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new UsageError(`${flag} ${file}: not JSON (${(e as Error).message})`);
  }
  if (parsed?.format !== format) throw new UsageError(`${flag} ${file}: not a ${format} file (format ${JSON.stringify(parsed?.format ?? null)})`);
  return { ...(parsed as T), file };
}

function readText(file: string, flag: string): string {
  if (!existsSync(file)) throw new UsageError(`${flag} ${file}: file does not exist`);
  try {
    return readFileSync(file, "utf8");
  } catch (e) {
    throw new UsageError(`${flag} ${file}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}

function checkHtmlOut(out: string | undefined): string {
  if (out === undefined) throw new UsageError("--out FILE.html is required");
  if (!/\.html?$/i.test(out)) throw new UsageError(`--out ${out}: the file name must end in .html`);
  const dir = dirname(resolve(out));
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new UsageError(`--out ${out}: directory ${dir} does not exist`);
  return out;
}

/** Quote an argument for the command line shown in the report. */
const shellQuote = (a: string) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`);

export async function report(argv: string[]): Promise<number> {
  const { rest, pairs } = extractCosinePairs(argv);
  const f = parseFlags(rest, OPTIONS);
  if (f.help) {
    process.stdout.write(REPORT_HELP);
    return 0;
  }
  const out = checkHtmlOut(f.out as string | undefined);
  const spectrumArgs = stringList(f, "spectrum");
  const abArgs = stringList(f, "ab");
  const atlasArgs = stringList(f, "atlas");
  const stabilityArgs = stringList(f, "stability");
  const linearityArgs = stringList(f, "linearity");
  if (!spectrumArgs.length && !pairs.length && !abArgs.length && !atlasArgs.length && !stabilityArgs.length && !linearityArgs.length) throw new UsageError("nothing to report: give --spectrum FILE, --cosine A B, --ab FILE.json, --atlas DIR, --stability FILE.json or --linearity FILE.json");
  if (f["log-spectrum"] && !spectrumArgs.length) throw new UsageError("--log-spectrum needs --spectrum");
  if (f.signed && !pairs.length) throw new UsageError("--signed needs --cosine");

  const spectra: SpectrumInput[] = spectrumArgs.map((arg) => {
    const { file, row, label } = splitSpectrumArg(arg);
    const set = readVectorFile(file, "--spectrum");
    if (!set.singularValues) throw new VectorFileError(`--spectrum ${file}: no singular_values tensor (method ${set.metadata.method || "unknown"}): only power-iter results have a spectrum`);
    const rows = row === undefined ? undefined : [resolveRow(row, set.vectors.length, `--spectrum ${arg}`)];
    return { file, label: label ?? (rows ? `${spectrumLabel(file, set.metadata)}, row ${rows[0]}` : spectrumLabel(file, set.metadata)), set, rows };
  });
  const cosines: CosinePair[] = pairs.map(([a, b]) => ({ a: selection(a, "--cosine A"), b: selection(b, "--cosine B") }));
  const ab = abArgs.map(readAb);
  const atlas = atlasArgs.map((a) => readJsonResult<AtlasInput>(isDirectory(a) ? join(a, "atlas.json") : a, "--atlas", "jacsteer.atlas.v1"));
  const stabilityInputs = stabilityArgs.map((a) => readJsonResult<StabilityInput>(a, "--stability", "jacsteer.stability.v1"));
  const linearity = linearityArgs.map((file) => parseLinearity(readText(file, "--linearity"), file, "--linearity"));

  const { html, figures, notes } = renderReport({
    title: (f.title as string | undefined) ?? "jacsteer report",
    version: version(),
    generatedAt: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
    command: ["jacsteer", "report", ...argv].map(shellQuote).join(" "),
    spectra,
    logSpectrum: !!f["log-spectrum"],
    cosines,
    signed: !!f.signed,
    ab,
    atlas,
    stability: stabilityInputs,
    linearity,
  });
  writeFileAtomic(out, html);
  for (const n of notes) log(`jacsteer: note: ${n}`);
  log(`jacsteer: wrote ${out} (${figures} figure(s), ${html.length} bytes)`);
  return 0;
}
