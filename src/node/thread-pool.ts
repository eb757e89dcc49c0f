// Matrix products over worker threads (Node): a Piscina pool of `threads - 1` workers plus the calling
// thread, all computing on the one shared WebAssembly.Memory. Workers get the compiled module and the
// memory in workerData (workers/gemm-worker.ts), so weights are never copied and nothing is
// recompiled; relaxed SIMD reaches them because src/node/relaxed-simd.ts set the V8 flag in this
// thread before the module was compiled.
//
// A dispatch cuts the work into units (panel ranges of the products, src/engine/parallel-gemm.ts, or
// kernel tasks), posts the list to every worker, and every thread, the calling one included, takes
// units from a shared atomic counter until none is left; then the calling thread awaits the workers. A Piscina round trip costs about
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
  type GemmJob,
  type KernelTask,
  type ParallelGemm,
} from "../engine/parallel-gemm.js";
import { packageRoot } from "./runtime.js";

/** Work units per thread and dispatch: small enough that a late or slow thread costs little, large enough (each still >= about 1 ms on the 0.6B workload) that the counter is not contended. */
const CHUNKS_PER_THREAD = 4;

/** What a worker is handed (workers/gemm-worker.ts GemmTask). */
interface GemmWork {
  gemm?: number[][];
  tasks?: readonly KernelTask[];
  count?: number;
}

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
  /** Work units the workers ran (the rest ran on the calling thread): to check that they take part. */
  workerUnits = 0;
  /** The next unit of the current dispatch, shared with the workers (workers/gemm-worker.ts). */
  private readonly counter: Int32Array;

  private constructor(
    private readonly rt: Runtime,
    readonly threads: number,
    private readonly pool: Piscina,
    private readonly minParallelFlops: number,
    counter: SharedArrayBuffer,
  ) {
    this.counter = new Int32Array(counter);
  }

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
    const self = new PiscinaGemm(rt, threads, pool, opts.minParallelFlops ?? 8e6, counter);
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
    const chunks: number[][] = [];
    const n = this.threads * CHUNKS_PER_THREAD;
    for (let part = 0; part < n; part++) {
      const slices = gemmSlices(jobs, part, n);
      if (slices.length) chunks.push(slices);
    }
    return this.share({ gemm: chunks }, (i) => runGemmSlices(this.rt, chunks[i]!), chunks.length);
  }

  runTasks(tasks: readonly KernelTask[], flops: number): Promise<void> | void {
    if (this.closed) throw new Error("thread pool is closed");
    if (flops < this.minParallelFlops || tasks.length < 2) {
      runKernelTasks(this.rt, tasks);
      return;
    }
    return this.share({ tasks }, (i) => runKernelTasks(this.rt, [tasks[i]!]), tasks.length);
  }

  /**
   * Hand `count` work units to every worker and to this thread: each thread takes the next unit
   * from a shared counter until none is left (so a thread that starts late or runs slower takes
   * fewer), then this thread waits for the workers, also when its own part throws, so that no
   * worker still touches memory the caller is about to reuse.
   */
  private share(units: GemmWork, runUnit: (i: number) => void, count: number): Promise<void> {
    Atomics.store(this.counter, 0, 0);
    const task: GemmWork = { ...units, count };
    const pending = Array.from({ length: this.threads - 1 }, () => this.pool.run(task));
    try {
      for (let i = Atomics.add(this.counter, 0, 1); i < count; i = Atomics.add(this.counter, 0, 1)) runUnit(i);
    } catch (e) {
      return Promise.allSettled(pending).then(() => {
        throw e;
      });
    }
    return Promise.all(pending).then((done) => {
      for (const d of done) this.workerUnits += d as number;
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.destroy();
  }
}
