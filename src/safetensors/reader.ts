// Reading tensors out of a safetensors file through an abstract byte source, so the same code serves
// Node (positional file reads, src/node/safetensors-file.ts) and the browser (an in-memory buffer).
//
// Tensors are read in chunks straight into the destination (which may be a view into wasm memory):
// a 1.2 GB checkpoint is never held twice, and nothing depends on a whole file fitting one buffer.

import { decodeBf16, decodeF16 } from "./float16.js";
import { SafetensorsError } from "./errors.js";
import { parseSafetensorsHeader, readHeaderLength, type SafetensorsHeader, type TensorInfo } from "./header.js";

/** Random-access bytes of one file. */
export interface ByteSource {
  /** Total size in bytes. */
  readonly size: number;
  /** Copy bytes [offset, offset + length) into into[0, length); throws if they cannot all be read. */
  read(offset: number, length: number, into: Uint8Array): void;
  /** The same, asynchronously (may overlap computation); sources without it answer with `read`. */
  readAsync?(offset: number, length: number, into: Uint8Array): Promise<void>;
  close?(): void;
}

/** A ByteSource over bytes already in memory. */
export function bytesSource(bytes: Uint8Array): ByteSource {
  return {
    size: bytes.length,
    read(offset, length, into) {
      if (offset < 0 || offset + length > bytes.length) {
        throw new RangeError(`read [${offset}, ${offset + length}) outside ${bytes.length} bytes`);
      }
      into.set(bytes.subarray(offset, offset + length));
    },
  };
}

/** Bytes per chunk when reading a tensor (even, so 16-bit elements never straddle chunks). */
export const READ_CHUNK_BYTES = 16 * 1024 * 1024;

