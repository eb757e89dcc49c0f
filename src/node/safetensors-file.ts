// safetensors files on disk for Node: positional reads (no whole-file buffer: fs.readFileSync fails
// above 2 GiB, and a 0.6B BF16 checkpoint is 1.2 GB) and atomic writes (a temporary file in the same
// directory, renamed over the target only once complete, so a failed run leaves nothing half-written).

import { closeSync, fstatSync, fsyncSync, openSync, read, readSync, renameSync, statSync, unlinkSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { SafetensorsError } from "../safetensors/errors.js";
import { SafetensorsReader, type ByteSource } from "../safetensors/reader.js";
import {
  checkLength,
  encodeTensorData,
  planSafetensors,
  type PlannedTensor,
  type TensorSpec,
  type TensorToWrite,
} from "../safetensors/serialize.js";

/** A ByteSource over an open file descriptor. */
export class FileByteSource implements ByteSource {
  readonly size: number;
  private fd: number | undefined;

  constructor(readonly path: string) {
    try {
      this.fd = openSync(path, "r");
      this.size = fstatSync(this.fd).size;
    } catch (e) {
      if (this.fd !== undefined) closeSync(this.fd);
      throw new SafetensorsError(path, `cannot open (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
  }

  read(offset: number, length: number, into: Uint8Array): void {
    if (this.fd === undefined) throw new SafetensorsError(this.path, "read after close");
    let done = 0;
    while (done < length) {
      const n = readSync(this.fd, into, done, length - done, offset + done);
      if (n === 0) {
        throw new SafetensorsError(this.path, `unexpected end of file at byte ${offset + done} (file changed while reading?)`);
      }
      done += n;
    }
  }

  /**
   * Like read, off the main thread (libuv's pool), so it overlaps computation. Before reading, the
   * file is looked up again by path: a shard deleted, replaced or truncated during a long run is an
   * error naming it, not a run that silently goes on with what the open descriptor still sees.
   */
  async readAsync(offset: number, length: number, into: Uint8Array): Promise<void> {
    if (this.fd === undefined) throw new SafetensorsError(this.path, "read after close");
    this.checkUnchanged();
    const fd = this.fd;
    let done = 0;
    while (done < length) {
      // One call reads at most 2 GiB - 1; stay well below.
      const want = Math.min(length - done, 1 << 30);
      const n = await new Promise<number>((resolve, reject) =>
        read(fd, into, done, want, offset + done, (err, bytes) => (err ? reject(new SafetensorsError(this.path, `read failed (${err.code ?? err.message})`)) : resolve(bytes))),
      );
      if (n === 0) throw new SafetensorsError(this.path, `unexpected end of file at byte ${offset + done} (file changed while reading?)`);
      done += n;
    }
  }

  private checkUnchanged(): void {
    let size: number;
    try {
      size = statSync(this.path).size;
    } catch (e) {
      throw new SafetensorsError(this.path, `disappeared during the run (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    if (size !== this.size) throw new SafetensorsError(this.path, `changed size during the run (${this.size} bytes when opened, ${size} now)`);
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

/** Open and validate a safetensors file; read tensors with `readF32`, then `close()`. */
export function openSafetensorsFile(path: string): SafetensorsReader {
  const src = new FileByteSource(path);
  try {
    return SafetensorsReader.open(src, path);
  } catch (e) {
    src.close();
    throw e;
  }
}

/**
 * Write `path` atomically: `write(fd)` fills a temporary file next to it, which is synced and renamed
 * over `path`; on any error the temporary file is removed and `path` is left as it was.
 */
export function writeFileAtomic(path: string, write: (fd: number) => void): void;
export function writeFileAtomic(path: string, data: string | Uint8Array): void;
export function writeFileAtomic(path: string, what: string | Uint8Array | ((fd: number) => void)): void {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${Math.random().toString(36).slice(2, 10)}.tmp`);
  const fd = openSync(tmp, "wx");
  let ok = false;
  try {
    if (typeof what === "function") what(fd);
    else writeAll(fd, typeof what === "string" ? new TextEncoder().encode(what) : what);
    fsyncSync(fd);
    ok = true;
  } finally {
    closeSync(fd);
    if (!ok) tryUnlink(tmp);
  }
  try {
    renameSync(tmp, path);
  } catch (e) {
    tryUnlink(tmp);
    throw e;
  }
}

function tryUnlink(p: string): void {
  try {
    unlinkSync(p);
  } catch {
    // already gone
  }
}

function writeAll(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done);
}

/** Largest piece of one tensor encoded at a time, in elements (16 MiB of f32). */
const WRITE_CHUNK_ELEMENTS = 4 * 1024 * 1024;

/**
 * Write a safetensors file atomically, producing each tensor's f32 data on demand (called once per
 * tensor, in file order; the array can be dropped as soon as it returns), so a checkpoint larger
 * than memory can be written. Data is converted to each tensor's dtype, rounding to nearest even.
 */
export function writeSafetensorsFileStreaming(
  path: string,
  specs: Record<string, TensorSpec>,
  produce: (name: string, spec: PlannedTensor) => Float32Array,
  metadata?: Record<string, string>,
): void {
  const plan = planSafetensors(specs, metadata);
  const scratch = new Uint8Array(WRITE_CHUNK_ELEMENTS * 4);
  writeFileAtomic(path, (fd) => {
    writeAll(fd, plan.header);
    for (const t of plan.tensors) {
      const data = produce(t.name, t);
      checkLength(t, data);
      const width = t.dtype === "F32" ? 4 : 2;
      for (let i = 0; i < data.length; i += WRITE_CHUNK_ELEMENTS) {
        const part = data.subarray(i, Math.min(data.length, i + WRITE_CHUNK_ELEMENTS));
        const bytes = scratch.subarray(0, part.length * width);
        encodeTensorData(t.dtype, part, bytes);
        writeAll(fd, bytes);
      }
    }
  });
}

/** Write tensors (f32 data converted to each one's dtype) and metadata to `path`, atomically. */
export function writeSafetensorsFile(
  path: string,
  tensors: Record<string, TensorToWrite>,
  metadata?: Record<string, string>,
): void {
  writeSafetensorsFileStreaming(path, tensors, (name) => tensors[name]!.data, metadata);
}
