// The vector file of CONTRACT.md section 3: safetensors with `vectors` F32 [n, d], optional
// `singular_values` F32 [n] (and `residuals` F32 [n], the convergence certificate), and string metadata
// with format = "jacsteer.vectors.v1".
import { serializeSafetensors } from "../safetensors/index.js";
import type { SafetensorsReader } from "../safetensors/index.js";

export const VECTOR_FORMAT = "jacsteer.vectors.v1";

export interface VectorSet {
  vectors: Float32Array[];
  singularValues?: number[];
  residuals?: number[];
  metadata: Record<string, string>;
}

export class VectorFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "VectorFileError";
  }
}

export function encodeVectorFile(set: VectorSet): Uint8Array {
  const n = set.vectors.length;
  if (n === 0) throw new Error("encodeVectorFile: no vectors");
  const d = set.vectors[0].length;
  const flat = new Float32Array(n * d);
  set.vectors.forEach((v, i) => {
    if (v.length !== d) throw new Error("encodeVectorFile: vectors of different lengths");
    flat.set(v, i * d);
  });
  const tensors: Record<string, { dtype: "F32"; shape: number[]; data: Float32Array }> = {
    vectors: { dtype: "F32", shape: [n, d], data: flat },
  };
  if (set.singularValues) tensors.singular_values = { dtype: "F32", shape: [n], data: Float32Array.from(set.singularValues) };
  if (set.residuals) tensors.residuals = { dtype: "F32", shape: [n], data: Float32Array.from(set.residuals) };
  return serializeSafetensors(tensors, { ...set.metadata, format: VECTOR_FORMAT });
}

function readVector1d(r: SafetensorsReader, name: string, n: number, file: string): number[] | undefined {
  if (!r.has(name)) return undefined;
  const info = r.info(name);
  if (info.shape.length !== 1 || info.shape[0] !== n) throw new VectorFileError(`${file}: tensor "${name}" has shape [${info.shape.join(", ")}], expected [${n}]`);
  const out = new Float32Array(n);
  r.readF32(name, out);
  return Array.from(out);
}

/** Read a vector file (any file with a 2-D `vectors` tensor; 1-D is taken as one row). */
export function decodeVectorFile(r: SafetensorsReader, file: string): VectorSet {
  if (!r.has("vectors")) throw new VectorFileError(`${file}: no tensor "vectors" (expected a jacsteer vector file)`);
  const shape = r.info("vectors").shape;
  if (shape.length !== 1 && shape.length !== 2) throw new VectorFileError(`${file}: tensor "vectors" has shape [${shape.join(", ")}], expected [n, d]`);
  const [n, d] = shape.length === 2 ? shape : [1, shape[0]];
  const flat = new Float32Array(n * d);
  r.readF32("vectors", flat);
  for (let i = 0; i < flat.length; i++) {
    if (!Number.isFinite(flat[i])) throw new VectorFileError(`${file}: tensor "vectors" has a non-finite value at row ${Math.floor(i / d)}`);
  }
  const vectors = Array.from({ length: n }, (_, i) => flat.slice(i * d, (i + 1) * d));
  return {
    vectors,
    singularValues: readVector1d(r, "singular_values", n, file),
    residuals: readVector1d(r, "residuals", n, file),
    metadata: { ...r.header.metadata },
  };
}

/**
 * Split "FILE:ROW" from "FILE". ROW is an integer; a negative ROW counts from the end, as Python
 * indexes (-1 = the last row): resolve it with `resolveRow`. A Windows drive letter is not a row.
 */
export function parseVectorRef(arg: string): { file: string; row: number | null } {
  const m = /^(.*):(-?\d+)$/.exec(arg);
  if (m && m[1].length > 1) return { file: m[1], row: Number(m[2]) };
  return { file: arg, row: null };
}

/** The row index ROW means in a file of n vectors (-1 = the last); out of range: an error naming `what`. */
export function resolveRow(row: number, n: number, what: string): number {
  const r = row < 0 ? n + row : row;
  if (r < 0 || r >= n) throw new VectorFileError(`${what}: row ${row} out of range (the file has ${n} vector${n === 1 ? "" : "s"}: rows 0..${n - 1}, or -${n}..-1 counting from the end)`);
  return r;
}
