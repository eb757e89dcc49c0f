// What a worker thread of src/engine/parallel-gemm.ts SharedCounterGemm runs, in Node (a Piscina
// worker, workers/gemm-worker.ts) and in a browser (a Web Worker, workers/web-gemm-worker.ts):
// instantiate the kernel module the main thread compiled (so nothing is recompiled) on the main
// thread's shared WebAssembly.Memory, and run work units of a dispatch on it: matrix-product slices
// and kernel-call tasks. Units carry only offsets into that memory, never data; the threads take them
// from a shared atomic counter. Self-contained on purpose: it imports nothing from src/.

/** A dispatch (or a ping): `count` units, either gemm slice lists or kernel tasks. */
export interface GemmTask {
  /** Unit i: gemmPacked slices, 13 numbers per call (src/engine/parallel-gemm.ts SLICE_ARGS and runGemmSlices). */
  gemm?: number[][];
  /** Unit i: a KernelTask, a list of [kernel name, ...numeric args] run in order. */
  tasks?: Array<Array<[string, ...number[]]>>;
  count?: number;
  /** Milliseconds to block before answering: lets the pool start-up reach every worker. */
  pingMs?: number;
}

/** The worker's side of a dispatch: runs units until the shared counter passes `count`; returns how many it ran. */
export function unitRunner(module: WebAssembly.Module, memory: WebAssembly.Memory, counter: SharedArrayBuffer): (task: GemmTask) => number {
  const next = new Int32Array(counter);
  const instance = new WebAssembly.Instance(module, {
    env: {
      memory,
      abort(_msg: number, _file: number, line: number, col: number) {
        throw new Error(`kernel abort at ${line}:${col}`);
      },
    },
  });
  const kernels = instance.exports as unknown as Record<string, (...args: number[]) => unknown>;
  type Slice = (a: number, lda: number, packed: number, c: number, ldc: number, M: number, N: number, K: number, acc: number, src: number, kind: number, ld: number, n0: number) => void;
  const gemmSlice = kernels.gemmSlice as unknown as Slice;
  const pingCell = new Int32Array(new SharedArrayBuffer(4));

  function runUnit(task: GemmTask, i: number): void {
    const s = task.gemm?.[i];
    if (s) {
      for (let j = 0; j < s.length; j += 13) {
        // The same call as runGemmSlices makes (streamed weights packed first, or read directly).
        gemmSlice(s[j], s[j + 1], s[j + 2], s[j + 3], s[j + 4], s[j + 5], s[j + 6], s[j + 7], s[j + 8], s[j + 9], s[j + 10], s[j + 11], s[j + 12]);
      }
    }
    const calls = task.tasks?.[i];
    if (calls) {
      for (const [name, ...args] of calls) {
        const f = kernels[name];
        if (typeof f !== "function") throw new Error(`no kernel named ${name}`);
        f(...args);
      }
    }
  }

  return (task: GemmTask): number => {
    if (task.pingMs) Atomics.wait(pingCell, 0, 0, task.pingMs);
    const count = task.count ?? 0;
    let done = 0;
    for (let i = Atomics.add(next, 0, 1); i < count; i = Atomics.add(next, 0, 1)) {
      runUnit(task, i);
      done++;
    }
    return done;
  };
}
