// Metadata that identifies a run, written the same way by jacsteer and by reference/power_iteration.py
// so `jacsteer verify` can tell a mismatched run from a numerical failure.
import type { Qwen3Config } from "../model/config.js";

/** The architecture as a canonical JSON array (same order in Python). */
export function modelConfigKey(c: Qwen3Config): string {
  return JSON.stringify([c.hiddenSize, c.intermediateSize, c.numLayers, c.numHeads, c.numKvHeads, c.headDim, c.vocabSize]);
}

/** The bytes whose SHA-256 identifies sv0: float32 little-endian. Empty string when sv0 = 0 (not given). */
export function svBytes(sv: Float32Array | undefined): Uint8Array | null {
  if (!sv) return null;
  const out = new Uint8Array(sv.length * 4);
  const view = new DataView(out.buffer);
  sv.forEach((x, i) => view.setFloat32(i * 4, x, true));
  return out;
}
