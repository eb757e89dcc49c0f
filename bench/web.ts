// The issue-5 workload in a browser tab beside the Node command line, in one run: the Qwen3-0.6B-shaped
// BF16 checkpoint (random weights; bench/make-checkpoint.ts), the workload's 32 token ids, S 6, T 20,
// K 4, top 8, block Lanczos to residual <= 1e-3 sigma_1^2, on the same thread count.
//
//   Node:  `jacsteer power-iter --tokens ... --json --out` as a child process (spawn to exit timed here;
//          its own `seconds`: checkpoint open to the end of the solve).
//   Tab:   Debian's Chromium, headless (playwright-core), the page from `jacsteer serve` (cross-origin
//          isolated), the checkpoint folder handed to its directory input, the same flags typed in; the
//          page's own `seconds` (the same span: checkpoint open to the end of the solve, in the compute
//          worker) and the time from the click on Run to "done", measured here.
//
// The runs alternate (Node, tab, Node, tab, ...) so that a change in the machine's load hits both.
// Both results must be bitwise equal (vectors and singular values). Writes bench/results/web.json and
// web.md.
//
// Memory: the Node run's peak RSS (/usr/bin/time -v) beside the tab's, sampled every 100 ms from /proc: the
// peak RSS of the renderer that holds the page and its Web Workers (VmHWM), and the peak of the sum of RSS
// over every process of that Chromium (browser, GPU, network and renderer processes: an upper bound, shared
// pages counted in each). Issue 13 asks that a 1.7B-shaped checkpoint run in a tab within 3 GB: `--shape 1.7b`
// runs the same flags on it at S 6, T 22 (the research line's 1.7B pair), with --weights as given (default
// auto, which keeps the 1.6 GB of BF16 layers resident; stream reads them per pass with File.slice).
//
//   npm run bench -- web, or: node --experimental-wasm-relaxed-simd dist/bench/web.js [--shape 0.6b|1.7b] [--model DIR]
//     [--threads N] [--reps R] [--weights auto|resident|stream]
//   (DIR defaults to the shape's checkpoint in bench/.cache/, made by bench/make-checkpoint.ts if missing)
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { packageRoot } from "../src/node/runtime.js";
import type { VectorSet } from "../src/io/vector-file.js";
import { readVectorSet } from "../src/cli/verify.js";
import { machineInfo, machineLine, markdownTable } from "./harness.js";
import { ensureShapeCheckpoint } from "./make-checkpoint.js";
import { workloadTokens } from "./workload.js";
import { findChromiumBinary, launchChromium, startServe } from "./browser.js";

const W = { sourceLayer: 6, targetLayer: 20, positions: 4, numVectors: 8, tol: 1e-3, seed: 0, weights: "auto" };
/** The target layer per shape: the workload's 20 of 28 on 0.6B, the research line's 22 on 1.7B. */
const TARGET: Record<string, number> = { "0.6b": 20, "1.7b": 22 };

interface Run {
  where: "node" | "tab";
  /** The run's own seconds: checkpoint open to the end of the solve. */
  seconds: number;
  /** Node: spawn to exit; tab: click on Run to "done". */
  outsideSeconds: number;
  products: number;
  iterations: number;
  peakWasmBytes: number;
  kernels: string;
  /** Node: the process's peak RSS. Tab: the renderer's peak RSS (page + workers). */
  peakRssBytes: number;
  /** Tab only: the peak over time of the summed RSS of every Chromium process. */
  peakChromiumSumBytes?: number;
  weightMode?: string;
  set: VectorSet;
}

/** pid -> { ppid, cmdline } of every process now. */
function processTable(): Map<number, { ppid: number; cmdline: string }> {
  const out = new Map<number, { ppid: number; cmdline: string }>();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      out.set(Number(name), { ppid, cmdline: readFileSync(`/proc/${name}/cmdline`, "utf8").replace(/\0/g, " ") });
    } catch {
      // the process ended while we looked
    }
  }
  return out;
}

