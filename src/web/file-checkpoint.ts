// A checkpoint folder the user picked in a browser (<input webkitdirectory>, drag and drop): the
// platform-neutral src/model/checkpoint.ts over File objects. In a worker (the page's compute worker,
// src/web/driver.ts) the few small synchronous reads (headers, norms, the prompts' embedding rows)
// use FileReaderSync; the streamed layers use File.slice(...).arrayBuffer(), asynchronously, one
// projection at a time, so memory holds what the engine's two staging slots hold, never the file.
// A page's main thread has no synchronous file read: there openCheckpointFiles reads the files whole.
import { CheckpointError, openCheckpointFrom, type Checkpoint } from "../model/checkpoint.js";
import { SafetensorsError } from "../safetensors/errors.js";
import { bytesSource, type ByteSource } from "../safetensors/reader.js";
import type { TokenizerInput } from "../api/common.js";
import { TokenizerError } from "../tokenizer/errors.js";
import { loadTokenizerWith } from "../tokenizer/files.js";
import type { TextTokenizer } from "../tokenizer/tokenizer.js";

/** A picked file and its path inside the picked folder ("Qwen3-0.6B/config.json"). */
export interface PickedFile {
  path: string;
  file: Blob;
}

declare const FileReaderSync: { new (): { readAsArrayBuffer(b: Blob): ArrayBuffer; readAsText(b: Blob): string } };

/** Bytes per asynchronous read: bounds the temporary buffer a large tensor needs. */
const ASYNC_CHUNK = 64 * 2 ** 20;

/** A ByteSource over a File (a Blob): synchronous reads need a worker (FileReaderSync). */
export function blobByteSource(blob: Blob, name: string): ByteSource {
  const size = blob.size;
  const check = (offset: number, length: number) => {
    if (offset < 0 || offset + length > size) throw new SafetensorsError(name, `read [${offset}, ${offset + length}) outside the file's ${size} bytes`);
  };
  const failed = (e: unknown) => new SafetensorsError(name, `cannot read (${(e as Error)?.message ?? String(e)}; was the file changed or removed?)`);
  return {
    size,
    read(offset, length, into) {
      check(offset, length);
      let buf: ArrayBuffer;
      try {
        buf = new FileReaderSync().readAsArrayBuffer(blob.slice(offset, offset + length));
      } catch (e) {
        throw failed(e);
      }
      if (buf.byteLength !== length) throw new SafetensorsError(name, `short read at byte ${offset} (file changed while reading?)`);
      into.set(new Uint8Array(buf));
    },
    async readAsync(offset, length, into) {
      check(offset, length);
      for (let done = 0; done < length; done += ASYNC_CHUNK) {
        const n = Math.min(ASYNC_CHUNK, length - done);
        let buf: ArrayBuffer;
        try {
          buf = await blob.slice(offset + done, offset + done + n).arrayBuffer();
        } catch (e) {
          throw failed(e);
        }
        if (buf.byteLength !== n) throw new SafetensorsError(name, `short read at byte ${offset + done} (file changed while reading?)`);
        into.set(new Uint8Array(buf), done);
      }
    },
  };
}

/** The folder holding config.json (the shallowest one) and its files by base name. */
function checkpointFolder(picked: readonly PickedFile[]): { dir: string; files: Map<string, Blob> } {
  const configs = picked.filter((p) => p.path === "config.json" || p.path.endsWith("/config.json")).sort((a, b) => a.path.split("/").length - b.path.split("/").length);
  if (!configs.length) throw new CheckpointError(`the picked folder has no config.json (${picked.length} file(s) picked): pick a Hugging Face Qwen3 checkpoint folder`);
  const dir = configs[0]!.path.slice(0, -"config.json".length).replace(/\/$/, "");
  const prefix = dir ? `${dir}/` : "";
  const files = new Map<string, Blob>();
  for (const p of picked) {
    if (!p.path.startsWith(prefix)) continue;
    const rest = p.path.slice(prefix.length);
    if (!rest.includes("/")) files.set(rest, p.file);
  }
  return { dir: dir || "(picked files)", files };
}

