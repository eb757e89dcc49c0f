// A Hugging Face checkpoint: config.json plus model.safetensors, or the shards listed in
// model.safetensors.index.json, read through a small file-access interface so the same code opens a
// directory on disk (src/node/checkpoint.ts) and a folder the user picked in a browser
// (src/web/file-checkpoint.ts). Errors name the file (and tensor) at fault.
import { parseQwen3Config, ConfigError, type Qwen3Config } from "./config.js";
import type { RowReadableTensorSource } from "./weights.js";
import type { StreamableTensorSource } from "../engine/weight-store.js";
import { SafetensorsReader, type ByteSource } from "../safetensors/reader.js";

export class CheckpointError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CheckpointError";
  }
}

export interface Checkpoint {
  dir: string;
  /** Directory base name: how results name the model. */
  name: string;
  config: Qwen3Config;
  rawConfig: Record<string, unknown>;
  /**
   * Tensors by name; row reads let the engine take only the prompts' embedding rows, raw reads let
   * it stream layers in their stored dtype.
   */
  tensors: RowReadableTensorSource & StreamableTensorSource;
  close(): void;
}

/** The files of one checkpoint directory, by base name. */
export interface CheckpointFiles {
  /** The directory as the user named it (absolute in Node). */
  dir: string;
  /** Its base name. */
  name: string;
  /** How messages name a file of the directory. */
  path(file: string): string;
  exists(file: string): boolean;
  /** The whole file as text; throws a CheckpointError naming it when it cannot be read. */
  readText(file: string): string;
  /** Random access to the file's bytes; throws naming it when it cannot be opened. */
  open(file: string): ByteSource;
}

function readJson(files: CheckpointFiles, file: string): unknown {
  const text = files.readText(file);
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`${files.path(file)}: not valid JSON (${(e as Error).message})`);
  }
}

export function openCheckpointFrom(files: CheckpointFiles): Checkpoint {
  const configPath = files.path("config.json");
  if (!files.exists("config.json")) throw new CheckpointError(`${configPath}: missing (a checkpoint directory needs config.json)`);
  const rawConfig = readJson(files, "config.json") as Record<string, unknown>;
  const config = parseQwen3Config(rawConfig, configPath);

  // name -> file that holds it
  const where = new Map<string, string>();
  const single = "model.safetensors";
  const indexFile = "model.safetensors.index.json";
  const indexPath = files.path(indexFile);
  if (files.exists(indexFile)) {
    const index = readJson(files, indexFile) as { weight_map?: Record<string, unknown> };
    if (!index || typeof index.weight_map !== "object" || index.weight_map === null) {
      throw new CheckpointError(`${indexPath}: missing "weight_map"`);
    }
    for (const [name, file] of Object.entries(index.weight_map)) {
      if (typeof file !== "string" || file.includes("/") || file.includes("\\")) {
        throw new CheckpointError(`${indexPath}: weight_map entry for "${name}" is not a file name in the directory`);
      }
      where.set(name, file);
    }
  } else if (!files.exists(single)) {
    throw new CheckpointError(`${files.dir}: no model.safetensors or model.safetensors.index.json`);
  }

  const readers = new Map<string, SafetensorsReader>();
  const readerFor = (file: string): SafetensorsReader => {
    let r = readers.get(file);
    if (!r) {
      if (!files.exists(file)) throw new CheckpointError(`${files.path(file)}: missing (listed in ${indexPath})`);
      const src = files.open(file);
      try {
        r = SafetensorsReader.open(src, files.path(file));
      } catch (e) {
        src.close?.();
        throw e;
      }
      readers.set(file, r);
    }
    return r;
  };
  const fileOf = (name: string): string | undefined => (where.size ? where.get(name) : single);

  const tensors: RowReadableTensorSource & StreamableTensorSource = {
    describe: (name) => {
      const f = fileOf(name);
      return f ? files.path(f) : indexPath;
    },
    has: (name) => {
      const f = fileOf(name);
      if (!f) return false;
      const r = readerFor(f);
      if (where.size && !r.has(name)) throw new CheckpointError(`${files.path(f)}: tensor "${name}" listed in ${indexPath} is not in the file`);
      return r.has(name);
    },
    shape: (name) => readerFor(fileOf(name)!).info(name).shape.slice(),
    readF32: (name, dst) => readerFor(fileOf(name)!).readF32(name, dst),
    readRowsF32: (name, row0, rows, dst) => readerFor(fileOf(name)!).readRowsF32(name, row0, rows, dst),
    dtype: (name) => readerFor(fileOf(name)!).info(name).dtype,
    readRaw: (name, dst) => readerFor(fileOf(name)!).readRawInto(name, dst),
  };
  return {
    dir: files.dir,
    name: files.name,
    config,
    rawConfig,
    tensors,
    close: () => {
      for (const r of readers.values()) r.close?.();
      readers.clear();
    },
  };
}
