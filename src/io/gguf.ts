// A small GGUF (version 3) encoder and decoder: enough for llama.cpp control vectors, which are a
// handful of KV pairs and 1-D float tensors. Platform-neutral (bytes in, bytes out).
//
// Layout (ggml's docs/gguf.md), all little-endian:
//   "GGUF" magic, u32 version, u64 tensor_count, u64 kv_count,
//   kv_count x { string key, u32 value_type, value }        string = u64 byte length + UTF-8 bytes
//                                                           array  = u32 item type, u64 count, items
//   tensor_count x { string name, u32 n_dims, u64 dims[n_dims] (ggml order: fastest first),
//                    u32 ggml_type, u64 offset (from the start of the data section) }
//   zero padding to `general.alignment` (u32, default 32), then the data section, each tensor's
//   offset a multiple of the alignment.
// Version 2 has the same layout (version 1 had 32-bit counts and is refused).
import { bf16BitsToF32, f16BitsToF32 } from "../safetensors/float16.js";

/** GGUF metadata value types, as numbered in the file. */
export const GGUF_TYPE = {
  uint8: 0,
  int8: 1,
  uint16: 2,
  int16: 3,
  uint32: 4,
  int32: 5,
  float32: 6,
  bool: 7,
  string: 8,
  array: 9,
  uint64: 10,
  int64: 11,
  float64: 12,
} as const;
export type GgufScalarType = Exclude<keyof typeof GGUF_TYPE, "array">;
const TYPE_NAME = new Map<number, keyof typeof GGUF_TYPE>(Object.entries(GGUF_TYPE).map(([k, v]) => [v, k as keyof typeof GGUF_TYPE]));

/** The ggml tensor types a control vector may hold (ggml.h's enum ggml_type). */
export const GGML_TYPE = { F32: 0, F16: 1, F64: 28, BF16: 30 } as const;
export type GgmlFloatType = keyof typeof GGML_TYPE;
const GGML_NAME = new Map<number, GgmlFloatType>(Object.entries(GGML_TYPE).map(([k, v]) => [v, k as GgmlFloatType]));
const GGML_BYTES: Record<GgmlFloatType, number> = { F32: 4, F16: 2, F64: 8, BF16: 2 };

export const GGUF_DEFAULT_ALIGNMENT = 32;

export type GgufScalar = number | bigint | boolean | string;
export type GgufValue =
  | { type: Exclude<GgufScalarType, "uint64" | "int64" | "bool" | "string">; value: number }
  | { type: "uint64" | "int64"; value: bigint }
  | { type: "bool"; value: boolean }
  | { type: "string"; value: string }
  | { type: "array"; itemType: keyof typeof GGUF_TYPE; value: GgufValue[] };

export interface GgufTensor {
  name: string;
  /** ggml order: dims[0] is the fastest-varying (for a 1-D tensor, its length). */
  dims: number[];
  type: GgmlFloatType;
  /** Raw little-endian bytes of the tensor. */
  data: Uint8Array;
}

export interface GgufFile {
  version: number;
  /** In file order. */
  kv: Map<string, GgufValue>;
  tensors: GgufTensor[];
  alignment: number;
}

export class GgufError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "GgufError";
  }
}

// ------------------------------------------------------------------------------------------------
// encoding

class ByteWriter {
  private buf = new Uint8Array(1024);
  private view = new DataView(this.buf.buffer);
  length = 0;

