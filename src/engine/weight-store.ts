// Where the steering engine's decoder-layer weights live between products, and how a layer's seven
// projections reach the matrix products. A layer's projections are held in their stored dtype (BF16
// stays 2 bytes per weight) in a staging slot, and every matrix product packs the panels it
// multiplies right before multiplying them, on the thread that multiplies them
// (parallel-gemm.ts PackSource; assembly/matmul.ts gemmSlice: f32 panels, or BF16 panels for a BF16
// weight's forward products): a thread's panels are still in its cache when the product reads
// them, which made this as fast as keeping f32 panels packed once (measured on the 0.6B shape:
// 13.4 s vs 13.0-13.9 s for 16 products) at a quarter of the memory and without the packing at load.
// The experiments' forward (forward.ts), whose products have few rows (decoding: one per sequence),
// keeps resident BF16 layers packed in BF16 panels instead (`prepack`): the same bytes, packed once.
//
// Two modes (chosen by the engine, printed; --weights overrides):
//  - resident: one slot per layer S+1..T, each read once: the 0.6B shape keeps 0.42 GB.
//  - stream: two slots; every pass reads the layers it needs from the checkpoint. Memory: two
//    layers of stored bytes plus one dispatch's packed panels, whatever the model's size (the 14B
//    shape: 2 x 660 MB + 713 MB).
// Layers 0..S (run once) always go through two slots.
//
// Reads overlap computation: while layer i computes from one slot, the next layer the pass needs is
// read into another. A pass that turns around (the JVP ends at layer T, the VJP starts there; the
// next JVP starts where the VJP ended) finds its first two layers still in the slots, so a streamed
// product J^T J V reads 2 (T - S) - 4 layers, not 2 (T - S).
import type { Runtime } from "../runtime/runtime.js";
import type { Qwen3Config } from "../model/config.js";
import { WeightError, type TensorSource } from "../model/weights.js";
import { packedFloats } from "../kernels/matmul.js";
import type { PackSource } from "./parallel-gemm.js";
import { PROJECTIONS, projectionShape, tensorName, type LayerMatrices, type PackedWeight, type Projection } from "./layer-weights.js";
import { decodeBf16, decodeF16 } from "../safetensors/float16.js";

/** A TensorSource that can hand over a tensor's stored bytes without converting them, asynchronously. */
export interface StreamableTensorSource extends TensorSource {
  /** Stored dtype of `name` (safetensors spelling: "F32", "BF16", "F16", ...). */
  dtype(name: string): string;
  /**
   * The stored little-endian bytes of `name` into dst (dst.length = its byte size). dst may be a view
   * of the shared wasm memory; the read may run while other threads compute on other addresses.
   */
  readRaw(name: string, dst: Uint8Array): Promise<void>;
}

export function canStream(src: TensorSource): src is StreamableTensorSource {
  const s = src as Partial<StreamableTensorSource>;
  return typeof s.readRaw === "function" && typeof s.dtype === "function";
}

/** assembly/matmul.ts packPanels codes; DT_BF16_PANELS: a BF16 weight already in packPanelsBf16's panels. */
export const PACK_BT = 0, PACK_B = 1;
export const DT_BF16 = 1, DT_BF16_PANELS = 3;
const DTYPE_CODE: Record<string, number> = { F32: 0, BF16: 1, F16: 2 };
const DTYPE_BYTES = [4, 2, 2];

/** The assembly/matmul.ts dtype code of tensor `name` as it will be read (f32 where the source cannot hand over stored bytes). */
function dtypeCode(src: TensorSource, name: string): number {
  if (!canStream(src)) return 0;
  const dt = src.dtype(name);
  const code = DTYPE_CODE[dt];
  if (code === undefined) throw new WeightError(`tensor "${name}" in ${src.describe(name)} has dtype ${dt}; jacsteer reads F32, BF16 and F16`);
  return code;
}

/**
 * A whole tensor in its stored dtype (f32 where the source cannot hand over stored bytes): its
 * assembly/matmul.ts dtype code and byte size, for readStored.
 */
export function storedLayout(src: TensorSource, name: string): { dtype: number; bytes: number; elements: number } {
  const elements = src.shape(name).reduce((a, b) => a * b, 1);
  const dtype = dtypeCode(src, name);
  return { dtype, bytes: elements * DTYPE_BYTES[dtype]!, elements };
}

