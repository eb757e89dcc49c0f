// The state file of `power-iter` and `melbo` `--state/--resume`: which run it is, and the replay log of every block
// product so far (src/solvers/replay.ts explains why a log is the state). For melbo a "block" is one
// evaluation of the objective and its product is [loss, gradient] (dim = hidden size + 1).
//
// Layout (little-endian), chosen so a reader needs nothing but this comment:
//   bytes 0..7    ASCII "JSSTATE1"
//   bytes 8..15   u64 H: length of the JSON header
//   next H bytes  UTF-8 JSON header, padded with spaces so the data starts at a multiple of 8:
//                   { "format": "jacsteer.power-iter-state.v1", "dim": d,
//                     "identity": { field: string, ... },           (the run's flags, model, prompt)
//                     "blocks": [ { "vectors": m, "fingerprint": "<V>", "products_fingerprint": "<A V>" }, ... ] }
//   then          float64 A V of each block in order, m * d values per block, vector after vector.
// The products are exact (float64): a resumed run must see bit for bit what the uninterrupted one saw.
// safetensors would do for the data, but this package's writer converts from f32 only.
// The file length is implied by the header, so a truncated file is detected, and each block's products
// carry a fingerprint, so a damaged one is too.
import { fingerprintVectors, type ReplayBlock } from "../solvers/replay.js";

export const STATE_FORMAT = "jacsteer.power-iter-state.v1";
const MAGIC = "JSSTATE1";

export interface SolverState {
  /** The vector length d. */
  dim: number;
  /** What makes a run this run: compared field by field on resume. */
  identity: Record<string, string>;
  blocks: readonly ReplayBlock[];
}

export class StateFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "StateFileError";
  }
}

const LITTLE_ENDIAN = new Uint8Array(new Float64Array([1]).buffer)[7] === 0x3f;

/**
 * The file as a list of byte arrays to write one after the other. The products are views of the
 * log's own arrays where the platform is little-endian, so saving a large log copies nothing.
 */
export function encodeStateFile(s: SolverState): Uint8Array[] {
  const header = {
    format: STATE_FORMAT,
    dim: s.dim,
    identity: s.identity,
    blocks: s.blocks.map((b) => ({ vectors: b.products.length, fingerprint: b.fingerprint, products_fingerprint: b.productsFingerprint ?? fingerprintVectors(b.products) })),
  };
  let json = JSON.stringify(header);
  const bytes = () => new TextEncoder().encode(json);
  let text = bytes();
  json += " ".repeat((8 - ((16 + text.length) % 8)) % 8);
  text = bytes();
  const prefix = new Uint8Array(16);
  prefix.set(new TextEncoder().encode(MAGIC));
  new DataView(prefix.buffer).setBigUint64(8, BigInt(text.length), true);
  const parts: Uint8Array[] = [prefix, text];
  for (const b of s.blocks) {
    for (const w of b.products) {
      if (w.length !== s.dim) throw new Error(`encodeStateFile: a product of length ${w.length}, expected ${s.dim}`);
      if (LITTLE_ENDIAN) parts.push(new Uint8Array(w.buffer, w.byteOffset, w.byteLength));
      else {
        const out = new Uint8Array(w.length * 8);
        const view = new DataView(out.buffer);
        w.forEach((x, i) => view.setFloat64(i * 8, x, true));
        parts.push(out);
      }
    }
  }
  return parts;
}

/** Read a state file; `name` (the path) starts every error message. */
export function decodeStateFile(bytes: Uint8Array, name: string): SolverState {
  const fail = (why: string): never => {
    throw new StateFileError(`${name}: not a usable jacsteer state file (${why})`);
  };
  if (bytes.length < 16) fail(`${bytes.length} bytes, too short`);
  if (new TextDecoder().decode(bytes.subarray(0, 8)) !== MAGIC) fail("wrong magic bytes");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = Number(view.getBigUint64(8, true));
  if (16 + headerLength > bytes.length) fail(`the header claims ${headerLength} bytes, the file has ${bytes.length - 16} after the prefix: truncated`);
  let header: { format?: unknown; dim?: unknown; identity?: unknown; blocks?: unknown };
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(16, 16 + headerLength)));
  } catch (e) {
    return fail(`header is not valid JSON: ${(e as Error).message}`);
  }
  if (header.format !== STATE_FORMAT) fail(`format ${JSON.stringify(header.format)}, expected ${STATE_FORMAT}`);
  const dim = header.dim;
  if (typeof dim !== "number" || !Number.isInteger(dim) || dim < 1) return fail(`bad dim ${JSON.stringify(dim)}`);
  const identity = header.identity;
  if (typeof identity !== "object" || identity === null || Object.values(identity).some((v) => typeof v !== "string")) return fail("bad identity");
  if (!Array.isArray(header.blocks)) return fail("no block list");
  const list = header.blocks as { vectors?: unknown; fingerprint?: unknown; products_fingerprint?: unknown }[];
  let offset = 16 + headerLength;
  const expected = offset + list.reduce((s, b) => s + (typeof b?.vectors === "number" ? b.vectors : 0) * dim * 8, 0);
  if (expected !== bytes.length) fail(`${bytes.length} bytes where the header implies ${expected}: ${bytes.length < expected ? "truncated" : "trailing bytes"}`);
  const blocks: ReplayBlock[] = list.map((b, k) => {
    const m = b?.vectors;
    if (typeof m !== "number" || !Number.isInteger(m) || m < 1 || typeof b.fingerprint !== "string" || typeof b.products_fingerprint !== "string") return fail(`block ${k + 1}: bad entry`);
    const products: Float64Array[] = [];
    for (let i = 0; i < m; i++) {
      const w = new Float64Array(dim);
      for (let j = 0; j < dim; j++) w[j] = view.getFloat64(offset + 8 * j, true);
      offset += 8 * dim;
      products.push(w);
    }
    if (fingerprintVectors(products) !== b.products_fingerprint) fail(`block ${k + 1}: the data does not match its fingerprint: damaged`);
    return { fingerprint: b.fingerprint, products, productsFingerprint: b.products_fingerprint };
  });
  return { dim, identity: identity as Record<string, string>, blocks };
}