function statusKb(pid: number, key: "VmRSS" | "VmHWM"): number {
  try {
    const m = new RegExp(`${key}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/**
 * Samples the memory of the Chromium whose profile directory is `profile` every 100 ms until stopped: the
 * largest renderer peak (VmHWM) and the largest summed RSS of the browser process and its descendants.
 */
function sampleChromiumMemory(profile: string): { stop(): { rendererPeakBytes: number; sumPeakBytes: number } } {
  let rendererPeak = 0, sumPeak = 0;
  const sample = () => {
    const table = processTable();
    const roots = [...table].filter(([, p]) => p.cmdline.includes(`--user-data-dir=${profile}`) && !p.cmdline.includes("--type=")).map(([pid]) => pid);
    const tree = new Set(roots);
    for (let grew = true; grew; ) {
      grew = false;
      for (const [pid, p] of table) if (!tree.has(pid) && tree.has(p.ppid)) (tree.add(pid), (grew = true));
    }
    let sum = 0;
    for (const pid of tree) {
      sum += statusKb(pid, "VmRSS");
      if (table.get(pid)!.cmdline.includes("--type=renderer")) rendererPeak = Math.max(rendererPeak, statusKb(pid, "VmHWM") * 1024);
    }
    sumPeak = Math.max(sumPeak, sum * 1024);
  };
  const timer = setInterval(sample, 100);
  sample();
  return {
    stop: () => {
      clearInterval(timer);
      sample();
      return { rendererPeakBytes: rendererPeak, sumPeakBytes: sumPeak };
    },
  };
}

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

const readSet = (file: string): VectorSet => readVectorSet(file, "vector file");

function nodeRun(model: string, tokens: number[], threads: number, out: string): Run {
  const args = [
    "--experimental-wasm-relaxed-simd", join(packageRoot(), "bin", "jacsteer.js"), "power-iter", "--model", model, "--tokens", tokens.join(","),
    "--source-layer", String(W.sourceLayer), "--target-layer", String(W.targetLayer), "--positions", String(W.positions),
    "--num-vectors", String(W.numVectors), "--tol", String(W.tol), "--seed", String(W.seed), "--threads", String(threads), "--method", "lanczos",
    "--weights", W.weights, "--json", "--quiet", "--out", out,
  ];
  const t0 = performance.now();
  const r = spawnSync("/usr/bin/time", ["-v", process.execPath, ...args], { encoding: "utf8", maxBuffer: 64 << 20, timeout: 3600_000 });
  const outside = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`jacsteer power-iter exited ${r.status}: ${r.stderr}`);
  const j = JSON.parse(r.stdout) as { seconds: number; products: number; iterations: number; peak_wasm_bytes: number; kernels: string; weights?: { mode?: string } };
  const rss = /Maximum resident set size \(kbytes\): (\d+)/.exec(r.stderr);
  return {
    where: "node", seconds: j.seconds, outsideSeconds: outside, products: j.products, iterations: j.iterations, peakWasmBytes: j.peak_wasm_bytes, kernels: j.kernels,
    peakRssBytes: rss ? Number(rss[1]) * 1024 : NaN, weightMode: j.weights?.mode, set: readSet(out),
  };
}

async function tabRun(browser: Awaited<ReturnType<typeof launchChromium>>, url: string, model: string, tokens: number[], threads: number, out: string): Promise<Run> {
  const page = await browser.context.newPage();
  page.setDefaultTimeout(3600_000);
  try {
    await page.goto(`${url.split("?")[0]}?threads=${threads}`);
    await page.setInputFiles("#folder", model);
    await page.waitForFunction(() => !(document.getElementById("run") as HTMLButtonElement).disabled);
    await page.fill("#tokens", tokens.join(","));
    await page.fill("#S", String(W.sourceLayer));
    await page.fill("#T", String(W.targetLayer));
    await page.fill("#K", String(W.positions));
    await page.fill("#n", String(W.numVectors));
    await page.fill("#tol", String(W.tol));
    await page.fill("#seed", String(W.seed));
    await page.selectOption("#weights", W.weights);
    if ((await page.inputValue("#threads")) !== String(threads)) throw new Error(`the page offers ${await page.inputValue("#threads")} threads, not ${threads} (${await page.textContent("#isolation")})`);
    const memory = sampleChromiumMemory(browser.profile);
    const t0 = performance.now();
    await page.click("#run");
    await page.waitForFunction(() => /^(done|error)/.test(document.getElementById("status")?.textContent ?? ""), undefined, { timeout: 3600_000, polling: 100 });
    const outside = (performance.now() - t0) / 1000;
    const mem = memory.stop();
    const status = (await page.textContent("#status")) ?? "";
    if (!status.startsWith("done")) throw new Error(`the tab's run failed: ${status}`);
    const r = (await page.evaluate(() => (window as unknown as { jacsteerResult: unknown }).jacsteerResult)) as { seconds: number; products: number; iterations: number; peakWasmBytes: number; kernels: string; threads: number; weightMode: string };
    if (r.threads !== threads) throw new Error(`the tab ran on ${r.threads} threads, not ${threads}`);
    const download = page.waitForEvent("download");
    await page.click("#download");
    await (await download).saveAs(out);
    return {
      where: "tab", seconds: r.seconds, outsideSeconds: outside, products: r.products, iterations: r.iterations, peakWasmBytes: r.peakWasmBytes, kernels: r.kernels,
      peakRssBytes: mem.rendererPeakBytes, peakChromiumSumBytes: mem.sumPeakBytes, weightMode: r.weightMode, set: readSet(out),
    };
  } finally {
    await page.close();
  }
}

function sameBits(a: VectorSet, b: VectorSet): boolean {
  const hex = (x: ArrayLike<number>, f64: boolean) => Buffer.from((f64 ? Float64Array.from(x) : Float32Array.from(x)).buffer).toString("hex");
  return a.vectors.length === b.vectors.length && a.vectors.every((v, i) => hex(v, false) === hex(b.vectors[i]!, false)) && hex(a.singularValues!, true) === hex(b.singularValues!, true);
}

export async function benchWeb(args: string[] = []): Promise<void> {
  const log = (s: string) => console.error(s);
  const machine = machineInfo();
  const threads = Number(flag(args, "--threads") ?? Math.min(2, machine.cores));
  const reps = Number(flag(args, "--reps") ?? 2);
  const shape = flag(args, "--shape") ?? "0.6b";
  if (TARGET[shape] === undefined) throw new Error(`--shape ${shape}: one of ${Object.keys(TARGET).join(", ")}`);
  W.targetLayer = TARGET[shape]!;
  W.weights = flag(args, "--weights") ?? "auto";
  const model = flag(args, "--model") ?? ensureShapeCheckpoint(shape, log);
  if (!model) throw new Error(`no room on the disk for the ${shape}-shaped checkpoint (see the line above)`);
  const chromium = findChromiumBinary();
  if (!chromium) throw new Error("bench/web.ts needs Chromium (apt-get install -y chromium)");
  const config = JSON.parse(readFileSync(join(model, "config.json"), "utf8")) as { vocab_size: number };
  const tokens = workloadTokens(32, config.vocab_size);
  log(`web bench (${model}, 32 tokens, S=${W.sourceLayer} T=${W.targetLayer} K=4, top 8, tol 1e-3, ${threads} threads, ${reps} runs each, weights ${W.weights}): ${machineLine(machine)}`);

  const tmp = mkdtempSync(join(tmpdir(), "jacsteer-bench-web-"));
  const served = await startServe([]);
  const browser = await launchChromium(chromium);
  const runs: Run[] = [];
  try {
    for (let i = 0; i < reps; i++) {
      const n = nodeRun(model, tokens, threads, join(tmp, `node-${i}.safetensors`));
      log(`  node ${i + 1}: ${n.seconds.toFixed(2)} s (spawn to exit ${n.outsideSeconds.toFixed(2)} s), ${n.products} products`);
      runs.push(n);
      const t = await tabRun(browser, served.url, model, tokens, threads, join(tmp, `tab-${i}.safetensors`));
      log(`  tab  ${i + 1}: ${t.seconds.toFixed(2)} s (click to done ${t.outsideSeconds.toFixed(2)} s), ${t.products} products`);
      runs.push(t);
    }
  } finally {
    await browser.close();
    await served.stop();
  }
  const node = runs.filter((r) => r.where === "node"), tab = runs.filter((r) => r.where === "tab");
  const bitwise = runs.every((r) => sameBits(r.set, node[0]!.set));
  rmSync(tmp, { recursive: true, force: true });
  const min = (xs: number[]) => Math.min(...xs);
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const ratioMin = min(tab.map((r) => r.seconds)) / min(node.map((r) => r.seconds));
  const ratioMean = mean(tab.map((r) => r.seconds)) / mean(node.map((r) => r.seconds));
  const summary = {
    machine,
    model,
    workload: { ...W, tokens: tokens.length, threads },
    runs: runs.map(({ set: _set, ...r }) => r),
    bitwiseEqual: bitwise,
    ratio: { tabOverNodeMin: ratioMin, tabOverNodeMean: ratioMean },
    chromium: spawnSync(chromium, ["--version"], { encoding: "utf8" }).stdout.trim(),
  };
  const dir = join(packageRoot(), "bench", "results");
  // web.md: the 0.6B workload; web-1.7b-resident.md etc.: another shape, named by its weights flag.
  const base = shape === "0.6b" && W.weights === "auto" ? "web" : `web-${shape}-${W.weights}`;
  writeFileSync(join(dir, `${base}.json`), JSON.stringify(summary, null, 2) + "\n");
  const f = (x: number) => x.toFixed(2);
  const md = [
    "# The workload in a browser tab vs the Node command line",
    "",
    `Machine: ${machineLine(machine)}.`,
    `Load average at the start: ${machine.loadavg1.toFixed(2)}; the runs alternate Node, tab, Node, tab so that a change in the machine's load hits both.`,
    `Browser: ${summary.chromium}, headless (playwright-core), the page from \`jacsteer serve\` (cross-origin isolated), ${threads} threads (Web Workers) in the tab, \`--threads ${threads}\` in Node.`,
    "",
    `Workload: ${model.split("/").pop()} (BF16, random weights), the workload bench's 32 token ids, S = ${W.sourceLayer}, T = ${W.targetLayer}, K = 4, top 8, weights ${W.weights},`,
    "block Lanczos to residual <= 1e-3 sigma_1^2. Seconds are each run's own: from opening the checkpoint to the end of",
    "the solve (Node: `power-iter --json` `seconds`; tab: the page's compute worker, the same steps). Outside times: Node",
    "spawn to exit; tab: the click on Run to \"done\" (the page was already loaded).",
    `Results bitwise equal (vectors and singular values, every run): ${bitwise ? "yes" : "NO"}.`,
    "Regenerate with `npm run build && node --experimental-wasm-relaxed-simd dist/bench/web.js`.",
    "",
    markdownTable(
      ["run", "where", "seconds", "outside s", "products", "weights", "peak wasm memory", "peak RSS", "peak RSS, all Chromium processes", "kernels"],
      runs.map((r, i) => [
        String(Math.floor(i / 2) + 1), r.where === "node" ? "Node CLI" : "Chromium tab", f(r.seconds), f(r.outsideSeconds), String(r.products), r.weightMode ?? "–",
        `${(r.peakWasmBytes / 2 ** 30).toFixed(2)} GiB`, `${(r.peakRssBytes / 1e9).toFixed(2)} GB`, r.peakChromiumSumBytes !== undefined ? `${(r.peakChromiumSumBytes / 1e9).toFixed(2)} GB` : "–", r.kernels,
      ]),
    ),
    "",
    "Peak RSS: Node, the process's (/usr/bin/time -v); tab, the renderer process that holds the page and its Web Workers",
    "(VmHWM, sampled every 100 ms). The last column sums the RSS of every process of that Chromium at each sample and",
    "keeps the largest sum: an upper bound on the tab's footprint (pages shared between processes are counted in each).",
    "",
    `Tab / Node: ${ratioMin.toFixed(2)}x (fastest of each), ${ratioMean.toFixed(2)}x (means).`,
    "",
  ].join("\n");
  writeFileSync(join(dir, `${base}.md`), md);
  log(md);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  benchWeb(process.argv.slice(2)).catch((e: unknown) => {
    console.error(e instanceof Error ? (e.stack ?? e.message) : e);
    process.exit(1);
  });
}