/**
 * Read tensor `name` as stored into wasm memory at ptr (storedLayout(src, name).bytes); with `check`,
 * refuse a non-finite weight (a broken checkpoint), naming the tensor, file, value and index.
 */
export async function readStored(rt: Runtime, src: TensorSource, name: string, ptr: number, check = true): Promise<void> {
  const { dtype, bytes, elements } = storedLayout(src, name);
  if (canStream(src)) await src.readRaw(name, new Uint8Array(rt.memory.buffer, ptr, bytes));
  else src.readF32(name, rt.heap.f32(ptr, elements));
  if (!check) return;
  const bad = rt.k.firstNonFinite(ptr, dtype, elements) as number;
  if (bad >= 0) throw new WeightError(`tensor "${name}" in ${src.describe(name)} has a non-finite value (${valueAt(rt, ptr, dtype, bad)}) at flat index ${bad}`);
}

/** Element i of a stored tensor at ptr, as a number (for messages). */
function valueAt(rt: Runtime, ptr: number, dtype: number, i: number): number {
  if (dtype === 0) return rt.heap.f32(ptr + 4 * i, 1)[0]!;
  const out = new Float32Array(1);
  (dtype === 1 ? decodeBf16 : decodeF16)(new Uint16Array(rt.memory.buffer, ptr + 2 * i, 1), out);
  return out[0]!;
}

/** Where each projection of a staged layer sits in its slot, and its dtype code. */
interface SlotEntry {
  offset: number;
  dtype: number;
  out: number;
  inp: number;
}

/** The floats the packed panels of one dispatch need, per projection offset (fwd and bwd layouts). */
function scratchLayout(cfg: Qwen3Config): { fwd: Record<Projection, number>; bwd: Record<Projection, number>; floats: number } {
  // Projections multiplied in one dispatch (decoder-layer.ts) need panels at the same time; the
  // others reuse the space. Forward and JVP: [q k v] [o] [gate up] [down]; VJP: [down] [gate up] [o] [q k v].
  const groups: Projection[][] = [["q", "k", "v"], ["o"], ["gate", "up"], ["down"]];
  let floats = 0;
  const layout = (bwd: boolean) => {
    const off = {} as Record<Projection, number>;
    for (const g of groups) {
      let at = 0;
      for (const p of g) {
        const [out, inp] = projectionShape(cfg, p);
        off[p] = at;
        at += bwd ? packedFloats(inp, out) : packedFloats(out, inp);
      }
      floats = Math.max(floats, at);
    }
    return off;
  };
  return { fwd: layout(false), bwd: layout(true), floats };
}

/**
 * Bytes of layer i's projections as stored (as f32 where the source cannot hand over stored bytes).
 * `check` verifies presence and shapes (when reading); planning needs only the config and dtypes.
 * With `prepack`, BF16 projections are held as BF16 panels (DT_BF16_PANELS, the same bytes up to the
 * last panel's zero padding).
 */
function slotLayout(cfg: Qwen3Config, src: TensorSource, i: number, check = true, prepack = false): { entries: Record<Projection, SlotEntry>; bytes: number } {
  const entries = {} as Record<Projection, SlotEntry>;
  let bytes = 0;
  for (const p of PROJECTIONS) {
    const name = tensorName(i, p);
    const [out, inp] = projectionShape(cfg, p);
    if (check) checkProjection(src, name, out, inp);
    // Planning may run before the tensors are checked: a missing one is reported when it is read.
    const stored = check || src.has(name) ? dtypeCode(src, name) : 0;
    const panels = prepack && stored === DT_BF16;
    entries[p] = { offset: bytes, dtype: panels ? DT_BF16_PANELS : stored, out, inp };
    const size = panels ? Math.ceil(out / 8) * 8 * inp * 2 : out * inp * DTYPE_BYTES[stored]!;
    bytes += Math.ceil(size / 64) * 64;
  }
  return { entries, bytes };
}

