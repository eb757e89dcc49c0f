// `jacsteer export FILE --format gguf --out X.gguf`: a vector as a llama.cpp control vector, which
// llama.cpp (--control-vector-scaled), repeng and EasySteer load. The layer mapping and the summing of
// several rows are explained in src/io/control-vector.ts.
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { basename } from "node:path";
import { controlVectorFromSet, controlVectorLayer, controlVectorLayerProblem } from "../io/control-vector.js";
import { encodeGguf } from "../io/gguf.js";
import { decodeVectorFile, parseVectorRef, VectorFileError } from "../io/vector-file.js";
import { bytesSource, SafetensorsReader } from "../safetensors/index.js";
import { writeFileAtomic } from "../node/safetensors-file.js";
import { intFlag, numberFlag, parseFlagsAndPositionals, type Options } from "./args.js";
import { UsageError } from "./errors.js";
import { checkOutPath, log } from "./session.js";

export const EXPORT_HELP = `jacsteer export FILE[:ROW] --format gguf --out X.gguf: a vector as a llama.cpp control vector

  FILE[:ROW]          a vector file (row 0 without :ROW)
  --format gguf       llama.cpp's control-vector GGUF (the only format; the default)
  --out X.gguf        the file to write
  --rows 0,2          rows to export instead of :ROW; several rows are summed (one direction per layer)
  --scale A           multiply the direction by A (default 1); llama.cpp's --control-vector-scaled
                      multiplies it again at load time
  --layer S           the steered layer, when FILE has no source_layer (or to override it)

The file holds one F32 tensor direction.S: llama.cpp adds direction.N to the output of decoder layer N,
the layer jacsteer's source_layer S steers, so N = S. Layer 0 cannot be exported: llama.cpp has no
control vector for it. Keys: general.architecture = controlvector, controlvector.model_hint = qwen3,
controlvector.layer_count = 1, and jacsteer.* provenance (source file and SHA-256, rows, scale, method,
model, layers, singular values). Use it with: llama-cli -m qwen3.gguf --control-vector-scaled X.gguf 1.0
`;

const OPTIONS: Options = {
  format: { type: "string" },
  out: { type: "string" },
  rows: { type: "string" },
  scale: { type: "string" },
  layer: { type: "string" },
  help: { type: "boolean", short: "h" },
};

function parseRows(s: string): number[] {
  const parts = s.split(",").map((x) => x.trim());
  if (parts.some((p) => !/^\d+$/.test(p))) throw new UsageError(`--rows ${s}: expected comma-separated row numbers, e.g. 0,2`);
  const rows = parts.map(Number);
  const dup = rows.find((r, i) => rows.indexOf(r) !== i);
  if (dup !== undefined) throw new UsageError(`--rows ${s}: row ${dup} is given twice`);
  return rows;
}

export async function exportVectors(argv: string[]): Promise<number> {
  const { values: f, positionals: positional } = parseFlagsAndPositionals(argv, OPTIONS);
  if (f.help) {
    process.stdout.write(EXPORT_HELP);
    return 0;
  }
  if (positional.length !== 1) throw new UsageError(`export needs exactly one vector file (got ${positional.length}): jacsteer export FILE[:ROW] --format gguf --out X.gguf`);
  const format = (f.format as string | undefined) ?? "gguf";
  if (format !== "gguf") throw new UsageError(`--format ${format}: the only export format is gguf (llama.cpp control vectors)`);
  if (typeof f.out !== "string") throw new UsageError("--out X.gguf is required");
  checkOutPath(f.out, ".gguf");

  const { file, row } = parseVectorRef(positional[0]);
  if (row !== null && f.rows !== undefined) throw new UsageError(`give the rows either as ${positional[0]} or as --rows, not both`);
  if (!existsSync(file)) throw new VectorFileError(`${file}: file does not exist`);
  const bytes = readFileSync(file);
  const set = decodeVectorFile(SafetensorsReader.open(bytesSource(bytes), file), file);
  const rows = f.rows !== undefined ? parseRows(String(f.rows)) : [row ?? 0];
  const outOfRange = rows.find((r) => r >= set.vectors.length);
  if (outOfRange !== undefined) throw new VectorFileError(`${file}: row ${outOfRange} out of range (the file has ${set.vectors.length} vectors)`);
  const scale = numberFlag(f, "scale", 1)!;

  const meta = set.metadata.source_layer;
  const fileLayer = meta !== undefined && /^\d+$/.test(meta) ? Number(meta) : undefined;
  const S = intFlag(f, "layer", fileLayer, 0);
  if (S === undefined) throw new UsageError(`${file} has no source_layer metadata: give the steered layer with --layer S`);
  const problem = controlVectorLayerProblem(S);
  if (problem) throw new UsageError(`${file}: source layer ${S}: ${problem}`);
  const numLayers = modelLayers(set.metadata.model_config);
  if (numLayers !== undefined && S >= numLayers) throw new UsageError(`--layer ${S} is out of range: ${file}'s model has layers 0..${numLayers - 1}`);
  if (fileLayer !== undefined && S !== fileLayer) log(`jacsteer: note: --layer ${S}, but ${file} was computed at source layer ${fileLayer}`);

  const { kv, tensors } = controlVectorFromSet(set, {
    rows,
    scale,
    sourceLayer: S,
    sourceFile: basename(file),
    sourceSha256: createHash("sha256").update(bytes).digest("hex"),
  });
  writeFileAtomic(f.out, encodeGguf(kv, tensors));
  const what = rows.length > 1 ? `the sum of rows ${rows.join(", ")}` : `row ${rows[0]}`;
  log(`jacsteer: wrote ${f.out}: direction.${controlVectorLayer(S)} = ${scale} x ${what} of ${file} (steers the output of layer ${S})`);
  return 0;
}

/** The layer count from a model_config key (see src/io/run-identity.ts), if it parses. */
function modelLayers(config: string | undefined): number | undefined {
  if (!config) return undefined;
  try {
    const c = JSON.parse(config);
    return Array.isArray(c) && Number.isInteger(c[2]) ? c[2] : undefined;
  } catch {
    return undefined;
  }
}
