// Matrix products split over threads, behind a small interface so the engine stays platform-neutral:
// SerialGemm (here) runs on the calling thread; SharedCounterGemm (here) hands the same slices to
// worker threads that instantiate the kernel module on the one shared memory: a Piscina pool in Node
// (src/node/thread-pool.ts), Web Workers in a browser (src/web/worker-gemm.ts). Both run the units
// with workers/gemm-units.ts.
//
// A dispatch is a list of jobs C (+)= A * B with B packed (assembly/matmul.ts gemmPacked). Every job
// is cut into `parts` ranges of 8-column panels of C, and part i of every job forms one work unit,
// run by one thread in job order. So jobs that accumulate into the same C (gx = gq Wq + gk Wk + gv Wv)
// chain correctly without synchronisation: the same thread owns the same columns in each of them.
// gemmPacked sums each element over k in the same order whatever the panel range, so the result is
// bitwise the same for any number of parts.
//
// The per-row work between products (RMSNorm, RoPE, attention, SwiGLU of each batch segment) is
// dispatched the same way as independent tasks: lists of kernel calls, each task run whole by one
// thread, so which thread runs it cannot change its result.
import type { Runtime } from "../runtime/runtime.js";
import { PANEL, type PackedMatrix } from "../kernels/matmul.js";

/**
 * Where a job's B comes from when it is packed right before the product (streamed weights): the
 * weight in its stored dtype at `src`, packed by assembly/matmul.ts packPanels with `kind` (layout
 * and dtype) and row stride `ld` elements. Each thread packs exactly the panels it multiplies, into
 * `packed.ptr`, so packing needs no synchronisation and gives the panels a resident pack would.
 */
export interface PackSource {
  src: number;
  kind: number;
  ld: number;
}

/** C[m, packed.n] (+)= A[m, packed.k] * B, A rows lda floats apart, C rows ldc floats apart. */
export interface GemmJob {
  a: number;
  lda?: number;
  packed: PackedMatrix;
  /** Pack B's panels from here first (into packed.ptr); absent when B is already packed. */
  pack?: PackSource;
  c: number;
  ldc?: number;
  m: number;
  accumulate?: boolean;
}

/**
 * Numbers per slice: the arguments of one rt.k.gemmSlice call (assembly/matmul.ts): a gemmPacked call
 * (a, lda, packed, c, ldc, M, N, K, accumulate) preceded, when src != 0, by packPanels(src, kind, ld,
 * n0, n0 + N, K, packed) (src, kind, ld, n0); for a BF16 weight's forward product the kernel packs
 * BF16 panels instead (or multiplies prepacked ones, dtype DT_BF16_PANELS), for a few rows it reads the
 * stored weight directly (gemmDirectBt): bitwise the same C on every path.
 */
export const SLICE_ARGS = 13;

/** One kernel call: an export of the kernel module (rt.k) and its numeric arguments. */
export type KernelCall = [name: string, ...args: number[]];

/** Kernel calls run in order by one thread; tasks of one dispatch must not write what others read. */
export type KernelTask = KernelCall[];

export interface ParallelGemm {
  /** Threads that compute (the calling thread included). */
  readonly threads: number;
  /** Run the jobs; resolves (or returns) when every slice is done. */
  run(jobs: readonly GemmJob[]): Promise<void> | void;
  /**
   * Run independent tasks, spread over the threads (each task whole on one thread).
   * `flops` is a rough cost of the whole dispatch: small ones stay on the calling thread.
   */
  runTasks(tasks: readonly KernelTask[], flops: number): Promise<void> | void;
  /** Stop any worker threads. Idempotent. */
  close(): Promise<void>;
}

/** 2 M N K summed over the jobs. */
export function gemmFlops(jobs: readonly GemmJob[]): number {
  let f = 0;
  for (const j of jobs) f += 2 * j.m * j.packed.n * j.packed.k;
  return f;
}

/**
 * Flops a weight element read from its stored bytes in the call (packed, or read directly for a few
 * rows) is worth in time: on this project's machine the direct kernel reads a BF16 [3072, 1024] weight
 * for one row in 0.6 ms, as long as 30 MFLOP of packed product take (bench/results/generate.md), about
 * 10 flops an element; 8 stays on the safe side.
 */
const READ_FLOPS_PER_ELEMENT = 8;

/**
 * The cost of a dispatch in flop-equivalents, to choose between the calling thread and all threads:
 * the products' flops plus the reading of every weight the call packs or reads. With a row or two
 * (decoding one sequence) a product is bound by that reading, not its flops: 2 M N K alone kept
 * o_proj and down_proj of a Qwen3-0.6B layer on one thread while the other core waited.
 */
export function gemmDispatchCost(jobs: readonly GemmJob[]): number {
  let f = 0;
  for (const j of jobs) f += (2 * j.m + (j.pack ? READ_FLOPS_PER_ELEMENT : 0)) * j.packed.n * j.packed.k;
  return f;
}

/**
 * The slices of thread `part` of `parts`, flattened (SLICE_ARGS numbers per gemmPacked call), in job
 * order. Job j's panels [floor(i P / parts), floor((i + 1) P / parts)) go to part i.
 */
export function gemmSlices(jobs: readonly GemmJob[], part: number, parts: number): number[] {
  const out: number[] = [];
  for (const j of jobs) {
    const { n: N, k: K, ptr } = j.packed;
    const lda = j.lda ?? K;
    const ldc = j.ldc ?? N;
    if (j.m <= 0 || N <= 0) continue;
    const panels = Math.ceil(N / PANEL);
    const p0 = Math.floor((part * panels) / parts);
    const p1 = Math.floor(((part + 1) * panels) / parts);
    if (p1 <= p0) continue;
    const n0 = p0 * PANEL;
    const n1 = Math.min(N, p1 * PANEL);
    out.push(j.a, lda, ptr + 4 * n0 * K, j.c + 4 * n0, ldc, j.m, n1 - n0, K, j.accumulate ? 1 : 0);
    if (j.pack) out.push(j.pack.src, j.pack.kind, j.pack.ld, n0);
    else out.push(0, 0, 0, 0);
  }
  return out;
}