function checkProjection(src: TensorSource, name: string, out: number, inp: number): void {
  if (!src.has(name)) throw new WeightError(`missing tensor "${name}" in ${src.describe(name)}`);
  const got = src.shape(name);
  if (got.length !== 2 || got[0] !== out || got[1] !== inp) {
    throw new WeightError(`tensor "${name}" in ${src.describe(name)} has shape [${got.join(", ")}], expected [${out}, ${inp}]`);
  }
}

interface Slot {
  ptr: number;
  /** Layer held (or being read), -1 when empty. */
  layer: number;
  /** Settles when the read of `layer` has finished (rejects if it failed). */
  ready: Promise<void>;
  entries: Record<Projection, SlotEntry> | null;
}

/** Matrices of one staged layer: pack sources in a slot, panels in the shared scratch. */
export interface StagedLayer {
  fwd: LayerMatrices;
  /** null for a prepacking (forward-only) LayerStream. */
  bwd: LayerMatrices | null;
}

/** Bytes a LayerStream over layers [first, last] with `slots` slots allocates (with `prepack`, its staging too). */
export function layerStreamBytes(cfg: Qwen3Config, src: TensorSource, first: number, last: number, slots = 2, prepack = false): number {
  let slot = 0;
  for (let i = first; i <= last; i++) slot = Math.max(slot, slotLayout(cfg, src, i, false, prepack).bytes);
  return slots * slot + 4 * scratchLayout(cfg).floats + (prepack ? prepackStagingBytes(cfg) : 0);
}

/** The largest projection's BF16 bytes: where a prepacking LayerStream reads a weight before packing it. */
function prepackStagingBytes(cfg: Qwen3Config): number {
  return Math.max(...PROJECTIONS.map((p) => projectionShape(cfg, p)).map(([out, inp]) => out * inp * 2));
}

/**
 * Yield to the event loop (not just the microtask queue): lets signals, I/O callbacks and timers run
 * between layers (and between the library calls' steps, src/api/). Not setTimeout(0) where there is a
 * choice: it waits at least 1 ms (4 ms once nested, in browsers), seconds over a MELBO run of thousands
 * of sub-millisecond steps. setImmediate (Node) and a MessageChannel message (browsers) are tasks
 * without that clamp; timers still get their turn.
 */
export function yieldToEventLoop(): Promise<void> {
  const g = globalThis as { setImmediate?: (f: () => void) => unknown; MessageChannel?: typeof MessageChannel };
  if (typeof g.setImmediate === "function") return new Promise<void>((resolve) => g.setImmediate!(resolve));
  if (typeof g.MessageChannel === "function") {
    return new Promise<void>((resolve) => {
      const ch = new g.MessageChannel!();
      ch.port1.onmessage = () => {
        ch.port1.close();
        resolve();
      };
      ch.port2.postMessage(null);
    });
  }
  return new Promise<void>((resolve) => setTimeout(resolve, 0));
}

/**
 * Staging slots of stored layer bytes over layers [first, last] (two: streamed; one per layer:
 * resident, each layer read once) and the packed-panel scratch. Allocated on rt.heap by the
 * constructor (the caller owns the heap region).
 */
export class LayerStream {
  private readonly slots: Slot[];
  private readonly scratch: number;
  private readonly scratchOffsets: ReturnType<typeof scratchLayout>;
  private readonly checked = new Set<number>();
  /** Layer reads done (a layer's seven projections count one) and their bytes. */
  reads = 0;
  bytesRead = 0;
  /** Seconds the computation waited for a read to finish. */
  waitSeconds = 0;

  /** Where a BF16 projection is read before it is packed into its slot (prepack), else 0. */
  private readonly staging: number;
  /** Settles when the staging buffer is free: reads of two slots may overlap, their use of it may not. */
  private stagingFree: Promise<void> = Promise.resolve();

