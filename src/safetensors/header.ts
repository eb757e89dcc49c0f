// Parsing and validating a safetensors header, with every rule of the reference implementation
// (huggingface/safetensors `safetensors/src/tensor.rs`, `SafeTensors::read_metadata` and
// `Metadata::validate`):
//
//   bytes 0..8      N, little-endian u64; N <= 100,000,000 and 8 + N <= file size
//   bytes 8..8+N    UTF-8 JSON object (trailing space padding allowed), no duplicate keys:
//                     "__metadata__": optional map string -> string (null allowed)
//                     "<tensor name>": {"dtype": D, "shape": [..], "data_offsets": [begin, end]}
//                   D one of the known dtypes; shape entries and offsets non-negative integers
//   bytes 8+N..     the data. Sorted by (begin, end), the tensors' ranges tile [0, data size)
//                   exactly: no hole, no overlap, end >= begin, end - begin = numel * bits / 8
//                   (a whole number of bytes), and the last end = file size - 8 - N.
//
// Unknown fields inside a tensor entry are ignored, as the reference does.

import { DTYPE_BITS, isDtype, type Dtype } from "./dtype.js";
import { SafetensorsError } from "./errors.js";
import { JsonNumber, JsonSyntaxError, parseJsonStrict, type JsonValue } from "./json.js";

/** The reference implementation refuses headers longer than this. */
export const MAX_HEADER_BYTES = 100_000_000;

export const METADATA_KEY = "__metadata__";

export interface TensorInfo {
  readonly name: string;
  readonly dtype: Dtype;
  readonly shape: readonly number[];
  /** Number of elements (1 for shape []). */
  readonly numel: number;
  /** Absolute byte offsets in the file: data_offsets + dataStart. */
  readonly begin: number;
  readonly end: number;
}

export interface SafetensorsHeader {
  /** Tensors in data order (sorted by offset). */
  readonly tensors: Map<string, TensorInfo>;
  /** `__metadata__` (empty when absent). */
  readonly metadata: Record<string, string>;
  /** 8 + N: where the data section starts in the file. */
  readonly dataStart: number;
}

/**
 * Read N from the first 8 bytes and check it against the limit and the file size.
 * Returns N, the number of header bytes that follow.
 */
export function readHeaderLength(first8: Uint8Array, fileSize: number, fileName: string): number {
  if (fileSize < 8 || first8.length < 8) {
    throw new SafetensorsError(fileName, `file is ${fileSize} bytes, too small to hold the 8-byte header length`);
  }
  const dv = new DataView(first8.buffer, first8.byteOffset, 8);
  const n = dv.getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) {
    throw new SafetensorsError(
      fileName,
      `header length ${n} exceeds the limit of ${MAX_HEADER_BYTES} bytes (not a safetensors file?)`,
    );
  }
  const len = Number(n);
  if (8 + len > fileSize) {
    throw new SafetensorsError(
      fileName,
      `header length ${len} runs past the end of the file (${fileSize} bytes; truncated file?)`,
    );
  }
  return len;
}

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * Parse and validate the header of a safetensors file.
 * `prefix` holds at least the first 8 + N bytes of the file; `fileSize` is the whole file's size.
 */
