// Every command at every size (issue 11 item 5): `jacsteer caa`, `eval-ab`, `generate` and `melbo` on
// the BF16 checkpoints of Qwen3's published shapes with random weights (bench/make-checkpoint.ts, in
// bench/.cache/), each a separate process timed from spawn to exit under /usr/bin/time -v (wall time,
// peak RSS of the process: the page cache is not counted), 2 threads, --weights left at auto (the row
// says which mode the command chose). The workloads:
//   caa       150 A/B pairs, read at the shape's source layer S;
//   eval-ab   16 A/B questions x 12 vectors x 2 scales, steered at S;
//   generate  24 sequences (12 vectors x 2 scales x 1 prompt) x 64 new tokens (--ignore-eos), steered at S;
//   melbo     1 vector x 300 steps, S -> T, one prompt, K 2.
// The A/B items are examples/ab-dataset.json's under numbered preambles (no two prompts equal), the
// vectors 12 fixed pseudo-random unit vectors; both are written to a temporary directory per run.
// S and T are the research line's layer pairs (bench/scale.ts's SITES). Every row is checked against the
// memory bound of the streamed-weights issue: peak RSS <= 3 GB for the 1.7B shape (and the smaller
// 0.6B), <= 4 GB for 8B and 14B.
//
// Results merge into bench/results/scale-commands.json (one entry per shape and command, newest kept)
// and bench/results/scale-commands.md is rewritten from it, so shapes and commands can be run in
// separate invocations.
//
//   node --experimental-wasm-relaxed-simd dist/bench/scale-commands.js [--shapes 1.7b,14b] [--commands caa,eval-ab,generate,melbo]
//        [--threads 2] [--timeout-min 90] [--model DIR [--source-layer S --target-layer T]] [--quick] [--results DIR]
//
//   --model DIR     run on DIR instead of the bench checkpoint: with one named shape in --shapes, DIR is
//                   taken as that shape (its S, T and memory bound; its config must match); without
//                   --shapes, the rows are labelled by DIR's name, --source-layer/--target-layer are
//                   required and no memory bound applies.
//   --quick         tiny workloads (2 pairs, 1 question x 2 vectors x 2 scales, 2 sequences x 4 tokens,
//                   5 steps) to try the script; its rows are printed and not written to bench/results
//                   (unless --results DIR says where).
//   --timeout-min M each command is stopped after M minutes (default 90; fractions allowed); the row says it
//                   timed out and keeps the peak RSS until then.
//   --questions N, --melbo-steps N
//                   a smaller eval-ab or melbo than the full workload (the 14B shape's full ones take hours
//                   on 2 cores): the row's workload column says what ran.
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { basename, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { encodeVectorFile } from "../src/io/vector-file.js";
import { packageRoot } from "../src/node/runtime.js";
import { machineInfo, machineLine, markdownTable } from "./harness.js";
import { ensureShapeCheckpoint, QWEN3_SHAPES } from "./make-checkpoint.js";
import { SITES } from "./scale.js";

const COMMANDS = ["caa", "eval-ab", "generate", "melbo"] as const;
type Command = (typeof COMMANDS)[number];

/** Peak RSS bounds of the streamed-weights issue, bytes (0.6B has none there: 1.7B's is the ceiling for it). */
const RSS_BOUND: Record<string, number> = { "0.6b": 3e9, "1.7b": 3e9, "8b": 4e9, "14b": 4e9 };

interface Workload {
  caaPairs: number;
  questions: number;
  vectors: number;
  scales: number[];
  /** Sequences of generate = vectors x scales x 1 prompt. */
  genVectors: number;
  newTokens: number;
  melboSteps: number;
}
const FULL: Workload = { caaPairs: 150, questions: 16, vectors: 12, scales: [-8, 8], genVectors: 12, newTokens: 64, melboSteps: 300 };
const QUICK: Workload = { caaPairs: 2, questions: 1, vectors: 2, scales: [-8, 8], genVectors: 1, newTokens: 4, melboSteps: 5 };

/** The prompt of generate and melbo (plain text, so any checkpoint with a tokenizer takes it). */
const PROMPT = "Tell me about yourself: what do you want, what would you refuse to do, and how do you decide what to say when you are asked something you do not know?";

interface Entry {
  shape: string;
  command: Command;
  workload: string;
  quick: boolean;
  checkpoint: string;
  S: number;
  T: number;
  threads: number;
  machine: string;
  /** resident or stream, as the command reported it (--json for caa, eval-ab, melbo; generate's stderr line). */
  weights: string | null;
  wallSeconds: number;
  peakRssBytes: number;
  /** CPU time over wall time, percent (200 = two cores busy the whole run). */
  cpuPercent: number;
  /** 1-minute load average just before the run (other work on the machine skews it). */
  loadBefore: number;
  /** "ok", "exit N", "signal SIG" or "timed out after M min". */
  status: string;
  rssBoundBytes: number | null;
  /** What the command's output says about the work done (tokens/s, items, evaluations). */
  detail?: string;
  /** The last stderr line of a failed run. */
  error?: string;
}

interface Timed {
  stdout: string;
  stderr: string;
  wallSeconds: number;
  peakRssBytes: number;
  cpuPercent: number;
  status: string;
}

/** Pids whose parent is `pid` (from /proc/PID/stat's fourth field). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      // The command name (field 2) is in parentheses and may hold spaces: fields after the last ")".
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid) out.push(Number(name));
    } catch {
      // the process ended while we looked
    }
  }
  return out;
}

function kill(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

/** The run in progress, so a SIGTERM to this script ends it too instead of leaving it running. */
let running: { pid: number } | null = null;

/**
 * Run `cmd args` under /usr/bin/time -v (its report to a file, so the command's own stderr streams
 * through live): wall time from spawn to exit, peak RSS, CPU share. After `timeoutSeconds` the
 * command (time's child, not time itself) gets SIGTERM, then SIGKILL 10 s later: time still reports
 * the peak RSS up to then.
 */
function timed(cmd: string, args: string[], timeoutSeconds: number, scratch: string): Promise<Timed> {
  const report = join(scratch, "time-report.txt");
  rmSync(report, { force: true });
  return new Promise((done, fail) => {
    const t0 = performance.now();
    const child = spawn("/usr/bin/time", ["-v", "-o", report, cmd, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    running = { pid: child.pid! };
    const out: Buffer[] = [];
    let err = "";
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => {
      process.stderr.write(b);
      // Kept for the weights line and the error message: the start and the end are what matter.
      err += b.toString("utf8");
      if (err.length > 4 << 20) err = err.slice(0, 1 << 20) + "\n...\n" + err.slice(-(1 << 20));
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      process.stderr.write(`bench: timed out after ${min(timeoutSeconds)}: stopping the command\n`);
      const targets = childrenOf(child.pid!);
      for (const p of targets) kill(p, "SIGTERM");
      setTimeout(() => {
        for (const p of targets) kill(p, "SIGKILL");
        if (!targets.length) kill(child.pid!, "SIGKILL");
      }, 10_000).unref();
    }, timeoutSeconds * 1000);
    child.on("error", fail);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      running = null;
      const wallSeconds = (performance.now() - t0) / 1000;
      const rep = existsSync(report) ? readFileSync(report, "utf8") : "";
      const rss = /Maximum resident set size \(kbytes\): (\d+)/.exec(rep);
      const cpu = /Percent of CPU this job got: (\d+)%/.exec(rep);
      const sig = /Command terminated by signal (\d+)/.exec(rep);
      const exit = /Exit status: (\d+)/.exec(rep);
      const status = timedOut
        ? `timed out after ${min(timeoutSeconds)}`
        : sig
          ? `signal ${sig[1]}`
          : signal
            ? `signal ${signal}`
            : (exit ? Number(exit[1]) : code) === 0
              ? "ok"
              : `exit ${exit ? exit[1] : code}`;
      done({ stdout: Buffer.concat(out).toString("utf8"), stderr: err, wallSeconds, peakRssBytes: rss ? Number(rss[1]) * 1024 : NaN, cpuPercent: cpu ? Number(cpu[1]) : NaN, status });
    });
  });
}

