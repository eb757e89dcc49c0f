// --weights: how the layers' stored weights are held (src/engine/weight-store.ts), one parser for
// every command that takes it.
import { UsageError } from "./errors.js";
import type { WeightMode } from "../engine/steering-engine.js";

export const WEIGHT_MODES: readonly WeightMode[] = ["auto", "resident", "stream"];

/** --weights MODE (default auto); anything else is a usage error naming the choices. */
export function weightsFlag(f: Record<string, unknown>): WeightMode {
  const w = ((f.weights as string | undefined) ?? "auto") as WeightMode;
  if (!WEIGHT_MODES.includes(w)) throw new UsageError(`--weights ${w}: expected one of ${WEIGHT_MODES.join(", ")}`);
  return w;
}

/** Help lines of --weights for the experiments' commands (eval-ab, caa), which hold every layer they run. */
export const WEIGHTS_HELP = `  --weights MODE           the layers' weights, kept in their stored dtype (BF16 stays BF16):
                             resident  read once and kept
                             stream    read from the checkpoint every batch (two layers in memory: any size)
                             auto      resident when they fit 2 GiB, else stream (default; printed)
`;
