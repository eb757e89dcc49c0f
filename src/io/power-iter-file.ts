// The vector file of a `power-iter` run: vectors, singular values, residuals and the run's metadata,
// built in one place for the command line (src/cli/power-iter.ts) and the browser page
// (src/web/driver.ts), so both write the same file (encoded by vector-file.ts encodeVectorFile).
import type { Qwen3Config } from "../model/config.js";
import type { SolveResult } from "../solvers/common.js";
import { describePositions, describePositionWeights, type Positions } from "../jacobian/positions.js";
import { modelConfigKey } from "./run-identity.js";
import type { VectorSet } from "./vector-file.js";

export interface PowerIterRun {
  result: SolveResult;
  method: string;
  modelName: string;
  modelPath: string;
  config: Qwen3Config;
  sourceLayer: number;
  targetLayer: number;
  positions: Positions;
  seed: number;
  numVectors: number;
  /** Vectors per product (block Lanczos; all of them for power iteration). */
  blockSize: number;
  prompts: number[][];
  chat: boolean;
  tol: number;
  maxIters: number | undefined;
  threads: number;
  kernels: string;
  /** --at as given and its scale (absent: sv0 = 0), and the sha256 of the point's bytes. */
  at?: { arg: string; scale: number; sha256: string };
  /** --init as given. */
  init?: string;
}

export function powerIterVectorSet(r: PowerIterRun): VectorSet {
  const metadata: Record<string, string> = {
    method: `power-iter/${r.method}`,
    model: r.modelName,
    model_path: r.modelPath,
    model_config: modelConfigKey(r.config),
    at_sha256: r.at?.sha256 ?? "",
    source_layer: String(r.sourceLayer),
    target_layer: String(r.targetLayer),
    positions: describePositions(r.positions),
    position_weights: describePositionWeights(r.positions),
    seed: String(r.seed),
    num_vectors: String(r.numVectors),
    block_size: String(r.blockSize),
    tokens: JSON.stringify(r.prompts),
    chat: String(r.chat),
    at: r.at?.arg ?? "",
    at_scale: r.at ? String(r.at.scale) : "",
    init: r.init ?? "",
    iterations: String(r.result.iterations),
    products: String(r.result.products),
    converged: String(r.result.converged),
    tol: String(r.tol),
    max_iters: r.maxIters === undefined ? "" : String(r.maxIters),
    threads: String(r.threads),
    dtype: "float32",
    implementation: "jacsteer",
    kernels: r.kernels,
  };
  const { result } = r;
  return { vectors: result.vectors.map((v) => Float32Array.from(v)), singularValues: result.singularValues, residuals: result.residuals, metadata };
}