  /**
   * `prepack` (forward-only use with every layer resident, forward.ts): BF16 projections are packed
   * once, as they are read, into BF16 panels (assembly/matmul.ts packPanelsBf16), so no product packs
   * them again (measured on the 0.6B shape: 24 rows 15% faster, one row twice as fast as reading the
   * stored rows). Its layers have no VJP layout (StagedLayer.bwd is null).
   */
  constructor(
    private readonly rt: Runtime,
    private readonly cfg: Qwen3Config,
    private readonly src: TensorSource,
    readonly first: number,
    readonly last: number,
    slots = 2,
    private readonly prepack = false,
  ) {
    if (!Number.isInteger(slots) || slots < 2) throw new Error(`a LayerStream needs at least 2 slots, got ${slots}`);
    let slotBytes = 0;
    for (let i = first; i <= last; i++) slotBytes = Math.max(slotBytes, slotLayout(cfg, src, i, false, prepack).bytes);
    this.scratchOffsets = scratchLayout(cfg);
    this.slots = Array.from({ length: slots }, () => ({ ptr: rt.heap.alloc(slotBytes), layer: -1, ready: Promise.resolve(), entries: null }));
    this.scratch = rt.heap.allocF32(this.scratchOffsets.floats);
    this.staging = prepack ? rt.heap.alloc(prepackStagingBytes(cfg)) : 0;
  }

  /**
   * Layer i's weights, staged (waits for its read); then starts reading `next` (when given and not
   * already held) into the other slot. The matrices are valid until the next acquire.
   */
  async acquire(i: number, next: number | null): Promise<StagedLayer> {
    if (i < this.first || i > this.last) throw new Error(`layer ${i} outside the streamed range ${this.first}..${this.last}`);
    let slot = this.slots.find((s) => s.layer === i);
    if (!slot) {
      slot = this.slots.find((s) => s.layer === -1) ?? this.slots.find((s) => s.layer !== next) ?? this.slots[0]!;
      this.startRead(slot, i);
    }
    const t0 = performance.now();
    await slot.ready;
    this.waitSeconds += (performance.now() - t0) / 1000;
    if (next !== null && next !== i && next >= this.first && next <= this.last && !this.slots.some((s) => s.layer === next)) {
      // An empty slot if there is one (resident: every layer gets its own), else the one not in use.
      this.startRead(this.slots.find((s) => s.layer === -1) ?? this.slots.find((s) => s !== slot)!, next);
    }
    return this.matrices(slot);
  }

  private matrices(slot: Slot): StagedLayer {
    const fwd = {} as LayerMatrices, bwd = {} as LayerMatrices;
    let panels = false;
    for (const p of PROJECTIONS) {
      const e = slot.entries![p];
      const src = slot.ptr + e.offset;
      panels ||= e.dtype === DT_BF16_PANELS;
      const packF: PackSource = { src, kind: PACK_BT | (e.dtype << 1), ld: e.inp };
      const packB: PackSource = { src, kind: PACK_B | (e.dtype << 1), ld: e.inp };
      fwd[p] = { ptr: this.scratch + 4 * this.scratchOffsets.fwd[p], n: e.out, k: e.inp, pack: packF };
      bwd[p] = { ptr: this.scratch + 4 * this.scratchOffsets.bwd[p], n: e.inp, k: e.out, pack: packB };
    }
    return { fwd, bwd: panels ? null : bwd };
  }

  private startRead(slot: Slot, i: number): void {
    const previous = slot.ready.catch(() => undefined); // a failed read of another layer is that layer's problem
    slot.layer = i;
    slot.entries = null;
    slot.ready = previous.then(() => this.read(slot, i));
    slot.ready.catch(() => {
      if (slot.layer === i) slot.layer = -1; // not held: a later acquire reads it again (and fails again)
    });
  }

  private async read(slot: Slot, i: number): Promise<void> {
    const { entries, bytes } = slotLayout(this.cfg, this.src, i, true, this.prepack);
    // Checked once per layer: a NaN weight is a broken checkpoint, and the same bytes come back each pass.
    const check = !this.checked.has(i);
    for (const p of PROJECTIONS) {
      const e = entries[p];
      if (e.dtype !== DT_BF16_PANELS) {
        await readStored(this.rt, this.src, tensorName(i, p), slot.ptr + e.offset, check);
        continue;
      }
      const previous = this.stagingFree;
      let release!: () => void;
      this.stagingFree = new Promise<void>((resolve) => (release = resolve));
      try {
        await previous;
        await readStored(this.rt, this.src, tensorName(i, p), this.staging, check);
        this.rt.k.packPanelsBf16(this.staging, PACK_BT, e.inp, 0, e.out, e.inp, slot.ptr + e.offset);
      } finally {
        release();
      }
    }
    this.checked.add(i);
    slot.entries = entries;
    this.reads++;
    this.bytesRead += bytes;
  }
}
