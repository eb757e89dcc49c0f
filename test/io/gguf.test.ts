// src/io/gguf.ts on every GGUF value type: what encodeGguf writes is read by an independent parser
// (@huggingface/gguf) with the same types and values, and decodeGguf reads it back unchanged.
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gguf, GGUFValueType as T } from "@huggingface/gguf";
import { afterAll, describe, expect, it } from "vitest";
import { decodeGguf, encodeGguf, f32Bytes, ggufTensorToF32, type GgufValue } from "../../src/io/gguf.js";
import { makeTempDir } from "../helpers/checkpoints.js";

const dir = makeTempDir("jacsteer-gguf-codec-");
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const KV: [string, GgufValue, unknown, number, number?][] = [
  // key, value, what @huggingface/gguf should report, its type, its array item type
  ["t.u8", { type: "uint8", value: 250 }, 250, T.UINT8],
  ["t.i8", { type: "int8", value: -100 }, -100, T.INT8],
  ["t.u16", { type: "uint16", value: 65000 }, 65000, T.UINT16],
  ["t.i16", { type: "int16", value: -30000 }, -30000, T.INT16],
  ["t.u32", { type: "uint32", value: 4_000_000_000 }, 4_000_000_000, T.UINT32],
  ["t.i32", { type: "int32", value: -2_000_000_000 }, -2_000_000_000, T.INT32],
  ["t.f32", { type: "float32", value: 0.1 }, Math.fround(0.1), T.FLOAT32],
  ["t.f64", { type: "float64", value: 0.1 }, 0.1, T.FLOAT64],
  ["t.u64", { type: "uint64", value: 2n ** 63n + 5n }, 2n ** 63n + 5n, T.UINT64],
  ["t.i64", { type: "int64", value: -(2n ** 62n) }, -(2n ** 62n), T.INT64],
  ["t.bool", { type: "bool", value: true }, true, T.BOOL],
  ["t.str", { type: "string", value: "héllo ✓" }, "héllo ✓", T.STRING],
  ["t.arr", { type: "array", itemType: "string", value: [{ type: "string", value: "a" }, { type: "string", value: "" }] }, ["a", ""], T.ARRAY, T.STRING],
  ["t.arrf", { type: "array", itemType: "float32", value: [{ type: "float32", value: 1.5 }] }, [1.5], T.ARRAY, T.FLOAT32],
  ["general.alignment", { type: "uint32", value: 16 }, 16, T.UINT32],
];

describe("GGUF codec", () => {
  it("every value type and two tensors at alignment 16, as @huggingface/gguf reads them", async () => {
    const a = Float32Array.from([1, -2, 3.5]);
    const b = Float32Array.from([0.25, 7, 8, 9, 10]);
    const bytes = encodeGguf(KV.map(([k, v]) => [k, v]), [
      { name: "direction.2", dims: [3], type: "F32", data: f32Bytes(a) },
      { name: "direction.9", dims: [5], type: "F32", data: f32Bytes(b) },
    ]);
    const file = join(dir, "all.gguf");
    writeFileSync(file, bytes);
    const g = await gguf(file, { allowLocalFile: true, typedMetadata: true });
    for (const [k, , value, type, subType] of KV) {
      expect(g.typedMetadata[k], k).toEqual(subType === undefined ? { value, type } : { value, type, subType });
    }
    expect(g.tensorInfos.map((t) => [t.name, t.shape, t.dtype, t.offset])).toEqual([["direction.2", [3n], 0, 0n], ["direction.9", [5n], 0, 16n]]);
    const start = Number(g.tensorDataOffset);
    expect(start % 16).toBe(0);
    expect(Array.from(new Float32Array(bytes.slice(start, start + 12).buffer))).toEqual(Array.from(a));
    expect(Array.from(new Float32Array(bytes.slice(start + 16, start + 36).buffer))).toEqual(Array.from(b));

    const back = decodeGguf(bytes, "all.gguf");
    expect([...back.kv]).toEqual(KV.map(([k, v]) => [k, v.type === "float32" ? { ...v, value: Math.fround(v.value) } : v]));
    expect(back.alignment).toBe(16);
    expect(Array.from(ggufTensorToF32(back.tensors[1]))).toEqual(Array.from(b));
  });

  it("refuses values that do not fit their type", () => {
    expect(() => encodeGguf([["k", { type: "uint8", value: 256 }]], [])).toThrow(/k: 256 does not fit in uint8/);
    expect(() => encodeGguf([["k", { type: "int32", value: 1.5 }]], [])).toThrow(/1.5 does not fit in int32/);
  });
});