export interface PickedCheckpoint {
  checkpoint: Checkpoint;
  /** The checkpoint's tokenizer (tokenizer.json, chat template) as the command line builds it. */
  tokenizer(): Promise<TextTokenizer>;
  /** Whether the folder has a tokenizer.json. */
  hasTokenizer: boolean;
}

/** Files already read into memory, by Blob (the main thread's way to answer synchronous reads). */
type InMemory = ReadonlyMap<Blob, Uint8Array>;

/** The picked folder as a checkpoint; synchronous reads use FileReaderSync (a worker) unless the file is in `inMemory`. */
export function openPickedCheckpoint(picked: readonly PickedFile[], inMemory?: InMemory): PickedCheckpoint {
  const { dir, files } = checkpointFolder(picked);
  const path = (f: string) => `${dir}/${f}`;
  const get = (f: string) => {
    const b = files.get(f);
    if (!b) throw new CheckpointError(`${path(f)}: missing`);
    return b;
  };
  const checkpoint = openCheckpointFrom({
    dir,
    name: dir.split("/").pop() || dir,
    path,
    exists: (f) => files.has(f),
    readText: (f) => {
      try {
        const b = get(f), bytes = inMemory?.get(b);
        return bytes ? new TextDecoder().decode(bytes) : new FileReaderSync().readAsText(b);
      } catch (e) {
        if (e instanceof CheckpointError) throw e;
        throw new CheckpointError(`${path(f)}: cannot read (${(e as Error).message})`);
      }
    },
    open: (f) => {
      const b = get(f), bytes = inMemory?.get(b);
      return bytes ? bytesSource(bytes) : blobByteSource(b, path(f));
    },
  });
  const read = async (f: string, required: boolean) => {
    const b = files.get(f);
    if (!b) {
      if (required) throw new TokenizerError(`${path(f)}: file not found`);
      return undefined;
    }
    try {
      return await b.text();
    } catch (e) {
      throw new TokenizerError(`${path(f)}: cannot read (${(e as Error).message})`);
    }
  };
  return { checkpoint, tokenizer: () => loadTokenizerWith(read, path, dir), hasTokenizer: files.has("tokenizer.json") };
}

/** A file list as picked files: each File's path inside the picked folder (webkitRelativePath), else its name. */
function asPicked(files: ArrayLike<File | PickedFile> | Iterable<File | PickedFile>): PickedFile[] {
  return Array.from(files as ArrayLike<File | PickedFile>, (f) => ("file" in f && "path" in f ? f : { path: (f as File).webkitRelativePath || (f as File).name, file: f as File }));
}

/** What the one-call functions (powerIter, melbo, ...) take from a checkpoint: `model` and `tokenizer`. */
export interface OpenedFiles {
  /** The checkpoint (close() when done). */
  model: Checkpoint;
  /** Its tokenizer.json (and chat template), read when a text prompt needs it. */
  tokenizer: TokenizerInput;
}

/**
 * The files of a checkpoint folder (an <input webkitdirectory>'s FileList, File objects, or PickedFile
 * paths with Blobs) opened for the one-call functions, on any thread. In a worker the weights stay in
 * the files and are read slice by slice as the engine needs them (any size). A page's main thread has
 * no synchronous file read, so there the checkpoint's config, index and .safetensors files are read
 * whole into memory first: fine for small checkpoints; run a large one in a worker.
 */
export async function openCheckpointFiles(files: ArrayLike<File | PickedFile> | Iterable<File | PickedFile>): Promise<OpenedFiles> {
  const picked = asPicked(files);
  let inMemory: Map<Blob, Uint8Array> | undefined;
  if (typeof FileReaderSync === "undefined") {
    inMemory = new Map();
    for (const [name, blob] of checkpointFolder(picked).files) {
      if (name === "config.json" || name === "model.safetensors.index.json" || name.endsWith(".safetensors")) inMemory.set(blob, new Uint8Array(await blob.arrayBuffer()));
    }
  }
  const { checkpoint, tokenizer, hasTokenizer } = openPickedCheckpoint(picked, inMemory);
  return { model: checkpoint, tokenizer: (required) => (required || hasTokenizer ? tokenizer() : Promise.resolve(null)) };
}
