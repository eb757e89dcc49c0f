// The static page (web/index.html): pick a checkpoint folder, a prompt and S, T, K, n (the command
// line's defaults), run `power-iter` (Lanczos) in the compute worker (src/web/driver.ts), show its
// progress with an ETA, the spectrum and residual certificate (the report's SVG code: src/report/),
// offer the vector file for download, and compare it with a second vector file dropped on the page
// (src/compare/, as `jacsteer compare` prints it). Bundled by scripts/build-web.mjs.
import { decodeVectorFile, type VectorSet } from "../io/vector-file.js";
import { SafetensorsReader, bytesSource } from "../safetensors/reader.js";
import { renderReport, spectrumLabel, type SpectrumInput } from "../report/report.js";
import { compareVectorSets, formatComparison } from "../compare/compare.js";
import { defaultLayers } from "../jacobian/steering-jacobian.js";
import { parseQwen3Config } from "../model/config.js";
import { webThreadLimit } from "./worker-gemm.js";
import type { PickedFile } from "./file-checkpoint.js";
import type { DriverMessage, RunRequest, RunResult } from "./protocol.js";

declare const JACSTEER_VERSION: string;

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const input = (id: string) => $<HTMLInputElement>(id);

let picked: PickedFile[] = [];
let last: { result: RunResult; set: VectorSet; url: string } | undefined;
let other: { name: string; set: VectorSet } | undefined;

/** Threads: all cores where the page is cross-origin isolated, else one (and the page says why). */
function showIsolation(): void {
  const limit = webThreadLimit();
  const threads = input("threads");
  threads.max = String(limit);
  const asked = urlNumber("threads");
  threads.value = String(asked !== undefined && Number.isInteger(asked) && asked >= 1 ? Math.min(asked, limit) : limit);
  $("isolation").textContent = crossOriginIsolated
    ? `Cross-origin isolated: up to ${limit} threads (Web Workers over one shared WebAssembly memory).`
    : "Not cross-origin isolated (no COOP/COEP headers): running on ONE thread. Serve the page with `npx jacsteer serve` for threads.";
  $("isolation").className = crossOriginIsolated ? "ok" : "warn";
}

/** Every file below a dropped directory entry, with its path. */
async function entryFiles(entry: FileSystemEntry, prefix: string, out: PickedFile[]): Promise<void> {
  if (entry.isFile) {
    const file = await new Promise<File>((res, rej) => (entry as FileSystemFileEntry).file(res, rej));
    out.push({ path: prefix + entry.name, file });
  } else if (entry.isDirectory) {
    const reader = (entry as FileSystemDirectoryEntry).createReader();
    for (;;) {
      const batch = await new Promise<FileSystemEntry[]>((res, rej) => reader.readEntries(res, rej));
      if (!batch.length) break;
      for (const e of batch) await entryFiles(e, `${prefix}${entry.name}/`, out);
    }
  }
}

/** The File System Access API, where the browser has it. */
async function directoryHandleFiles(dir: FileSystemDirectoryHandle, prefix: string, out: PickedFile[]): Promise<void> {
  for await (const h of (dir as unknown as { values(): AsyncIterable<FileSystemHandle> }).values()) {
    if (h.kind === "file") out.push({ path: `${prefix}${dir.name}/${h.name}`, file: await (h as FileSystemFileHandle).getFile() });
    else await directoryHandleFiles(h as FileSystemDirectoryHandle, `${prefix}${dir.name}/`, out);
  }
}

async function setPicked(files: PickedFile[]): Promise<void> {
  picked = files;
  const config = files.filter((f) => f.path.endsWith("config.json") && !f.path.endsWith("_config.json")).sort((a, b) => a.path.length - b.path.length)[0];
  if (!config) {
    $("model").textContent = `no config.json among the ${files.length} picked file(s): pick a Qwen3 checkpoint folder`;
    $("model").className = "warn";
    return;
  }
  try {
    const cfg = parseQwen3Config(JSON.parse(await config.file.text()), config.path);
    const d = defaultLayers(cfg.numLayers);
    input("S").placeholder = String(d.source);
    input("T").placeholder = String(d.target);
    const bytes = files.reduce((s, f) => s + f.file.size, 0);
    $("model").textContent = `${config.path.replace(/\/?config\.json$/, "") || "(picked files)"}: ${cfg.numLayers} layers, hidden ${cfg.hiddenSize}; ${files.length} files, ${(bytes / 1e9).toFixed(2)} GB (read in slices, never whole)`;
    $("model").className = "";
    $<HTMLButtonElement>("run").disabled = false;
  } catch (e) {
    $("model").textContent = (e as Error).message;
    $("model").className = "warn";
  }
}