  private room(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
  u8(x: number) { this.room(1); this.view.setUint8(this.length, x); this.length += 1; }
  i8(x: number) { this.room(1); this.view.setInt8(this.length, x); this.length += 1; }
  u16(x: number) { this.room(2); this.view.setUint16(this.length, x, true); this.length += 2; }
  i16(x: number) { this.room(2); this.view.setInt16(this.length, x, true); this.length += 2; }
  u32(x: number) { this.room(4); this.view.setUint32(this.length, x, true); this.length += 4; }
  i32(x: number) { this.room(4); this.view.setInt32(this.length, x, true); this.length += 4; }
  f32(x: number) { this.room(4); this.view.setFloat32(this.length, x, true); this.length += 4; }
  f64(x: number) { this.room(8); this.view.setFloat64(this.length, x, true); this.length += 8; }
  u64(x: bigint | number) { this.room(8); this.view.setBigUint64(this.length, BigInt(x), true); this.length += 8; }
  i64(x: bigint) { this.room(8); this.view.setBigInt64(this.length, x, true); this.length += 8; }
  bytes(b: Uint8Array) { this.room(b.length); this.buf.set(b, this.length); this.length += b.length; }
  string(s: string) { const b = new TextEncoder().encode(s); this.u64(b.length); this.bytes(b); }
  padTo(alignment: number) { const pad = (alignment - (this.length % alignment)) % alignment; this.room(pad); this.length += pad; }
  result(): Uint8Array { return this.buf.slice(0, this.length); }
}

function checkInt(key: string, type: string, x: number, lo: number, hi: number): void {
  if (!Number.isInteger(x) || x < lo || x > hi) throw new GgufError(`GGUF key ${key}: ${x} does not fit in ${type}`);
}

function writeValue(w: ByteWriter, key: string, v: GgufValue): void {
  switch (v.type) {
    case "uint8": checkInt(key, v.type, v.value, 0, 0xff); return w.u8(v.value);
    case "int8": checkInt(key, v.type, v.value, -0x80, 0x7f); return w.i8(v.value);
    case "uint16": checkInt(key, v.type, v.value, 0, 0xffff); return w.u16(v.value);
    case "int16": checkInt(key, v.type, v.value, -0x8000, 0x7fff); return w.i16(v.value);
    case "uint32": checkInt(key, v.type, v.value, 0, 0xffffffff); return w.u32(v.value);
    case "int32": checkInt(key, v.type, v.value, -0x80000000, 0x7fffffff); return w.i32(v.value);
    case "float32": return w.f32(v.value);
    case "float64": return w.f64(v.value);
    case "uint64": return w.u64(v.value);
    case "int64": return w.i64(v.value);
    case "bool": return w.u8(v.value ? 1 : 0);
    case "string": return w.string(v.value);
    case "array":
      w.u32(GGUF_TYPE[v.itemType]);
      w.u64(v.value.length);
      for (const item of v.value) {
        if (item.type !== v.itemType) throw new GgufError(`GGUF key ${key}: array of ${v.itemType} holds a ${item.type}`);
        writeValue(w, key, item); // a nested array item carries its own item type and count
      }
  }
}

/**
 * The bytes of a GGUF v3 file. `general.alignment` in `kv` (uint32) sets the alignment, else 32.
 * Tensors are laid out in the given order, each padded to the alignment.
 */
export function encodeGguf(kv: Map<string, GgufValue> | [string, GgufValue][], tensors: GgufTensor[]): Uint8Array {
  const entries = kv instanceof Map ? [...kv] : kv;
  const al = entries.find(([k]) => k === "general.alignment")?.[1];
  const alignment = al ? Number(al.value) : GGUF_DEFAULT_ALIGNMENT;
  if (!Number.isInteger(alignment) || alignment <= 0 || alignment % 8 !== 0) throw new GgufError(`general.alignment ${String(al?.value)}: must be a positive multiple of 8`);
  const w = new ByteWriter();
  w.bytes(new TextEncoder().encode("GGUF"));
  w.u32(3);
  w.u64(tensors.length);
  w.u64(entries.length);
  for (const [key, v] of entries) {
    w.string(key);
    w.u32(GGUF_TYPE[v.type]);
    writeValue(w, key, v);
  }
  let offset = 0;
  for (const t of tensors) {
    const count = t.dims.reduce((a, b) => a * b, 1);
    if (t.data.length !== count * GGML_BYTES[t.type]) throw new GgufError(`tensor ${t.name}: ${t.data.length} bytes for ${t.type} [${t.dims.join(", ")}]`);
    w.string(t.name);
    w.u32(t.dims.length);
    for (const d of t.dims) w.u64(d);
    w.u32(GGML_TYPE[t.type]);
    w.u64(offset);
    offset += t.data.length + ((alignment - (t.data.length % alignment)) % alignment);
  }
  w.padTo(alignment);
  for (const t of tensors) {
    w.bytes(t.data);
    w.padTo(alignment);
  }
  return w.result();
}

// ------------------------------------------------------------------------------------------------
// decoding

class ByteReader {
  pos = 0;
  private view: DataView;
  constructor(private bytes: Uint8Array, private file: string) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  need(n: number, what: string): void {
    if (this.pos + n > this.bytes.length) throw new GgufError(`${this.file}: truncated GGUF file (${what} at byte ${this.pos} runs past the end, ${this.bytes.length} bytes)`);
  }
  u8(w: string) { this.need(1, w); return this.view.getUint8(this.pos++); }
  u32(w: string) { this.need(4, w); const x = this.view.getUint32(this.pos, true); this.pos += 4; return x; }
  /** A u64 that must fit in a safe integer (counts, lengths, dims, offsets). */
  size(w: string) {
    this.need(8, w);
    const x = this.view.getBigUint64(this.pos, true);
    this.pos += 8;
    if (x > BigInt(Number.MAX_SAFE_INTEGER)) throw new GgufError(`${this.file}: ${w} ${x} at byte ${this.pos - 8} is implausibly large`);
    return Number(x);
  }
  string(w: string): string {
    const n = this.size(`${w} length`);
    this.need(n, w);
    const raw = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    try {
      return new TextDecoder("utf-8", { fatal: true }).decode(raw);
    } catch {
      throw new GgufError(`${this.file}: ${w} at byte ${this.pos - n} is not valid UTF-8`);
    }
  }
  scalar(type: GgufScalarType, w: string): GgufValue {
    const sizes: Record<GgufScalarType, number> = { uint8: 1, int8: 1, uint16: 2, int16: 2, uint32: 4, int32: 4, float32: 4, bool: 1, string: 0, uint64: 8, int64: 8, float64: 8 };
    if (type === "string") return { type, value: this.string(w) };
    this.need(sizes[type], w);
    const p = this.pos;
    this.pos += sizes[type];
    const v = this.view;
    switch (type) {
      case "uint8": return { type, value: v.getUint8(p) };
      case "int8": return { type, value: v.getInt8(p) };
      case "uint16": return { type, value: v.getUint16(p, true) };
      case "int16": return { type, value: v.getInt16(p, true) };
      case "uint32": return { type, value: v.getUint32(p, true) };
      case "int32": return { type, value: v.getInt32(p, true) };
      case "float32": return { type, value: v.getFloat32(p, true) };
      case "float64": return { type, value: v.getFloat64(p, true) };
      case "uint64": return { type, value: v.getBigUint64(p, true) };
      case "int64": return { type, value: v.getBigInt64(p, true) };
      case "bool": {
        const b = v.getUint8(p);
        if (b > 1) throw new GgufError(`${this.file}: ${w} is a bool holding ${b}`);
        return { type, value: b === 1 };
      }
    }
  }
  value(typeId: number, w: string, depth = 0): GgufValue {
    const type = TYPE_NAME.get(typeId);
    if (type === undefined) throw new GgufError(`${this.file}: ${w} has unknown value type ${typeId}`);
    if (type !== "array") return this.scalar(type, w);
    if (depth > 4) throw new GgufError(`${this.file}: ${w} nests arrays too deeply`);
    const itemTypeId = this.u32(`${w} item type`);
    const itemType = TYPE_NAME.get(itemTypeId);
    if (itemType === undefined) throw new GgufError(`${this.file}: ${w} is an array of unknown type ${itemTypeId}`);
    const n = this.size(`${w} array length`);
    // Every item takes at least one byte: a count beyond the bytes left is corrupt, not a big array.
    if (n > this.bytes.length - this.pos) throw new GgufError(`${this.file}: ${w} claims ${n} array items, more than the file holds`);
    const items: GgufValue[] = [];
    for (let i = 0; i < n; i++) items.push(this.value(itemTypeId, w, depth + 1));
    return { type: "array", itemType, value: items };
  }
}

/** Parse a whole GGUF file held in memory. Errors name `file` and the key or tensor. */
export function decodeGguf(bytes: Uint8Array, file: string): GgufFile {
  const r = new ByteReader(bytes, file);
  r.need(4, "magic");
  const magic = new TextDecoder().decode(bytes.subarray(0, 4));
  r.pos = 4;
  if (magic !== "GGUF") throw new GgufError(`${file}: not a GGUF file (starts with ${JSON.stringify(magic)}, expected "GGUF")`);
  const version = r.u32("version");
  if (version === 1) throw new GgufError(`${file}: GGUF version 1 is not supported (versions 2 and 3 are)`);
  if (version !== 2 && version !== 3) {
    // A big-endian file reads its version 3 as 0x03000000.
    const hint = version === 0x03000000 || version === 0x02000000 ? " (a big-endian GGUF file; only little-endian is supported)" : "";
    throw new GgufError(`${file}: unsupported GGUF version ${version}${hint}`);
  }
  const tensorCount = r.size("tensor count");
  const kvCount = r.size("metadata count");
  if (tensorCount > bytes.length || kvCount > bytes.length) throw new GgufError(`${file}: header claims ${tensorCount} tensors and ${kvCount} keys, more than the file holds`);
  const kv = new Map<string, GgufValue>();
  for (let i = 0; i < kvCount; i++) {
    const key = r.string(`key ${i}`);
    if (kv.has(key)) throw new GgufError(`${file}: key ${key} appears twice`);
    kv.set(key, r.value(r.u32(`key ${key} type`), `key ${key}`));
  }
  let alignment = GGUF_DEFAULT_ALIGNMENT;
  const al = kv.get("general.alignment");
  if (al !== undefined) {
    if (al.type !== "uint32" || al.value === 0 || al.value % 8 !== 0) throw new GgufError(`${file}: key general.alignment must be a uint32 multiple of 8 (got ${al.type} ${String(al.value)})`);
    alignment = al.value;
  }
  const infos: { name: string; dims: number[]; type: GgmlFloatType; offset: number }[] = [];
  const names = new Set<string>();
  for (let i = 0; i < tensorCount; i++) {
    const name = r.string(`tensor ${i} name`);
    if (names.has(name)) throw new GgufError(`${file}: tensor ${name} appears twice`);
    names.add(name);
    const nDims = r.u32(`tensor ${name} n_dims`);
    if (nDims < 1 || nDims > 4) throw new GgufError(`${file}: tensor ${name} has ${nDims} dimensions (ggml allows 1 to 4)`);
    const dims = Array.from({ length: nDims }, () => r.size(`tensor ${name} dimension`));
    const typeId = r.u32(`tensor ${name} type`);
    const type = GGML_NAME.get(typeId);
    if (type === undefined) throw new GgufError(`${file}: tensor ${name} has ggml type ${typeId}; only F32, F16, BF16 and F64 tensors are read`);
    const offset = r.size(`tensor ${name} offset`);
    if (offset % alignment !== 0) throw new GgufError(`${file}: tensor ${name} offset ${offset} is not a multiple of the alignment ${alignment}`);
    infos.push({ name, dims, type, offset });
  }
  const dataStart = Math.ceil(r.pos / alignment) * alignment;
  const tensors = infos.map(({ name, dims, type, offset }) => {
    const count = dims.reduce((a, b) => a * b, 1);
    const begin = dataStart + offset;
    const end = begin + count * GGML_BYTES[type];
    if (!Number.isSafeInteger(end) || end > bytes.length) throw new GgufError(`${file}: tensor ${name} (${type} [${dims.join(", ")}] at offset ${offset}) runs past the end of the file`);
    return { name, dims, type, data: bytes.subarray(begin, end) };
  });
  return { version, kv, tensors, alignment };
}

/** A float tensor's values as float32 (F64 rounded; F16/BF16 widened exactly). */
export function ggufTensorToF32(t: GgufTensor): Float32Array {
  const count = t.data.length / GGML_BYTES[t.type];
  const out = new Float32Array(count);
  const v = new DataView(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  for (let i = 0; i < count; i++) {
    switch (t.type) {
      case "F32": out[i] = v.getFloat32(4 * i, true); break;
      case "F64": out[i] = v.getFloat64(8 * i, true); break;
      case "F16": out[i] = f16BitsToF32(v.getUint16(2 * i, true)); break;
      case "BF16": out[i] = bf16BitsToF32(v.getUint16(2 * i, true)); break;
    }
  }
  return out;
}

/** float32 values as the little-endian bytes of an F32 tensor. */
export function f32Bytes(x: Float32Array): Uint8Array {
  const out = new Uint8Array(x.length * 4);
  const v = new DataView(out.buffer);
  x.forEach((y, i) => v.setFloat32(4 * i, y, true));
  return out;
}

/** A value as plain JSON-able data (bigints as decimal strings), for metadata and messages. */
export function ggufPlain(v: GgufValue): unknown {
  if (v.type === "array") return v.value.map(ggufPlain);
  if (typeof v.value === "bigint") return v.value.toString();
  return v.value;
}
