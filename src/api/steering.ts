// Steering vectors for eval-ab and generate: which vectors, and the layer they are added at (one rule
// for both, CLI and library).
import { InputError } from "../model/qwen3.js";
import { defaultLayers, type Reporter } from "./common.js";

/** A steering vector to add (times each scale) at the steering layer. */
export interface SteeringVectorInput {
  vector: Float32Array;
  /** How results and messages name it (default "vector I"; the CLI: "FILE:ROW"). */
  label?: string;
  /** The layer it was computed at (a vector file's source_layer), if known. */
  sourceLayer?: number | null;
}

/** A vector as a run uses it: its position in the run's list, label and layer. */
export interface VectorChoice {
  /** position in the run's list */
  index: number;
  /** "FILE:ROW" in the CLI */
  label: string;
  vector: Float32Array;
  /** the file's source_layer metadata, or this row's entry of source_layers (imported control vectors), if any */
  sourceLayer: number | null;
}

/** The vectors, numbered and checked against the hidden size d. */
export function vectorChoices(vectors: readonly SteeringVectorInput[] | undefined, d: number): VectorChoice[] {
  return (vectors ?? []).map((v, index) => {
    const label = v.label ?? `vector ${index}`;
    if (v.vector.length !== d) throw new InputError(`${label}: vectors have length ${v.vector.length}, the model's hidden size is ${d}`);
    // As the vector file's reader does: a non-finite entry would make every steered number NaN.
    const bad = v.vector.findIndex((x) => !Number.isFinite(x));
    if (bad >= 0) throw new InputError(`${label}: entry ${bad} is ${v.vector[bad]}, not a finite number`);
    return { index, label, vector: v.vector, sourceLayer: v.sourceLayer ?? null };
  });
}

/** Scales: finite numbers, none twice. */
export function checkScales(scales: readonly number[]): void {
  if (!scales.every(Number.isFinite)) throw new InputError(`--scales ${scales.join(",")}: expected finite numbers`);
  const dup = scales.find((x, i) => scales.indexOf(x) !== i);
  if (dup !== undefined) throw new InputError(`--scales ${scales.join(",")}: ${dup} is given twice`);
}

/** `layer`, or the vectors' common source layer, or the model-size default; checked against L. */
export function steeringLayer(layer: number | undefined, L: number, vectors: readonly VectorChoice[], rep: Reporter): number {
  const fromFiles = [...new Set(vectors.map((v) => v.sourceLayer))];
  let S: number;
  if (layer !== undefined) {
    S = layer;
    if (!Number.isInteger(S) || S < 0) throw new InputError(`--layer ${S}: must be at least 0`);
    if (S >= L) throw new InputError(`--layer ${S} is out of range: the model has layers 0..${L - 1}`);
  } else if (fromFiles.length === 1 && fromFiles[0] !== null && fromFiles[0] < L) {
    S = fromFiles[0];
    rep.log(`jacsteer: steering at --layer ${S} (the vector files' source_layer)`);
  } else {
    S = defaultLayers(L).source;
    rep.log(`jacsteer: steering at --layer ${S} (default for a ${L}-layer model${fromFiles.length > 1 ? "; the vector files disagree on source_layer" : ""})`);
  }
  // A vector computed at one layer and added at another is a different experiment; say so per vector.
  for (const v of vectors) {
    if (v.sourceLayer !== null && v.sourceLayer !== S) rep.warn(`${v.label} was computed at source_layer ${v.sourceLayer} (its file's metadata) but is added at layer ${S}${layer === undefined ? "" : " (--layer)"}`);
  }
  return S;
}