/** A number from the page's query string (?threads=2&minflops=0), or undefined. */
function urlNumber(name: string): number | undefined {
  const v = new URLSearchParams(location.search).get(name);
  return v === null || v === "" || !Number.isFinite(Number(v)) ? undefined : Number(v);
}

function optionalInt(id: string): number | undefined {
  const v = input(id).value.trim();
  return v === "" ? undefined : Number(v);
}

/** The token-ids field (power-iter --tokens): comma-separated non-negative integers, or empty. */
function tokenIds(): number[] | undefined {
  const v = input("tokens").value.trim();
  if (v === "") return undefined;
  const parts = v.split(",").map((x) => x.trim());
  if (parts.some((p) => !/^\d+$/.test(p))) throw new Error(`token ids "${v}": expected comma-separated non-negative integers`);
  return parts.map(Number);
}

function request(): RunRequest {
  return {
    type: "run",
    files: picked,
    prompt: $<HTMLTextAreaElement>("prompt").value,
    chat: input("chat").checked,
    tokens: tokenIds(),
    sourceLayer: optionalInt("S"),
    targetLayer: optionalInt("T"),
    positions: optionalInt("K"),
    numVectors: Number(input("n").value),
    tol: Number(input("tol").value),
    maxIters: optionalInt("maxIters"),
    seed: Number(input("seed").value),
    threads: Math.min(Number(input("threads").value), webThreadLimit()),
    weights: $<HTMLSelectElement>("weights").value as RunRequest["weights"],
    kernels: input("simd").checked ? "simd" : undefined,
    minParallelFlops: urlNumber("minflops"),
  };
}

function decode(bytes: Uint8Array, name: string): VectorSet {
  return decodeVectorFile(SafetensorsReader.open(bytesSource(bytes), name), name);
}

function show(line: string, cls = ""): void {
  const log = $("log");
  const div = document.createElement("div");
  div.textContent = line;
  if (cls) div.className = cls;
  log.appendChild(div);
  log.scrollTop = log.scrollHeight;
}

/** The report's page (src/report/) for this run, and the dropped file beside it. */
function renderResults(): void {
  if (!last) return;
  const spectra: SpectrumInput[] = [{ label: `this run (${spectrumLabel(last.result.fileName, last.set.metadata)})`, file: last.result.fileName, set: last.set }];
  const cosines = [];
  if (other?.set.singularValues) spectra.push({ label: other.name, file: other.name, set: other.set });
  if (other) {
    const rows = (s: VectorSet) => s.vectors.map((_, i) => i);
    cosines.push({ a: { name: last.result.fileName, file: last.result.fileName, rows: rows(last.set), set: last.set }, b: { name: other.name, file: other.name, rows: rows(other.set), set: other.set } });
  }
  const report = renderReport({ title: `jacsteer power-iter: ${last.result.model}`, version: JACSTEER_VERSION, spectra, cosines, ab: [] });
  $<HTMLIFrameElement>("report").srcdoc = report.html;
  $("report").hidden = false;
}

function showCertificate(r: RunResult, tol: number): void {
  const rows = r.singularValues.map((s, i) => `<tr><td>${i}</td><td>${s.toPrecision(8)}</td><td>${r.residuals[i]!.toExponential(3)}</td><td>${r.relativeResiduals[i]!.toExponential(2)}</td></tr>`);
  $("certificate").innerHTML =
    `<p>${r.converged ? `Converged: every residual ‖JᵀJ v − σ² v‖ ≤ ${tol} σ₁²` : "NOT converged (raise max iterations or the tolerance)"} after ${r.iterations} iterations, ${r.products} JᵀJ v products, ${r.seconds.toFixed(2)} s ` +
    `(${r.threads} thread${r.threads > 1 ? "s" : ""}, ${r.kernels}, weights ${r.weightMode}; S ${r.sourceLayer}, T ${r.targetLayer}, K ${r.positions}, ${r.tokens[0]!.length} tokens).</p>` +
    `<table><thead><tr><th>i</th><th>σ</th><th>residual ‖JᵀJ v − σ² v‖</th><th>/ σ₁²</th></tr></thead><tbody>${rows.join("")}</tbody></table>`;
}

