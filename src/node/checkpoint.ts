// A Hugging Face checkpoint directory on disk: src/model/checkpoint.ts over Node's file system
// (positional reads, src/node/safetensors-file.ts). Errors name the file (and tensor) at fault.
import { existsSync, readFileSync, statSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { CheckpointError, openCheckpointFrom, type Checkpoint } from "../model/checkpoint.js";
import { FileByteSource } from "./safetensors-file.js";

export { CheckpointError, type Checkpoint } from "../model/checkpoint.js";

export function openCheckpoint(dirArg: string): Checkpoint {
  const dir = resolve(dirArg);
  if (!existsSync(dir)) throw new CheckpointError(`--model ${dirArg}: directory does not exist`);
  if (!statSync(dir).isDirectory()) throw new CheckpointError(`--model ${dirArg}: not a directory`);
  return openCheckpointFrom({
    dir,
    name: basename(dir),
    path: (file) => join(dir, file),
    exists: (file) => existsSync(join(dir, file)),
    readText: (file) => {
      try {
        return readFileSync(join(dir, file), "utf8");
      } catch (e) {
        throw new CheckpointError(`${join(dir, file)}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
      }
    },
    open: (file) => new FileByteSource(join(dir, file)),
  });
}
