// Matrix products over worker threads (Node): a Piscina pool of `threads - 1` workers plus the calling
// thread, all computing on the one shared WebAssembly.Memory. Workers get the compiled module and the
// memory in workerData (workers/gemm-worker.ts), so weights are never copied and nothing is
// recompiled; relaxed SIMD reaches them because src/node/relaxed-simd.ts set the V8 flag in this
// thread before the module was compiled.
//
// A dispatch posts each worker its slices (src/engine/parallel-gemm.ts), then the calling thread
// computes its own part synchronously and awaits the workers. A Piscina round trip costs about
// 70 us, so dispatches below `minParallelFlops` (default 8 MFLOP, about 0.15 ms of work) run on the
// calling thread alone; that choice never changes the result, which is bitwise the same for any
// thread count.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { Piscina } from "piscina";
import type { Runtime } from "../runtime/runtime.js";
import {
  SerialGemm,
  checkGemmJobs,
  gemmFlops,
  gemmSlices,
  runGemmSlices,
  runKernelTasks,
  taskRange,
  type GemmJob,
  type KernelTask,
  type ParallelGemm,
} from "../engine/parallel-gemm.js";
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

export class PiscinaGemm implements ParallelGemm {
  private closed = false;

  private constructor(
    private readonly rt: Runtime,
    readonly threads: number,
    private readonly pool: Piscina,
    private readonly minParallelFlops: number,
  ) {}

  static async start(rt: Runtime, threads: number, opts: ThreadPoolOptions = {}): Promise<PiscinaGemm> {
    const filename = opts.workerFile ?? defaultWorkerFile();
    if (!existsSync(filename)) throw new Error(`${filename}: worker entry missing; run \`npm run build\` (tsc compiles workers/ to dist/workers)`);
    const workers = threads - 1;
    const pool = new Piscina({
      filename,
      minThreads: workers,
      maxThreads: workers,
      idleTimeout: Infinity,
      workerData: { module: rt.module, memory: rt.memory },
    });
    const self = new PiscinaGemm(rt, threads, pool, opts.minParallelFlops ?? 8e6);
    try {
      // Wait until every worker has loaded and instantiated the module: a dispatch that finds no ready
      // worker would queue its slices behind the start-up instead of running beside this thread.
      // Each ping blocks its worker briefly so the others are handed the remaining pings.
      await Promise.all(Array.from({ length: workers }, () => pool.run({ pingMs: 20 })));
    } catch (e) {
      await pool.destroy();
      throw e;
    }
    return self;
  }

  run(jobs: readonly GemmJob[]): Promise<void> | void {
    if (this.closed) throw new Error("thread pool is closed");
    checkGemmJobs(jobs);
    if (gemmFlops(jobs) < this.minParallelFlops) {
      runGemmSlices(this.rt, gemmSlices(jobs, 0, 1));
      return;
    }
    const pending: Promise<unknown>[] = [];
    for (let part = 1; part < this.threads; part++) {
      const slices = gemmSlices(jobs, part, this.threads);
      if (slices.length) pending.push(this.pool.run({ slices }));
    }
    // On a throw, the workers still finish touching the memory before the caller frees it.
    return this.finish(() => runGemmSlices(this.rt, gemmSlices(jobs, 0, this.threads)), pending);
  }

  runTasks(tasks: readonly KernelTask[], flops: number): Promise<void> | void {
    if (this.closed) throw new Error("thread pool is closed");
    if (flops < this.minParallelFlops || tasks.length < 2) {
      runKernelTasks(this.rt, tasks);
      return;
    }
    const pending: Promise<unknown>[] = [];
    for (let part = 1; part < this.threads; part++) {
      const [t0, t1] = taskRange(tasks.length, part, this.threads);
      if (t1 > t0) pending.push(this.pool.run({ tasks: tasks.slice(t0, t1) }));
    }
    const [t0, t1] = taskRange(tasks.length, 0, this.threads);
    return this.finish(() => runKernelTasks(this.rt, tasks.slice(t0, t1)), pending);
  }

  /** Run this thread's share, then wait for the workers (also when the share throws). */
  private finish(own: () => void, pending: Promise<unknown>[]): Promise<void> {
    try {
      own();
    } catch (e) {
      return Promise.allSettled(pending).then(() => {
        throw e;
      });
    }
    return Promise.all(pending).then(() => undefined);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.destroy();
  }
}