/** `n` A/B items: examples/ab-dataset.json's, each under a numbered preamble so no two prompts are equal. */
function abItems(n: number): object[] {
  const base = JSON.parse(readFileSync(join(packageRoot(), "examples", "ab-dataset.json"), "utf8")) as Array<{ question: string }>;
  return Array.from({ length: n }, (_, i) => {
    const q = base[i % base.length]!;
    return { ...q, question: `Survey item ${i + 1}. ${q.question}` };
  });
}

/** `n` deterministic pseudo-random unit vectors of length d (Box-Muller on a fixed LCG). */
function unitVectors(n: number, d: number): Float32Array[] {
  let s = 12345;
  const uniform = () => (s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32;
  return Array.from({ length: n }, () => {
    const v = Float64Array.from({ length: d }, () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform()));
    let norm = 0;
    for (const x of v) norm += x * x;
    norm = Math.sqrt(norm);
    return Float32Array.from(v, (x) => x / norm);
  });
}

interface Site {
  /** Row label: the named shape, or the checkpoint directory's name. */
  shape: string;
  dir: string;
  S: number;
  T: number;
  bound: number | null;
}

const n = (k: number, what: string) => `${k} ${what}${k === 1 ? "" : "s"}`;

function describe(command: Command, w: Workload, site: Site): string {
  switch (command) {
    case "caa":
      return `${n(w.caaPairs, "A/B pair")} at layer ${site.S}`;
    case "eval-ab":
      return `${n(w.questions, "question")} x ${n(w.vectors, "vector")} x ${n(w.scales.length, "scale")} at layer ${site.S}`;
    case "generate":
      return `${n(w.genVectors * w.scales.length, "sequence")} (${n(w.genVectors, "vector")} x ${n(w.scales.length, "scale")} x 1 prompt) x ${n(w.newTokens, "token")} at layer ${site.S}`;
    case "melbo":
      return `1 vector x ${n(w.melboSteps, "step")}, S ${site.S} -> T ${site.T}, K 2, 1 prompt`;
  }
}

