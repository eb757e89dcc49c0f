// A Piscina worker for src/node/thread-pool.ts: the module, memory and counter come in workerData;
// each Piscina task is one dispatch, run by workers/gemm-units.ts.
import { workerData } from "node:worker_threads";
import { unitRunner, type GemmTask } from "./gemm-units.js";

export type { GemmTask } from "./gemm-units.js";

interface GemmWorkerData {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  /** Int32 [0]: the next unit of the current dispatch. */
  counter: SharedArrayBuffer;
}

const { module, memory, counter } = workerData as GemmWorkerData;
const run: (task: GemmTask) => number = unitRunner(module, memory, counter);
export default run;