export function parseSafetensorsHeader(prefix: Uint8Array, fileSize: number, fileName: string): SafetensorsHeader {
  const n = readHeaderLength(prefix, fileSize, fileName);
  if (prefix.length < 8 + n) {
    throw new SafetensorsError(fileName, `internal: header prefix has ${prefix.length} bytes, need ${8 + n}`);
  }
  let text: string;
  try {
    text = utf8.decode(prefix.subarray(8, 8 + n));
  } catch {
    throw new SafetensorsError(fileName, "header is not valid UTF-8");
  }
  let root: JsonValue;
  try {
    root = parseJsonStrict(text);
  } catch (e) {
    if (e instanceof JsonSyntaxError) {
      if (e.duplicateKey !== undefined && e.depth === 1) {
        const name = e.duplicateKey;
        if (name === METADATA_KEY) throw new SafetensorsError(fileName, `header: duplicate "${METADATA_KEY}" key`);
        throw new SafetensorsError(fileName, "duplicate tensor name in header", name);
      }
      const top = e.path[0];
      if (top !== undefined && top !== METADATA_KEY) {
        throw new SafetensorsError(fileName, `header is not valid JSON: ${e.message}`, top);
      }
      throw new SafetensorsError(fileName, `header is not valid JSON: ${e.message}`);
    }
    throw e;
  }
  if (!(root instanceof Map)) throw new SafetensorsError(fileName, "header is not a JSON object");

  let metadata: Record<string, string> = {};
  const entries: { name: string; dtype: Dtype; shape: number[]; numel: number; s: number; e: number }[] = [];
  for (const [name, v] of root) {
    if (name === METADATA_KEY) {
      metadata = parseMetadata(v, fileName);
      continue;
    }
    entries.push(parseEntry(name, v, fileName));
  }

  // The reference sorts by (begin, end), then requires each range to start where the previous ended.
  entries.sort((a, b) => a.s - b.s || a.e - b.e);
  const dataStart = 8 + n;
  const dataSize = fileSize - dataStart;
  const tensors = new Map<string, TensorInfo>();
  let pos = 0;
  let prev: string | undefined;
  for (const t of entries) {
    const where = `data_offsets [${t.s}, ${t.e}]`;
    if (t.e < t.s) throw new SafetensorsError(fileName, `invalid ${where}: end is before begin`, t.name);
    if (t.s < pos) {
      throw new SafetensorsError(
        fileName,
        `overlapping data: ${where} starts before the end (${pos}) of tensor "${prev}"`,
        t.name,
      );
    }
    if (t.s > pos) {
      const after = prev === undefined ? "the start of the data section" : `the end of tensor "${prev}"`;
      throw new SafetensorsError(fileName, `hole in data: bytes [${pos}, ${t.s}) after ${after} belong to no tensor`, t.name);
    }
    const bits = t.numel * DTYPE_BITS[t.dtype];
    if (!Number.isSafeInteger(bits)) {
      throw new SafetensorsError(fileName, `shape [${t.shape.join(", ")}] is too large (overflow)`, t.name);
    }
    if (bits % 8 !== 0) {
      throw new SafetensorsError(
        fileName,
        `${t.numel} elements of ${t.dtype} do not fill a whole number of bytes (misaligned)`,
        t.name,
      );
    }
    if (t.e - t.s !== bits / 8) {
      throw new SafetensorsError(
        fileName,
        `${where} span ${t.e - t.s} bytes but dtype ${t.dtype} with shape [${t.shape.join(", ")}] needs ${bits / 8}`,
        t.name,
      );
    }
    pos = t.e;
    prev = t.name;
    tensors.set(t.name, {
      name: t.name,
      dtype: t.dtype,
      shape: t.shape,
      numel: t.numel,
      begin: dataStart + t.s,
      end: dataStart + t.e,
    });
  }
  if (pos !== dataSize) {
    throw new SafetensorsError(
      fileName,
      pos < dataSize
        ? `tensors cover ${pos} bytes of data but the file has ${dataSize} bytes after the header (trailing bytes / hole at the end)`
        : `tensors cover ${pos} bytes of data but the file has only ${dataSize} bytes after the header (truncated file?)`,
    );
  }
  return { tensors, metadata, dataStart };
}

function parseMetadata(v: JsonValue, file: string): Record<string, string> {
  if (v === null) return {};
  if (!(v instanceof Map)) throw new SafetensorsError(file, `"${METADATA_KEY}" must be an object of strings`);
  const out: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const [k, s] of v) {
    if (typeof s !== "string") {
      throw new SafetensorsError(file, `"${METADATA_KEY}" value for key ${JSON.stringify(k)} is not a string`);
    }
    out[k] = s;
  }
  return out;
}

function parseEntry(
  name: string,
  v: JsonValue,
  file: string,
): { name: string; dtype: Dtype; shape: number[]; numel: number; s: number; e: number } {
  if (!(v instanceof Map)) {
    throw new SafetensorsError(file, "header entry is not an object {dtype, shape, data_offsets}", name);
  }
  const dtype = v.get("dtype");
  if (dtype === undefined) throw new SafetensorsError(file, `missing field "dtype"`, name);
  if (typeof dtype !== "string") throw new SafetensorsError(file, `"dtype" is not a string`, name);
  if (!isDtype(dtype)) throw new SafetensorsError(file, `unknown dtype ${JSON.stringify(dtype)}`, name);

  const shapeV = v.get("shape");
  if (shapeV === undefined) throw new SafetensorsError(file, `missing field "shape"`, name);
  if (!Array.isArray(shapeV)) throw new SafetensorsError(file, `"shape" is not an array`, name);
  const shape = shapeV.map((d) => nonNegativeInt(d, "shape", file, name));
  // Product in the reference's order, with its overflow check (usize::checked_mul).
  let numel = 1;
  for (const d of shape) {
    numel *= d;
    if (!Number.isSafeInteger(numel)) {
      throw new SafetensorsError(file, `shape [${shape.join(", ")}] is too large (overflow)`, name);
    }
  }

  const offV = v.get("data_offsets");
  if (offV === undefined) throw new SafetensorsError(file, `missing field "data_offsets"`, name);
  if (!Array.isArray(offV) || offV.length !== 2) {
    throw new SafetensorsError(file, `"data_offsets" is not an array [begin, end]`, name);
  }
  const s = nonNegativeInt(offV[0]!, "data_offsets", file, name);
  const e = nonNegativeInt(offV[1]!, "data_offsets", file, name);
  return { name, dtype, shape, numel, s, e };
}

function nonNegativeInt(v: JsonValue, field: string, file: string, tensor: string): number {
  if (!(v instanceof JsonNumber) || !/^(0|[1-9][0-9]*)$/.test(v.raw)) {
    throw new SafetensorsError(file, `"${field}" holds ${describe(v)}, not a non-negative integer`, tensor);
  }
  const n = Number(v.raw);
  if (!Number.isSafeInteger(n)) throw new SafetensorsError(file, `"${field}" value ${v.raw} is too large`, tensor);
  return n;
}

function describe(v: JsonValue): string {
  if (v instanceof JsonNumber) return v.raw;
  if (v instanceof Map) return "an object";
  if (Array.isArray(v)) return "an array";
  return JSON.stringify(v);
}