function run(): void {
  let req: RunRequest;
  try {
    req = request();
  } catch (e) {
    $("status").textContent = `error: ${(e as Error).message}`;
    $("status").className = "error";
    return;
  }
  $("status").className = "";
  $<HTMLButtonElement>("run").disabled = true;
  $("log").textContent = "";
  $("status").textContent = "starting…";
  const worker = new Worker(new URL("driver.js", import.meta.url), { type: "module", name: "jacsteer-driver" });
  const finish = () => {
    worker.terminate();
    $<HTMLButtonElement>("run").disabled = false;
  };
  worker.onmessage = (e: MessageEvent<DriverMessage>) => {
    const m = e.data;
    if (m.type === "log") show(m.line);
    else if (m.type === "progress") {
      show(`${m.line} | ${m.eta}`);
      $("status").textContent = `iteration ${m.iteration}: largest relative residual ${m.relativeResidual.toExponential(2)} (target ${m.tol}); ${m.eta}`;
    } else if (m.type === "error") {
      show(`error: ${m.message}`, "error");
      $("status").textContent = `error: ${m.message}`;
      $("status").className = "error";
      finish();
    } else if (m.type === "done") {
      const r = m.result;
      if (last) URL.revokeObjectURL(last.url);
      const url = URL.createObjectURL(new Blob([r.file as BlobPart], { type: "application/octet-stream" }));
      last = { result: r, set: decode(r.file, r.fileName), url };
      const a = $<HTMLAnchorElement>("download");
      a.href = url;
      a.download = r.fileName;
      a.textContent = `Download ${r.fileName} (${r.file.length} bytes, the format of power-iter --out)`;
      $("results").hidden = false;
      $("status").textContent = `done in ${r.seconds.toFixed(2)} s`;
      $("status").className = "ok";
      showCertificate(r, req.tol);
      // The run's summary for scripts driving the page (the tests, bench/web.ts): power-iter --json's numbers.
      (window as unknown as { jacsteerResult: unknown }).jacsteerResult = { ...r, file: undefined };
      renderResults();
      finish();
    }
  };
  worker.onerror = (e) => {
    show(`error: the compute worker failed (${e.message})`, "error");
    finish();
  };
  worker.postMessage(req);
}

async function compareWith(file: File): Promise<void> {
  try {
    other = { name: file.name, set: decode(new Uint8Array(await file.arrayBuffer()), file.name) };
    if (!last) throw new Error("run power-iter first: the dropped file is compared with this run's vectors");
    const rows = (s: VectorSet) => s.vectors.map((_, i) => i);
    const res = compareVectorSets(last.set.vectors, other.set.vectors, { a: (i) => `A ${last!.result.fileName}:${i}`, b: (j) => `B ${file.name}:${j}` });
    $("compare").textContent = formatComparison(res, { name: last.result.fileName, rows: rows(last.set), method: last.set.metadata.method }, { name: file.name, rows: rows(other.set), method: other.set.metadata.method });
    $("compare").className = "";
    renderResults();
  } catch (e) {
    $("compare").textContent = `error: ${(e as Error).message}`;
    $("compare").className = "error";
  }
}

function setup(): void {
  $("version").textContent = JACSTEER_VERSION;
  showIsolation();
  input("folder").addEventListener("change", () => {
    const files = Array.from(input("folder").files ?? []);
    void setPicked(files.map((f) => ({ path: f.webkitRelativePath || f.name, file: f })));
  });
  const open = $<HTMLButtonElement>("open");
  const w = window as unknown as { showDirectoryPicker?: () => Promise<FileSystemDirectoryHandle> };
  if (w.showDirectoryPicker) {
    open.hidden = false;
    open.addEventListener("click", async () => {
      const out: PickedFile[] = [];
      await directoryHandleFiles(await w.showDirectoryPicker!(), "", out);
      await setPicked(out);
    });
  }
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => e.preventDefault());
  drop.addEventListener("drop", async (e) => {
    e.preventDefault();
    const out: PickedFile[] = [];
    for (const item of Array.from(e.dataTransfer?.items ?? [])) {
      const entry = item.webkitGetAsEntry();
      if (entry) await entryFiles(entry, "", out);
    }
    await setPicked(out);
  });
  const cmp = $("compare-drop");
  cmp.addEventListener("dragover", (e) => e.preventDefault());
  cmp.addEventListener("drop", (e) => {
    e.preventDefault();
    const f = e.dataTransfer?.files[0];
    if (f) void compareWith(f);
  });
  input("compare-file").addEventListener("change", () => {
    const f = input("compare-file").files?.[0];
    if (f) void compareWith(f);
  });
  $("run").addEventListener("click", run);
}

setup();