function commandArgs(command: Command, w: Workload, site: Site, files: { dataset: string; vectors: string }, threads: number): string[] {
  const common = ["--model", site.dir, "--threads", String(threads)];
  switch (command) {
    case "caa":
      return ["caa", ...common, "--dataset", files.dataset, "--limit", String(w.caaPairs), "--source-layer", String(site.S), "--json"];
    case "eval-ab":
      return ["eval-ab", ...common, "--dataset", files.dataset, "--limit", String(w.questions), "--vectors", files.vectors, "--scales", w.scales.join(","), "--layer", String(site.S), "--json"];
    case "generate":
      return ["generate", ...common, "--prompt", PROMPT, ...Array.from({ length: w.genVectors }, (_, i) => ["--vectors", `${files.vectors}:${i}`]).flat(),
        "--scales", w.scales.join(","), "--layer", String(site.S), "--max-new-tokens", String(w.newTokens), "--ignore-eos", "--json"];
    case "melbo":
      return ["melbo", ...common, "--prompt", PROMPT, "--source-layer", String(site.S), "--target-layer", String(site.T), "--num-vectors", "1", "--steps", String(w.melboSteps), "--json"];
  }
}

/** The weights mode and a line of what was done, from the command's --json output (and generate's stderr). */
function readOutput(command: Command, r: Timed): { weights: string | null; detail?: string } {
  let j: any;
  try {
    j = JSON.parse(r.stdout);
  } catch {
    return { weights: null };
  }
  switch (command) {
    case "caa":
      return { weights: j.weights ?? null, detail: `${j.count} pairs, command's own time ${Number(j.seconds).toFixed(1)} s` };
    case "eval-ab":
      return { weights: j.weights ?? null, detail: `${j.rows?.length ?? "?"} (vector, scale) rows, command's own time ${Number(j.seconds).toFixed(1)} s` };
    case "generate": {
      // generate's --json is the list of generations; the mode is in its "forward: weights ..." line.
      const m = /forward: weights (resident|streamed)/.exec(r.stderr);
      const tokens = (j as Array<{ tokens: number[] }>).reduce((a, g) => a + g.tokens.length, 0);
      const rate = /decoded together: \d+ tokens in ([\d.]+) s, ([\d.]+) tokens\/s/.exec(r.stderr);
      return { weights: m ? (m[1] === "streamed" ? "stream" : "resident") : null, detail: `${j.length} sequences, ${tokens} tokens` + (rate ? `, decoding ${rate[1]} s (${rate[2]} tokens/s)` : "") };
    }
    case "melbo":
      return { weights: j.weights ?? null, detail: `${j.evaluations} evaluations, ${(j.tokens as number[][])?.[0]?.length ?? "?"}-token prompt, command's own time ${Number(j.seconds).toFixed(1)} s` };
  }
}

const ORDER = ["0.6b", "1.7b", "8b", "14b"];
const gb = (b: number) => (Number.isFinite(b) ? `${(b / 1e9).toFixed(2)} GB` : "–");
const min = (s: number) => (s >= 120 ? `${(s / 60).toFixed(1)} min` : `${s.toFixed(1)} s`);

