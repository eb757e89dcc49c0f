// A Web Worker for src/web/worker-gemm.ts, the browser's counterpart of workers/gemm-worker.ts: the
// first message brings the compiled module, the shared memory and the counter; every later message
// is one dispatch, run by workers/gemm-units.ts and answered with the number of units this worker
// ran (or the error). Messages are answered in order, one each.
import { unitRunner, type GemmTask } from "./gemm-units.js";

interface Init {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  counter: SharedArrayBuffer;
}

const scope = globalThis as unknown as { onmessage: ((e: MessageEvent) => void) | null; postMessage(m: unknown): void };
let run: ((task: GemmTask) => number) | undefined;
scope.onmessage = (e: MessageEvent) => {
  try {
    if (!run) {
      const { module, memory, counter } = e.data as Init;
      run = unitRunner(module, memory, counter);
      scope.postMessage({ done: 0 });
    } else {
      scope.postMessage({ done: run(e.data as GemmTask) });
    }
  } catch (err) {
    scope.postMessage({ error: (err as Error)?.message ?? String(err) });
  }
};
