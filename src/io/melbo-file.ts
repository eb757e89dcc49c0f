// The metadata of a `melbo` vector file, built in one place for the command line (src/cli/melbo.ts)
// and the library call (src/api/melbo.ts), so both write the same file (as power-iter-file.ts does for
// power-iter). The key order is part of the file's bytes.
import type { Qwen3Config } from "../model/config.js";
import { describePositions, describePositionWeights, type Positions } from "../jacobian/positions.js";
import { MELBO_ADAMW } from "../melbo/melbo.js";
import { modelConfigKey } from "./run-identity.js";

export interface MelboRun {
  modelName: string;
  modelPath: string;
  config: Qwen3Config;
  sourceLayer: number;
  targetLayer: number;
  positions: Positions;
  seed: number;
  numVectors: number;
  radius: number;
  /** Whether the radius is the default (no --radius). */
  radiusDefault: boolean;
  p: number;
  q: number;
  lr: number;
  weightDecay: number;
  steps: number;
  finalLosses: readonly number[];
  losses: readonly (readonly number[])[];
  prompts: number[][];
  /** sha256 (hex) of JSON.stringify(prompts): hashed by the caller (Node's crypto or Web Crypto). */
  tokensSha256: string;
  chat: boolean;
  threads: number;
  weights: string;
  kernels: string;
}

export function melboMetadata(r: MelboRun): Record<string, string> {
  return {
    method: "melbo",
    model: r.modelName,
    model_path: r.modelPath,
    model_config: modelConfigKey(r.config),
    source_layer: String(r.sourceLayer),
    target_layer: String(r.targetLayer),
    positions: describePositions(r.positions),
    position_weights: describePositionWeights(r.positions),
    seed: String(r.seed),
    num_vectors: String(r.numVectors),
    radius: String(r.radius),
    radius_default: String(r.radiusDefault),
    p: String(r.p),
    q: String(r.q),
    lr: String(r.lr),
    betas: `${MELBO_ADAMW.beta1},${MELBO_ADAMW.beta2}`,
    amsgrad: "true",
    weight_decay: String(r.weightDecay),
    steps: String(r.steps),
    final_losses: JSON.stringify(r.finalLosses),
    initial_losses: JSON.stringify(r.losses.map((c) => c[0])),
    tokens: JSON.stringify(r.prompts),
    tokens_sha256: r.tokensSha256,
    chat: String(r.chat),
    dtype: "float32",
    implementation: "jacsteer",
    threads: String(r.threads),
    weights: r.weights,
    kernels: r.kernels,
  };
}