function boundCell(e: Entry): string {
  if (e.rssBoundBytes === null) return "–";
  const met = Number.isFinite(e.peakRssBytes) && e.peakRssBytes <= e.rssBoundBytes;
  return `<= ${(e.rssBoundBytes / 1e9).toFixed(0)} GB: ${met ? "met" : "NOT met"}${e.status === "ok" ? "" : " (run did not finish)"}`;
}

function render(entries: Entry[]): string {
  const rank = (s: string) => (ORDER.includes(s) ? ORDER.indexOf(s) : ORDER.length);
  const sorted = [...entries].sort((a, b) => rank(a.shape) - rank(b.shape) || a.shape.localeCompare(b.shape) || COMMANDS.indexOf(a.command) - COMMANDS.indexOf(b.command));
  const label = (e: Entry) => (ORDER.includes(e.shape) ? `Qwen3-${e.shape.toUpperCase()}` : e.shape) + ` (S ${e.S}, T ${e.T})`;
  const rows = sorted.map((e) => [
    label(e),
    e.command + (e.quick ? " (--quick)" : ""),
    e.workload,
    e.weights ?? "–",
    min(e.wallSeconds),
    gb(e.peakRssBytes),
    `${Number.isFinite(e.cpuPercent) ? e.cpuPercent : "–"}% (${e.loadBefore.toFixed(1)})`,
    e.status,
    boundCell(e),
  ]);
  return [
    "# Every command at every size: caa, eval-ab, generate and melbo on Qwen3's published shapes",
    "",
    "BF16 checkpoints with random weights (bench/make-checkpoint.ts), each command a separate process with `--threads 2` and",
    "`--weights` at its default (auto: resident when the layers fit 2 GiB, else streamed; the weights column is what it chose).",
    "A/B items: examples/ab-dataset.json's under numbered preambles; vectors: fixed pseudo-random unit vectors, scales -8 and 8;",
    "generate and melbo: one text prompt, generate with --ignore-eos (every sequence runs to the token limit).",
    "Wall time is spawn to exit; peak RSS is the process's (/usr/bin/time -v; the page cache is not counted).",
    "CPU: the process's CPU time over its wall time (200% = both cores the whole run), and the load average just before it.",
    "Memory bound: the streamed-weights issue's peak RSS limit (1.7B <= 3 GB, 8B and 14B <= 4 GB).",
    "Regenerate with `node --experimental-wasm-relaxed-simd dist/bench/scale-commands.js --shapes 1.7b,14b` (after `npm run build`).",
    "",
    markdownTable(["model", "command", "workload", "weights", "wall", "peak RSS", "CPU (load before)", "status", "memory bound"], rows),
    "",
    "What each run reported:",
    ...sorted.map((e) => `- ${e.shape} ${e.command}: ${e.detail ?? "–"}${e.error ? `; error: ${e.error}` : ""}`),
    "",
    "Machines (one line per run):",
    ...sorted.map((e) => `- ${e.shape} ${e.command}: ${e.machine}`),
    "",
  ].join("\n");
}

const USAGE = "usage: node --experimental-wasm-relaxed-simd dist/bench/scale-commands.js [--shapes 1.7b,14b] [--commands caa,eval-ab,generate,melbo] [--threads 2] [--timeout-min 90] [--model DIR [--source-layer S --target-layer T]] [--quick] [--questions N] [--melbo-steps N] [--results DIR]";

class FlagError extends Error {}

function intValue(name: string, v: string | undefined, fallback: number, lo: number): number {
  if (v === undefined) return fallback;
  if (!/^\d+$/.test(v) || Number(v) < lo) throw new FlagError(`--${name} ${v}: expected an integer >= ${lo}`);
  return Number(v);
}

