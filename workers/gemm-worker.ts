// A Piscina worker for src/node/thread-pool.ts: instantiates the kernel module the main thread compiled
// (passed in workerData, so nothing is recompiled) on the main thread's shared WebAssembly.Memory,
// and runs matrix-product slices and kernel-call tasks on it. Tasks carry only offsets into that
// memory, never data. Self-contained on purpose: it imports nothing from src/.
import { workerData } from "node:worker_threads";

interface GemmWorkerData {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
}

/** A task: gemmPacked slices (9 numbers per call, src/engine/parallel-gemm.ts), kernel-call tasks, or a ping. */
export interface GemmTask {
  slices?: number[];
  /** KernelTask[]: each a list of [kernel name, ...numeric args]. */
  tasks?: Array<Array<[string, ...number[]]>>;
  /** Milliseconds to block before answering: lets the pool start-up reach every worker. */
  pingMs?: number;
}

const { module, memory } = workerData as GemmWorkerData;
const instance = new WebAssembly.Instance(module, {
  env: {
    memory,
    abort(_msg: number, _file: number, line: number, col: number) {
      throw new Error(`kernel abort at ${line}:${col}`);
    },
  },
});
const kernels = instance.exports as unknown as Record<string, (...args: number[]) => unknown>;
type Gemm = (a: number, lda: number, packed: number, c: number, ldc: number, M: number, N: number, K: number, acc: number) => void;
const gemmPacked = kernels.gemmPacked as unknown as Gemm;
const pingCell = new Int32Array(new SharedArrayBuffer(4));

export default function run(task: GemmTask): number {
  if (task.pingMs) Atomics.wait(pingCell, 0, 0, task.pingMs);
  const s = task.slices;
  if (s) {
    for (let i = 0; i < s.length; i += 9) gemmPacked(s[i], s[i + 1], s[i + 2], s[i + 3], s[i + 4], s[i + 5], s[i + 6], s[i + 7], s[i + 8]);
  }
  if (task.tasks) {
    for (const calls of task.tasks) {
      for (const [name, ...args] of calls) {
        const f = kernels[name];
        if (typeof f !== "function") throw new Error(`no kernel named ${name}`);
        f(...args);
      }
    }
  }
  return 0;
}
