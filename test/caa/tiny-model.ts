// The bundled tiny model (byte-level vocabulary, chat template) in a temporary directory: the weights
// written from the same shape and seed as scripts/make-tiny-model.ts, the tokenizer files copied from
// models/tiny. Tests use this copy so they do not depend on models/tiny's weights having been built.
import { copyFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { TINY_MODEL_SEED, TINY_MODEL_SHAPE } from "../../src/checkpoint/write-random.js";
import { writeRandomQwen3Checkpoint } from "../../src/node/random-checkpoint.js";
import { makeTempDir } from "../helpers/checkpoints.js";

export function tinyModelCopy(): { dir: string; remove: () => void } {
  const dir = makeTempDir("jacsteer-tiny-");
  writeRandomQwen3Checkpoint(dir, TINY_MODEL_SHAPE, { dtype: "F32", seed: TINY_MODEL_SEED, tied: true });
  for (const f of ["tokenizer.json", "tokenizer_config.json"]) copyFileSync(join(process.cwd(), "models", "tiny", f), join(dir, f));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}