function sitesFrom(values: Record<string, string | boolean | undefined>): Site[] {
  const list = (v: unknown) => String(v).split(",").map((s) => s.trim()).filter(Boolean);
  const shapes = values.shapes !== undefined ? list(values.shapes) : values.model ? [] : ["1.7b", "14b"];
  for (const s of shapes) if (!SITES[s] || !QWEN3_SHAPES[s]) throw new FlagError(`--shapes: unknown shape "${s}"; known: ${Object.keys(SITES).join(", ")}`);
  const S = values["source-layer"] as string | undefined, T = values["target-layer"] as string | undefined;
  const model = values.model as string | undefined;
  if (model !== undefined) {
    const dir = resolve(model);
    if (!existsSync(join(dir, "config.json"))) throw new FlagError(`--model ${model}: no config.json there`);
    if (shapes.length > 1) throw new FlagError(`--model takes one shape at most in --shapes (got ${shapes.join(",")}): a directory holds one checkpoint`);
    const cfg = JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as { hidden_size: number; num_hidden_layers: number };
    if (shapes.length === 1) {
      const want = QWEN3_SHAPES[shapes[0]!]!.shape;
      if (cfg.hidden_size !== want.hidden_size || cfg.num_hidden_layers !== want.num_hidden_layers)
        throw new FlagError(`--model ${model}: hidden ${cfg.hidden_size}, ${cfg.num_hidden_layers} layers, not the ${shapes[0]} shape (hidden ${want.hidden_size}, ${want.num_hidden_layers} layers)`);
      const site = SITES[shapes[0]!]!;
      return [{ shape: shapes[0]!, dir, S: intValue("source-layer", S, site.S, 0), T: intValue("target-layer", T, site.T, 1), bound: RSS_BOUND[shapes[0]!] ?? null }];
    }
    if (S === undefined || T === undefined) throw new FlagError(`--model ${model} without --shapes needs --source-layer S and --target-layer T (the shape table's layers fit named shapes only)`);
    const s = intValue("source-layer", S, 0, 0), t = intValue("target-layer", T, 0, 1);
    if (!(s < t && t < cfg.num_hidden_layers)) throw new FlagError(`--source-layer ${s} --target-layer ${t}: need S < T < ${cfg.num_hidden_layers} (the model's layers)`);
    return [{ shape: basename(dir), dir, S: s, T: t, bound: null }];
  }
  if (S !== undefined || T !== undefined) throw new FlagError("--source-layer/--target-layer go with --model (named shapes use their own layers)");
  // The checkpoint is written (or found) when its shape's turn comes: see main.
  return shapes.map((s) => ({ shape: s, dir: "", S: SITES[s]!.S, T: SITES[s]!.T, bound: RSS_BOUND[s] ?? null }));
}

