// Writing safetensors files from f32 data, laid out as the reference implementation does: tensors
// ordered by descending dtype width then by name (so every tensor stays aligned), `__metadata__`
// first in the header, header padded with spaces to a multiple of 8 bytes.
//
// `planSafetensors` needs only names, dtypes and shapes, so a writer can emit the header first and
// then produce each tensor's data on demand (src/node/safetensors-file.ts streams that way).

import { DTYPE_BITS, dtypeRank, type FloatDtype } from "./dtype.js";
import { encodeBf16, encodeF16 } from "./float16.js";
import { MAX_HEADER_BYTES, METADATA_KEY } from "./header.js";

export interface TensorSpec {
  dtype: FloatDtype;
  shape: readonly number[];
}

export interface TensorToWrite extends TensorSpec {
  /** Row-major f32 values; converted to `dtype` on write (round to nearest even). */
  data: Float32Array;
}

export interface PlannedTensor extends TensorSpec {
  name: string;
  numel: number;
  /** Byte offsets relative to the start of the data section. */
  begin: number;
  end: number;
}

export interface SafetensorsPlan {
  /** The first 8 + N bytes of the file. */
  header: Uint8Array;
  /** Tensors in the order their data follows the header. */
  tensors: PlannedTensor[];
  /** Total file size. */
  fileSize: number;
}

/** Lay out a file: header bytes and each tensor's offsets. Throws Error on invalid input. */
export function planSafetensors(specs: Record<string, TensorSpec>, metadata?: Record<string, string>): SafetensorsPlan {
  const names = Object.keys(specs);
  for (const name of names) {
    if (name === METADATA_KEY) throw new Error(`"${METADATA_KEY}" cannot be a tensor name`);
    const s = specs[name]!;
    if (!(s.dtype === "F32" || s.dtype === "F16" || s.dtype === "BF16")) {
      throw new Error(`tensor "${name}": cannot write dtype ${String(s.dtype)} (F32, F16 or BF16)`);
    }
    for (const d of s.shape) {
      if (!Number.isSafeInteger(d) || d < 0) throw new Error(`tensor "${name}": bad shape [${s.shape.join(", ")}]`);
    }
  }
  names.sort((a, b) => {
    const r = dtypeRank(specs[b]!.dtype) - dtypeRank(specs[a]!.dtype);
    return r !== 0 ? r : a < b ? -1 : a > b ? 1 : 0;
  });

  if (metadata !== undefined) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== "string") throw new Error(`metadata value for ${JSON.stringify(k)} is not a string`);
    }
  }
  const tensors: PlannedTensor[] = [];
  let pos = 0;
  for (const name of names) {
    const s = specs[name]!;
    const numel = s.shape.reduce((a, b) => a * b, 1);
    const bytes = (numel * DTYPE_BITS[s.dtype]) / 8;
    tensors.push({ name, dtype: s.dtype, shape: [...s.shape], numel, begin: pos, end: pos + bytes });
    pos += bytes;
  }
  const body = new TextEncoder().encode(stringifyHeader(metadata, tensors));
  const n = Math.ceil(body.length / 8) * 8;
  if (n > MAX_HEADER_BYTES) throw new Error(`header would be ${n} bytes, over the ${MAX_HEADER_BYTES}-byte limit`);
  const header = new Uint8Array(8 + n).fill(0x20);
  new DataView(header.buffer).setBigUint64(0, BigInt(n), true);
  header.set(body, 8);
  return { header, tensors, fileSize: 8 + n + pos };
}

// Built by hand rather than from one object: a tensor named "__proto__" would vanish from an object.
function stringifyHeader(metadata: Record<string, string> | undefined, tensors: PlannedTensor[]): string {
  const parts: string[] = [];
  if (metadata !== undefined) {
    const kv = Object.entries(metadata).map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`);
    parts.push(`${JSON.stringify(METADATA_KEY)}:{${kv.join(",")}}`);
  }
  for (const t of tensors) {
    parts.push(
      `${JSON.stringify(t.name)}:${JSON.stringify({ dtype: t.dtype, shape: t.shape, data_offsets: [t.begin, t.end] })}`,
    );
  }
  return `{${parts.join(",")}}`;
}

/**
 * Encode `data` (f32) as `dtype` into `out` (little-endian bytes, length = data.length * width).
 * `out` must be 4-byte aligned for F32 and 2-byte aligned for F16/BF16 (fresh arrays are).
 */
export function encodeTensorData(dtype: FloatDtype, data: Float32Array, out: Uint8Array): void {
  if (dtype === "F32") {
    out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    return;
  }
  const dst = new Uint16Array(out.buffer, out.byteOffset, data.length);
  if (dtype === "BF16") encodeBf16(data, dst);
  else encodeF16(data, dst);
}

/** Serialize tensors (converted from f32 to each one's dtype) and optional metadata to file bytes. */
export function serializeSafetensors(
  tensors: Record<string, TensorToWrite>,
  metadata?: Record<string, string>,
): Uint8Array {
  const plan = planSafetensors(tensors, metadata);
  const out = new Uint8Array(plan.fileSize);
  out.set(plan.header, 0);
  const base = plan.header.length; // a multiple of 8, and wider dtypes come first: all aligned
  for (const t of plan.tensors) {
    const src = tensors[t.name]!;
    checkLength(t, src.data);
    encodeTensorData(t.dtype, src.data, out.subarray(base + t.begin, base + t.end));
  }
  return out;
}

export function checkLength(t: PlannedTensor, data: Float32Array): void {
  if (data.length !== t.numel) {
    throw new Error(`tensor "${t.name}": ${data.length} values for shape [${t.shape.join(", ")}] (${t.numel} elements)`);
  }
}
