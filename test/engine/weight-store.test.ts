// LayerStream's prepack (src/engine/weight-store.ts), what the experiments' forward keeps its resident
// BF16 layers in: every projection's slot must hold exactly packPanelsBf16 of its stored weight (so the
// products are those of the stored weight, which test/generation/batched.test.ts checks bitwise), also
// when the reads of two layers overlap (they share one staging buffer), and a prepacked layer offers no
// VJP layout. Without prepack the slot holds the stored bytes.
import { afterAll, describe, expect, it } from "vitest";
import { LayerStream, readStored, storedLayout } from "../../src/engine/weight-store.js";
import { PROJECTIONS, tensorName } from "../../src/engine/layer-weights.js";
import { SMALL_SHAPE, writeTempCheckpoint, type TempCheckpoint } from "../helpers/checkpoints.js";
import { loadTestModel } from "../helpers/model.js";

const cleanup: TempCheckpoint[] = [];
afterAll(() => cleanup.forEach((c) => c.remove()));

describe("LayerStream prepack", async () => {
  const ck = writeTempCheckpoint({ ...SMALL_SHAPE, num_hidden_layers: 4 }, { seed: 27, dtype: "BF16", shards: 2 });
  cleanup.push(ck);
  const { ckpt, rt } = await loadTestModel(ck.dir);
  const cfg = ckpt.config;

  /** packPanelsBf16 of layer i's projection p, made here from its stored bytes. */
  const expected = async (i: number, p: (typeof PROJECTIONS)[number]) => {
    const name = tensorName(i, p);
    const [out, inp] = ckpt.tensors.shape(name) as [number, number];
    const raw = rt.heap.alloc(storedLayout(ckpt.tensors, name).bytes);
    await readStored(rt, ckpt.tensors, name, raw);
    const bytes = Math.ceil(out / 8) * inp * 16;
    const dst = rt.heap.alloc(bytes);
    rt.k.packPanelsBf16(raw, /* PACK_BT */ 0, inp, 0, out, inp, dst);
    return { bytes: new Uint8Array(rt.memory.buffer, dst, bytes).slice(), n: out, k: inp };
  };

  it("every slot holds the panels of its own layer's weights, also when two layers are read at once", async () => {
    const mark = rt.heap.mark();
    try {
      const stream = new LayerStream(rt, cfg, ckpt.tensors, 0, 3, 4, true);
      // Layer 3's read starts while layer 0's is in flight (and layer 1's after it): three reads share the staging buffer.
      const [l0, l3] = await Promise.all([stream.acquire(0, 1), stream.acquire(3, null)]);
      const l1 = await stream.acquire(1, null);
      for (const [i, staged] of [[0, l0], [3, l3], [1, l1]] as const) {
        expect(staged.bwd, `layer ${i}`).toBeNull();
        for (const p of PROJECTIONS) {
          const want = await expected(i, p);
          const m = staged.fwd[p];
          expect([m.n, m.k, m.pack!.kind]).toEqual([want.n, want.k, /* PACK_BT | DT_BF16_PANELS << 1 */ 6]);
          const got = new Uint8Array(rt.memory.buffer, m.pack!.src, want.bytes.length);
          expect(Buffer.from(got).equals(Buffer.from(want.bytes)), `layer ${i} ${p}`).toBe(true);
        }
      }
    } finally {
      rt.heap.release(mark);
    }
  });

  it("without prepack a slot holds the stored bytes and both layouts", async () => {
    const mark = rt.heap.mark();
    try {
      const stream = new LayerStream(rt, cfg, ckpt.tensors, 0, 3, 2);
      const staged = await stream.acquire(2, null);
      expect(staged.bwd).not.toBeNull();
      const name = tensorName(2, "gate");
      const { bytes } = storedLayout(ckpt.tensors, name);
      const raw = rt.heap.alloc(bytes);
      await readStored(rt, ckpt.tensors, name, raw);
      expect(staged.fwd.gate.pack!.kind).toBe(/* PACK_BT | DT_BF16 << 1 */ 2);
      expect(Buffer.from(new Uint8Array(rt.memory.buffer, staged.fwd.gate.pack!.src, bytes)).equals(Buffer.from(new Uint8Array(rt.memory.buffer, raw, bytes)))).toBe(true);
    } finally {
      rt.heap.release(mark);
    }
  });
});