const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export class SafetensorsReader {
  /** Parse the header of `src`; `name` (usually the path) appears in every error message. */
  static open(src: ByteSource, name: string): SafetensorsReader {
    const first8 = new Uint8Array(8);
    if (src.size >= 8) src.read(0, 8, first8);
    const n = readHeaderLength(first8, src.size, name);
    const prefix = new Uint8Array(8 + n);
    src.read(0, 8 + n, prefix);
    return new SafetensorsReader(src, name, parseSafetensorsHeader(prefix, src.size, name));
  }

  private scratch: Uint8Array | undefined;

  private constructor(
    readonly source: ByteSource,
    readonly name: string,
    readonly header: SafetensorsHeader,
  ) {}

  /** Tensor names in data order. */
  get names(): string[] {
    return [...this.header.tensors.keys()];
  }

  get metadata(): Record<string, string> {
    return this.header.metadata;
  }

  has(tensor: string): boolean {
    return this.header.tensors.has(tensor);
  }

  /** dtype, shape and offsets of `tensor`; throws a SafetensorsError naming file and tensor if absent. */
  info(tensor: string): TensorInfo {
    const t = this.header.tensors.get(tensor);
    if (!t) throw new SafetensorsError(this.name, "no such tensor in this file", tensor);
    return t;
  }

  /**
   * Read `tensor` as f32 (F32 as is, F16 and BF16 widened exactly) into `dst`, whose length must be
   * the tensor's element count; `dst` may be a view into wasm memory. Allocates and returns a new
   * array when `dst` is omitted. Other dtypes throw "unsupported dtype".
   */
  readF32(tensor: string, dst?: Float32Array): Float32Array {
    const t = this.info(tensor);
    if (t.dtype !== "F32" && t.dtype !== "F16" && t.dtype !== "BF16") {
      throw new SafetensorsError(
        this.name,
        `unsupported dtype ${t.dtype} (only F32, F16 and BF16 can be read as f32)`,
        tensor,
      );
    }
    const out = dst ?? new Float32Array(t.numel);
    if (out.length !== t.numel) {
      throw new SafetensorsError(
        this.name,
        `destination holds ${out.length} floats but the tensor (shape [${t.shape.join(", ")}]) has ${t.numel}`,
        tensor,
      );
    }
    if (!littleEndian) throw new SafetensorsError(this.name, "reading needs a little-endian host", tensor);
    const total = t.end - t.begin;
    if (t.dtype === "F32") {
      const bytes = new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
      for (let off = 0; off < total; off += READ_CHUNK_BYTES) {
        const len = Math.min(READ_CHUNK_BYTES, total - off);
        this.readRange(t.begin + off, len, bytes.subarray(off, off + len), tensor);
      }
      return out;
    }
    const scratch = this.chunkBuffer(Math.min(total, READ_CHUNK_BYTES));
    const decode = t.dtype === "BF16" ? decodeBf16 : decodeF16;
    for (let off = 0; off < total; off += READ_CHUNK_BYTES) {
      const len = Math.min(READ_CHUNK_BYTES, total - off);
      this.readRange(t.begin + off, len, scratch, tensor);
      decode(new Uint16Array(scratch.buffer, scratch.byteOffset, len / 2), out.subarray(off / 2, (off + len) / 2));
    }
    return out;
  }

  /**
   * Read rows [row0, row0 + rows) of `tensor` (rows along its first dimension, e.g. the embedding rows
   * of some token ids) as f32 into `dst` (length rows * row size; allocated when omitted), reading only
   * those bytes: a 600 MB embedding matrix need not be loaded to use 32 of its rows.
   */
  readRowsF32(tensor: string, row0: number, rows: number, dst?: Float32Array): Float32Array {
    const t = this.info(tensor);
    if (t.dtype !== "F32" && t.dtype !== "F16" && t.dtype !== "BF16") {
      throw new SafetensorsError(this.name, `unsupported dtype ${t.dtype} (only F32, F16 and BF16 can be read as f32)`, tensor);
    }
    if (t.shape.length < 1) throw new SafetensorsError(this.name, "a scalar tensor has no rows", tensor);
    const nRows = t.shape[0]!;
    if (!Number.isInteger(row0) || !Number.isInteger(rows) || row0 < 0 || rows < 0 || row0 + rows > nRows) {
      throw new SafetensorsError(this.name, `rows [${row0}, ${row0 + rows}) outside the tensor's ${nRows} rows`, tensor);
    }
    const rowElems = nRows === 0 ? 0 : t.numel / nRows;
    const out = dst ?? new Float32Array(rows * rowElems);
    if (out.length !== rows * rowElems) {
      throw new SafetensorsError(this.name, `destination holds ${out.length} floats but ${rows} rows of ${rowElems} need ${rows * rowElems}`, tensor);
    }
    if (!littleEndian) throw new SafetensorsError(this.name, "reading needs a little-endian host", tensor);
    const width = t.dtype === "F32" ? 4 : 2;
    const begin = t.begin + row0 * rowElems * width;
    const total = rows * rowElems * width;
    if (t.dtype === "F32") {
      const bytes = new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
      for (let off = 0; off < total; off += READ_CHUNK_BYTES) {
        const len = Math.min(READ_CHUNK_BYTES, total - off);
        this.readRange(begin + off, len, bytes.subarray(off, off + len), tensor);
      }
      return out;
    }
    const scratch = this.chunkBuffer(Math.min(total, READ_CHUNK_BYTES));
    const decode = t.dtype === "BF16" ? decodeBf16 : decodeF16;
    for (let off = 0; off < total; off += READ_CHUNK_BYTES) {
      const len = Math.min(READ_CHUNK_BYTES, total - off);
      this.readRange(begin + off, len, scratch, tensor);
      decode(new Uint16Array(scratch.buffer, scratch.byteOffset, len / 2), out.subarray(off / 2, (off + len) / 2));
    }
    return out;
  }

  /**
   * The stored little-endian bytes of `tensor` into `into` (exactly its byte size), asynchronously
   * where the source can: how streamed weights reach wasm memory without a conversion in JavaScript.
   */
  async readRawInto(tensor: string, into: Uint8Array): Promise<void> {
    const t = this.info(tensor);
    const total = t.end - t.begin;
    if (into.length !== total) throw new SafetensorsError(this.name, `destination holds ${into.length} bytes but the tensor has ${total}`, tensor);
    if (!littleEndian) throw new SafetensorsError(this.name, "reading needs a little-endian host", tensor);
    if (!this.source.readAsync) {
      this.readRange(t.begin, total, into, tensor);
      return;
    }
    try {
      await this.source.readAsync(t.begin, total, into);
    } catch (e) {
      if (e instanceof SafetensorsError) throw e;
      throw new SafetensorsError(this.name, `read of bytes [${t.begin}, ${t.end}) failed: ${(e as Error).message}`, tensor);
    }
  }

  /** The raw little-endian bytes of `tensor`, any dtype. */
  readBytes(tensor: string): Uint8Array {
    const t = this.info(tensor);
    const out = new Uint8Array(t.end - t.begin);
    this.readRange(t.begin, out.length, out, tensor);
    return out;
  }

  close(): void {
    this.scratch = undefined;
    this.source.close?.();
  }

  private chunkBuffer(bytes: number): Uint8Array {
    if (!this.scratch || this.scratch.length < bytes) this.scratch = new Uint8Array(bytes);
    return this.scratch;
  }

  private readRange(offset: number, length: number, into: Uint8Array, tensor: string): void {
    try {
      this.source.read(offset, length, into);
    } catch (e) {
      if (e instanceof SafetensorsError) throw e;
      throw new SafetensorsError(this.name, `read of bytes [${offset}, ${offset + length}) failed: ${(e as Error).message}`, tensor);
    }
  }
}
