// Matrix products over Web Workers (browser): the counterpart of src/node/thread-pool.ts. The
// dispatch (units, shared counter, minimum size) is src/engine/parallel-gemm.ts SharedCounterGemm;
// here only the workers: `threads - 1` module Web Workers (workers/web-gemm-worker.ts), each handed
// the compiled module, the shared WebAssembly.Memory and the counter once, then one message per
// dispatch. Needs a cross-origin-isolated page (SharedArrayBuffer); without it, one thread.
import type { Runtime } from "../runtime/runtime.js";
import { SerialGemm, SharedCounterGemm, type ParallelGemm, type UnitWork } from "../engine/parallel-gemm.js";

/** Threads the page may use: navigator.hardwareConcurrency where cross-origin isolated, else 1. */
export function webThreadLimit(): number {
  const g = globalThis as { crossOriginIsolated?: boolean; navigator?: { hardwareConcurrency?: number } };
  return g.crossOriginIsolated ? Math.max(1, g.navigator?.hardwareConcurrency ?? 1) : 1;
}

interface Channel {
  worker: Worker;
  waiting: Array<{ resolve: (n: number) => void; reject: (e: Error) => void }>;
}

function channel(url: string | URL): Channel {
  const c: Channel = { worker: new Worker(url, { type: "module", name: "jacsteer-gemm" }), waiting: [] };
  c.worker.onmessage = (e: MessageEvent<{ done?: number; error?: string }>) => {
    const w = c.waiting.shift();
    if (!w) return;
    if (e.data.error !== undefined) w.reject(new Error(`gemm worker: ${e.data.error}`));
    else w.resolve(e.data.done ?? 0);
  };
  c.worker.onerror = (e: ErrorEvent) => {
    e.preventDefault();
    for (const w of c.waiting.splice(0)) w.reject(new Error(`gemm worker failed: ${e.message || "could not load"}`));
  };
  return c;
}

function send(c: Channel, msg: unknown): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    c.waiting.push({ resolve, reject });
    c.worker.postMessage(msg);
  });
}

/**
 * `threads` computing threads: 1 gives SerialGemm (no worker), more starts threads - 1 Web Workers
 * from `workerUrl` (the bundled workers/web-gemm-worker.ts) and resolves when each has instantiated
 * the module.
 */
export async function createWebGemm(rt: Runtime, threads: number, workerUrl: string | URL, opts: { minParallelFlops?: number } = {}): Promise<ParallelGemm> {
  if (!Number.isInteger(threads) || threads < 1) throw new Error(`threads must be a positive integer, got ${threads}`);
  if (threads === 1) return new SerialGemm(rt);
  if (typeof SharedArrayBuffer === "undefined") throw new Error("more than one thread needs SharedArrayBuffer: serve the page cross-origin isolated (`jacsteer serve`)");
  const counter = new SharedArrayBuffer(4);
  const channels = Array.from({ length: threads - 1 }, () => channel(workerUrl));
  const close = async () => channels.forEach((c) => c.worker.terminate());
  try {
    await Promise.all(channels.map((c) => send(c, { module: rt.module, memory: rt.memory, counter })));
  } catch (e) {
    await close();
    throw e;
  }
  const post = (work: UnitWork) => channels.map((c) => send(c, work));
  return new SharedCounterGemm(rt, threads, { post, close }, counter, opts.minParallelFlops);
}

/**
 * What the one-call functions take to run matrix products on `threads` threads (default: all the
 * browser offers): `createGemm` starts `threads - 1` Web Workers from gemm-worker.js beside the bundle
 * (or in `base`). A page that is not cross-origin isolated can share no memory with workers: there it
 * is one thread, and the returned `threads` says so.
 */
export function webThreads(threads = webThreadLimit(), opts: { base?: string | URL; minParallelFlops?: number } = {}): { threads: number; createGemm: (rt: Runtime) => Promise<ParallelGemm> } {
  if (!Number.isInteger(threads) || threads < 1) throw new Error(`threads must be a positive integer, got ${threads}`);
  const n = Math.min(threads, webThreadLimit());
  return { threads: n, createGemm: (rt) => createWebGemm(rt, n, new URL("gemm-worker.js", opts.base ?? import.meta.url), { minParallelFlops: opts.minParallelFlops }) };
}