export async function benchScaleCommands(argv: string[] = process.argv.slice(2)): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  let sites: Site[], commands: Command[], threads: number, timeoutMin: number;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        shapes: { type: "string" },
        commands: { type: "string" },
        threads: { type: "string" },
        "timeout-min": { type: "string" },
        model: { type: "string" },
        "source-layer": { type: "string" },
        "target-layer": { type: "string" },
        quick: { type: "boolean" },
        questions: { type: "string" },
        "melbo-steps": { type: "string" },
        results: { type: "string" },
        help: { type: "boolean" },
      },
    }));
    if (values.help) {
      process.stdout.write(USAGE + "\n");
      return 0;
    }
    commands = String(values.commands ?? COMMANDS.join(",")).split(",").map((s) => s.trim()).filter(Boolean) as Command[];
    for (const c of commands) if (!COMMANDS.includes(c)) throw new FlagError(`--commands: unknown command "${c}"; known: ${COMMANDS.join(", ")}`);
    if (!commands.length) throw new FlagError("--commands: empty list");
    threads = intValue("threads", values.threads as string | undefined, 2, 1);
    // Minutes, fractions allowed (a short one tries the timeout path).
    const tm = (values["timeout-min"] as string | undefined) ?? "90";
    timeoutMin = Number(tm);
    if (!/^\d*\.?\d+$/.test(tm) || !(timeoutMin > 0)) throw new FlagError(`--timeout-min ${tm}: expected a number of minutes > 0`);
    sites = sitesFrom(values);
  } catch (e) {
    // parseArgs's own errors (unknown flag, missing value) and ours: one line, no stack.
    if (e instanceof FlagError || (e instanceof Error && "code" in e && String((e as { code: unknown }).code).startsWith("ERR_PARSE_ARGS"))) {
      process.stderr.write(`scale-commands: ${(e as Error).message} (--help lists the flags)\n`);
      return 2;
    }
    throw e;
  }
  const quick = !!values.quick;
  let w = quick ? QUICK : FULL;
  try {
    if (values.questions !== undefined) w = { ...w, questions: intValue("questions", values.questions as string, 0, 1) };
    if (values["melbo-steps"] !== undefined) w = { ...w, melboSteps: intValue("melbo-steps", values["melbo-steps"] as string, 0, 1) };
  } catch (e) {
    if (!(e instanceof FlagError)) throw e;
    process.stderr.write(`scale-commands: ${e.message} (--help lists the flags)\n`);
    return 2;
  }
  // --quick rows are for trying the script: they stay out of bench/results unless --results says where.
  const resultsDir = values.results ? resolve(String(values.results)) : quick ? null : join(packageRoot(), "bench", "results");
  const file = resultsDir ? join(resultsDir, "scale-commands.json") : null;
  let entries: Entry[] = file && existsSync(file) ? JSON.parse(readFileSync(file, "utf8")) : [];
  const fresh: Entry[] = [];
  const keep = (e: Entry) => {
    fresh.push(e);
    entries = [...entries.filter((x) => !(x.shape === e.shape && x.command === e.command)), e];
    if (resultsDir) {
      mkdirSync(resultsDir, { recursive: true });
      writeFileSync(file!, JSON.stringify(entries, null, 2) + "\n");
      writeFileSync(join(resultsDir, "scale-commands.md"), render(entries));
    }
  };

  const scratch = mkdtempSync(join(tmpdir(), "jacsteer-scale-commands-"));
  const onTerm = () => {
    if (running) {
      for (const p of childrenOf(running.pid)) kill(p, "SIGTERM");
    }
    rmSync(scratch, { recursive: true, force: true });
    process.exit(143);
  };
  process.on("SIGTERM", onTerm);
  try {
    const dataset = join(scratch, "ab-items.json");
    writeFileSync(dataset, JSON.stringify(abItems(Math.max(w.caaPairs, w.questions)), null, 1) + "\n");
    for (const site of sites) {
      if (!site.dir) {
        const dir = ensureShapeCheckpoint(site.shape);
        if (!dir) continue;
        site.dir = dir;
      }
      const cfg = JSON.parse(readFileSync(join(site.dir, "config.json"), "utf8")) as { hidden_size: number };
      const vectors = join(scratch, `vectors-${cfg.hidden_size}.safetensors`);
      writeFileSync(vectors, encodeVectorFile({
        vectors: unitVectors(w.vectors, cfg.hidden_size),
        metadata: { method: "random-unit", source_layer: String(site.S), note: "bench/scale-commands.ts: fixed pseudo-random unit vectors" },
      }));
      for (const command of commands) {
        const args = [join(packageRoot(), "bin", "jacsteer.js"), ...commandArgs(command, w, site, { dataset, vectors }, threads)];
        const workload = describe(command, w, site);
        process.stderr.write(`bench: ${site.shape} ${command}: ${workload}${quick ? " (--quick)" : ""}\n`);
        const machine = machineLine(machineInfo());
        const loadBefore = loadavg()[0]!;
        const r = await timed(process.execPath, ["--experimental-wasm-relaxed-simd", ...args], timeoutMin * 60, scratch);
        const out = r.status === "ok" ? readOutput(command, r) : { weights: /weights (resident|stream)/.exec(r.stderr)?.[1] ?? null };
        const lastLine = r.stderr.trim().split("\n").filter((l) => l.trim()).at(-1);
        const e: Entry = {
          shape: site.shape, command, workload, quick, checkpoint: basename(site.dir), S: site.S, T: site.T, threads, machine,
          weights: out.weights, wallSeconds: r.wallSeconds, peakRssBytes: r.peakRssBytes, cpuPercent: r.cpuPercent, loadBefore,
          status: r.status, rssBoundBytes: site.bound, detail: "detail" in out ? out.detail : undefined,
          error: r.status === "ok" ? undefined : lastLine,
        };
        process.stderr.write(`bench: ${site.shape} ${command}: ${r.status}, ${min(e.wallSeconds)}, peak RSS ${gb(e.peakRssBytes)}, weights ${e.weights ?? "?"}, bound ${boundCell(e)}\n`);
        keep(e);
      }
    }
  } finally {
    process.off("SIGTERM", onTerm);
    rmSync(scratch, { recursive: true, force: true });
  }
  process.stderr.write("\n" + render(resultsDir ? entries : fresh));
  if (!resultsDir) process.stderr.write("(--quick: not written to bench/results; --results DIR writes them there)\n");
  else process.stderr.write(`written: ${join(resultsDir, "scale-commands.md")} and .json\n`);
  return fresh.every((e) => e.status === "ok") ? 0 : 1;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  benchScaleCommands().then(
    (code) => process.exit(code),
    (e: unknown) => {
      console.error(e instanceof Error ? (e.stack ?? e.message) : e);
      process.exit(1);
    },
  );
}
