// Matrix products over worker threads (Node): a Piscina pool of `threads - 1` workers plus the calling
// thread, all computing on the one shared WebAssembly.Memory. Workers get the compiled module and the
// memory in workerData (workers/gemm-worker.ts), so weights are never copied and nothing is
// recompiled; relaxed SIMD reaches them because src/node/relaxed-simd.ts set the V8 flag in this
// thread before the module was compiled. How a dispatch is cut into units and shared is
// src/engine/parallel-gemm.ts SharedCounterGemm, the same for the browser's Web Workers.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { Piscina } from "piscina";
import type { Runtime } from "../runtime/runtime.js";
import { SerialGemm, SharedCounterGemm, type ParallelGemm, type UnitWork } from "../engine/parallel-gemm.js";
import { packageRoot } from "./runtime.js";

export interface ThreadPoolOptions {
  /** The compiled worker entry (default: <package>/dist/workers/gemm-worker.js). */
  workerFile?: string;
  /** Dispatches with fewer flops than this run on the calling thread only. */
  minParallelFlops?: number;
}

/** Where the compiled worker lives; tests and source runs need `npm run build:ts` first. */
export function defaultWorkerFile(): string {
  return join(packageRoot(), "dist", "workers", "gemm-worker.js");
}

/**
 * `threads` computing threads: 1 gives SerialGemm (no worker is started), more gives a pool of
 * threads - 1 workers that are started and ready when the promise resolves.
 */
export async function createParallelGemm(rt: Runtime, threads: number, opts: ThreadPoolOptions = {}): Promise<ParallelGemm> {
  if (!Number.isInteger(threads) || threads < 1) throw new Error(`threads must be a positive integer, got ${threads}`);
  if (threads === 1) return new SerialGemm(rt);
  return PiscinaGemm.start(rt, threads, opts);
}

/** SharedCounterGemm over a Piscina pool (one task per worker and dispatch). */
export class PiscinaGemm extends SharedCounterGemm {
  static async start(rt: Runtime, threads: number, opts: ThreadPoolOptions = {}): Promise<PiscinaGemm> {
    const filename = opts.workerFile ?? defaultWorkerFile();
    if (!existsSync(filename)) throw new Error(`${filename}: worker entry missing; run \`npm run build\` (tsc compiles workers/ to dist/workers)`);
    const workers = threads - 1;
    const counter = new SharedArrayBuffer(4);
    const pool = new Piscina({
      filename,
      minThreads: workers,
      maxThreads: workers,
      idleTimeout: Infinity,
      workerData: { module: rt.module, memory: rt.memory, counter },
    });
    try {
      // Wait until every worker has loaded and instantiated the module: a dispatch that finds no ready
      // worker would queue its slices behind the start-up instead of running beside this thread.
      // Each ping blocks its worker briefly so the others are handed the remaining pings.
      await Promise.all(Array.from({ length: workers }, () => pool.run({ pingMs: 20 })));
    } catch (e) {
      await pool.destroy();
      throw e;
    }
    const post = (work: UnitWork) => Array.from({ length: workers }, () => pool.run(work) as Promise<number>);
    return new PiscinaGemm(rt, threads, { post, close: () => pool.destroy() }, counter, opts.minParallelFlops);
  }
}