/** Run flattened slices on this thread (workers/gemm-worker.ts runs them the same way). */
export function runGemmSlices(rt: Runtime, slices: readonly number[]): void {
  const slice = rt.k.gemmSlice;
  for (let s = 0; s < slices.length; s += SLICE_ARGS) {
    slice(slices[s], slices[s + 1], slices[s + 2], slices[s + 3], slices[s + 4], slices[s + 5], slices[s + 6], slices[s + 7], slices[s + 8], slices[s + 9], slices[s + 10], slices[s + 11], slices[s + 12]);
  }
}

function checkJob(j: GemmJob): void {
  const lda = j.lda ?? j.packed.k;
  const ldc = j.ldc ?? j.packed.n;
  if (!Number.isInteger(j.m) || j.m < 0) throw new Error(`gemm job: bad row count ${j.m}`);
  if (lda < j.packed.k || ldc < j.packed.n) throw new Error(`gemm job: lda=${lda} < K=${j.packed.k} or ldc=${ldc} < N=${j.packed.n}`);
}

/** Run kernel tasks on this thread. */
export function runKernelTasks(rt: Runtime, tasks: readonly KernelTask[]): void {
  const k = rt.k as unknown as Record<string, (...args: number[]) => unknown>;
  for (const task of tasks) {
    for (const [name, ...args] of task) {
      const f = k[name];
      if (typeof f !== "function") throw new Error(`no kernel named ${name}`);
      f(...args);
    }
  }
}

/** Validate a dispatch (the kernels do not check bounds). */
export function checkGemmJobs(jobs: readonly GemmJob[]): void {
  for (const j of jobs) checkJob(j);
}

/** Everything on the calling thread: what `--threads 1` uses (no worker is started). */
export class SerialGemm implements ParallelGemm {
  readonly threads = 1;
  constructor(private readonly rt: Runtime) {}

  run(jobs: readonly GemmJob[]): void {
    checkGemmJobs(jobs);
    runGemmSlices(this.rt, gemmSlices(jobs, 0, 1));
  }

  runTasks(tasks: readonly KernelTask[]): void {
    runKernelTasks(this.rt, tasks);
  }

  async close(): Promise<void> {}
}

/**
 * The same threads for a second user that must not stop them: close() does nothing. An atlas or a
 * stability run hands the engine's threads to the KL forward or to one engine after another.
 */
export function borrowGemm(gemm: ParallelGemm): ParallelGemm {
  return { threads: gemm.threads, run: (jobs) => gemm.run(jobs), runTasks: (tasks, flops) => gemm.runTasks(tasks, flops), close: async () => {} };
}

/** Work units per thread and dispatch: small enough that a late or slow thread costs little, large enough (each still >= about 1 ms on the 0.6B workload) that the counter is not contended. */
const CHUNKS_PER_THREAD = 4;

/** What a worker is handed for one dispatch (workers/gemm-units.ts GemmTask). */
export interface UnitWork {
  gemm?: number[][];
  tasks?: readonly KernelTask[];
  count?: number;
}

/**
 * The worker threads of a SharedCounterGemm: `post` hands one dispatch to every worker and returns
 * one promise per worker, resolving with the number of units it ran (workers/gemm-units.ts).
 */
export interface UnitWorkers {
  post(work: UnitWork): Promise<number>[];
  close(): Promise<void>;
}

/**
 * `threads` computing threads: the calling one and `threads - 1` workers over the one shared memory.
 * A dispatch cuts the work into units (panel ranges of the products, or kernel tasks), posts the list
 * to every worker, and every thread, the calling one included, takes units from a shared atomic
 * counter until none is left; then the calling thread awaits the workers. A round trip to the workers
 * costs tens of microseconds, so dispatches below `minParallelFlops` (8 MFLOP, about 0.15 ms of work;
 * products counted with the weights they read, gemmDispatchCost) run on the calling thread alone; that choice never changes the result, which is bitwise the same
 * for any thread count.
 */
export class SharedCounterGemm implements ParallelGemm {
  private closed = false;
  /** Work units the workers ran (the rest ran on the calling thread): to check that they take part. */
  workerUnits = 0;
  /** The next unit of the current dispatch, shared with the workers. */
  private readonly counter: Int32Array;

  constructor(
    private readonly rt: Runtime,
    readonly threads: number,
    private readonly workers: UnitWorkers,
    counter: SharedArrayBuffer,
    private readonly minParallelFlops = 8e6,
  ) {
    this.counter = new Int32Array(counter);
  }

  run(jobs: readonly GemmJob[]): Promise<void> | void {
    if (this.closed) throw new Error("thread pool is closed");
    checkGemmJobs(jobs);
    if (gemmDispatchCost(jobs) < this.minParallelFlops) {
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
  private share(units: UnitWork, runUnit: (i: number) => void, count: number): Promise<void> {
    Atomics.store(this.counter, 0, 0);
    const pending = this.workers.post({ ...units, count });
    try {
      for (let i = Atomics.add(this.counter, 0, 1); i < count; i = Atomics.add(this.counter, 0, 1)) runUnit(i);
    } catch (e) {
      return Promise.allSettled(pending).then(() => {
        throw e;
      });
    }
    return Promise.all(pending).then((done) => {
      for (const d of done) this.workerUnits += d;
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.workers.close();
  }
}
