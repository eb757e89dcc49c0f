// Messages between the page (web/app.ts) and its compute worker (src/web/driver.ts).
import type { PickedFile } from "./file-checkpoint.js";
import type { WeightMode } from "../engine/steering-engine.js";
import type { SolveResult } from "../solvers/common.js";

/** A `power-iter --method lanczos` run, with the command line's flags (undefined: its default). */
export interface RunRequest {
  type: "run";
  files: PickedFile[];
  prompt: string;
  chat: boolean;
  /** Token ids instead of the prompt (power-iter --tokens): no tokenizer is read. */
  tokens?: number[];
  sourceLayer?: number;
  targetLayer?: number;
  /** --positions K; undefined: 4, shrunk to the prompt's length as the command line does. */
  positions?: number;
  numVectors: number;
  tol: number;
  maxIters?: number;
  seed: number;
  threads: number;
  weights: WeightMode;
  /** Relaxed SIMD unless "simd" (the page's switch, for the fallback). */
  kernels?: "simd";
  /**
   * Dispatches below this many flops stay on one thread (default 8e6, as in Node); the result is
   * bitwise the same for any value. The tests set 0 so that the tiny model's products reach the workers.
   */
  minParallelFlops?: number;
}

/** The solver's result (without the vectors: they are in `file`) and the run's summary. */
export interface RunResult extends Omit<SolveResult, "vectors"> {
  /** The vector file (power-iter --out), encoded by src/io/vector-file.ts. */
  file: Uint8Array;
  fileName: string;
  /** Wall seconds from the request to the result, as `power-iter --json` counts them (checkpoint open to solve end). */
  seconds: number;
  threads: number;
  kernels: string;
  sourceLayer: number;
  targetLayer: number;
  positions: number;
  tokens: number[][];
  model: string;
  weightMode: string;
  peakWasmBytes: number;
  /** Work units the Web Worker threads ran (0 on one thread): shows that they took part. */
  workerUnits: number;
}

export type DriverMessage =
  | { type: "log"; line: string }
  | { type: "progress"; iteration: number; line: string; eta: string; relativeResidual: number; tol: number }
  | { type: "done"; result: RunResult }
  | { type: "error"; message: string };
