// A Hugging Face checkpoint directory on disk: config.json plus model.safetensors, or the shards
// listed in model.safetensors.index.json. Errors name the file (and tensor) at fault.
import { existsSync, readFileSync, statSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { parseQwen3Config, ConfigError, type Qwen3Config } from "../model/config.js";
import type { RowReadableTensorSource } from "../model/weights.js";
import type { StreamableTensorSource } from "../engine/weight-store.js";
import { openSafetensorsFile } from "./safetensors-file.js";
import type { SafetensorsReader } from "../safetensors/reader.js";

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

function readJson(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new CheckpointError(`${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`${path}: not valid JSON (${(e as Error).message})`);
  }
}

export function openCheckpoint(dirArg: string): Checkpoint {
  const dir = resolve(dirArg);
  if (!existsSync(dir)) throw new CheckpointError(`--model ${dirArg}: directory does not exist`);
  if (!statSync(dir).isDirectory()) throw new CheckpointError(`--model ${dirArg}: not a directory`);
  const configPath = join(dir, "config.json");
  if (!existsSync(configPath)) throw new CheckpointError(`${configPath}: missing (a checkpoint directory needs config.json)`);
  const rawConfig = readJson(configPath) as Record<string, unknown>;
  const config = parseQwen3Config(rawConfig, configPath);

  // name -> file that holds it
  const where = new Map<string, string>();
  const single = join(dir, "model.safetensors");
  const indexPath = join(dir, "model.safetensors.index.json");
  if (existsSync(indexPath)) {
    const index = readJson(indexPath) as { weight_map?: Record<string, unknown> };
    if (!index || typeof index.weight_map !== "object" || index.weight_map === null) {
      throw new CheckpointError(`${indexPath}: missing "weight_map"`);
    }
    for (const [name, file] of Object.entries(index.weight_map)) {
      if (typeof file !== "string" || file.includes("/") || file.includes("\\")) {
        throw new CheckpointError(`${indexPath}: weight_map entry for "${name}" is not a file name in the directory`);
      }
      where.set(name, join(dir, file));
    }
  } else if (!existsSync(single)) {
    throw new CheckpointError(`${dir}: no model.safetensors or model.safetensors.index.json`);
  }

  const readers = new Map<string, SafetensorsReader>();
  const readerFor = (file: string): SafetensorsReader => {
    let r = readers.get(file);
    if (!r) {
      if (!existsSync(file)) throw new CheckpointError(`${file}: missing (listed in ${indexPath})`);
      r = openSafetensorsFile(file);
      readers.set(file, r);
    }
    return r;
  };
  const fileOf = (name: string): string | undefined => (where.size ? where.get(name) : single);

  const tensors: RowReadableTensorSource & StreamableTensorSource = {
    describe: (name) => fileOf(name) ?? indexPath,
    has: (name) => {
      const f = fileOf(name);
      if (!f) return false;
      const r = readerFor(f);
      if (where.size && !r.has(name)) throw new CheckpointError(`${f}: tensor "${name}" listed in ${indexPath} is not in the file`);
      return r.has(name);
    },
    shape: (name) => readerFor(fileOf(name)!).info(name).shape.slice(),
    readF32: (name, dst) => readerFor(fileOf(name)!).readF32(name, dst),
    readRowsF32: (name, row0, rows, dst) => readerFor(fileOf(name)!).readRowsF32(name, row0, rows, dst),
    dtype: (name) => readerFor(fileOf(name)!).info(name).dtype,
    readRaw: (name, dst) => readerFor(fileOf(name)!).readRawInto(name, dst),
  };
  return {
    dir,
    name: basename(dir),
    config,
    rawConfig,
    tensors,
    close: () => {
      for (const r of readers.values()) r.close?.();
      readers.clear();
    },
  };
}
