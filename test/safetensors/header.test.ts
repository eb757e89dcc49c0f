// Every validation rule, each on a small file whose bytes are built by hand here (never by the writer).
import { describe, expect, it } from "vitest";
import { SafetensorsError } from "../../src/safetensors/errors.js";
import { parseSafetensorsHeader } from "../../src/safetensors/header.js";
import { SafetensorsReader, bytesSource } from "../../src/safetensors/reader.js";

const FILE = "hand/made.safetensors";

/** 8-byte little-endian length, the header bytes, then `data` (or that many zero bytes). */
function file(header: string | Uint8Array, data: number | Uint8Array = 0, lengthOverride?: bigint): Uint8Array {
  const h = typeof header === "string" ? new TextEncoder().encode(header) : header;
  const d = typeof data === "number" ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + h.length + d.length);
  const n = lengthOverride ?? BigInt(h.length);
  for (let i = 0; i < 8; i++) out[i] = Number((n >> BigInt(8 * i)) & 0xffn);
  out.set(h, 8);
  out.set(d, 8 + h.length);
  return out;
}

function parse(bytes: Uint8Array) {
  return parseSafetensorsHeader(bytes, bytes.length, FILE);
}

/** Expect a SafetensorsError naming the file (and `tensor`, if given) whose message matches `re`. */
function expectError(bytes: Uint8Array, re: RegExp, tensor?: string): SafetensorsError {
  let err: unknown;
  try {
    SafetensorsReader.open(bytesSource(bytes), FILE);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(SafetensorsError);
  const e = err as SafetensorsError;
  expect(e.message).toMatch(re);
  expect(e.message.startsWith(`${FILE}: `)).toBe(true);
  expect(e.file).toBe(FILE);
  if (tensor !== undefined) {
    expect(e.tensor).toBe(tensor);
    expect(e.message).toContain(`"${tensor}"`);
  }
  return e;
}

const f32 = (name: string, shape: number[], s: number, e: number) =>
  `"${name}":{"dtype":"F32","shape":[${shape.join(",")}],"data_offsets":[${s},${e}]}`;

describe("valid headers", () => {
  it("parses tensors with absolute offsets, metadata, and data order", () => {
    const h = `{"__metadata__":{"format":"pt","x":"y"},${f32("b", [2], 8, 16)},${f32("a", [1, 2], 0, 8)}}`;
    const bytes = file(h, 16);
    const hdr = parse(bytes);
    expect(hdr.dataStart).toBe(8 + h.length);
    expect([...hdr.tensors.keys()]).toEqual(["a", "b"]); // sorted by offset, not by JSON order
    const a = hdr.tensors.get("a")!;
    expect(a).toMatchObject({ dtype: "F32", shape: [1, 2], numel: 2, begin: 8 + h.length, end: 16 + h.length });
    expect(hdr.metadata).toEqual({ format: "pt", x: "y" });
  });

  it("allows space padding after the JSON and whitespace before it", () => {
    expect(parse(file(`{${f32("a", [1], 0, 4)}}      `, 4)).tensors.size).toBe(1);
    expect(parse(file(` \n\t{${f32("a", [1], 0, 4)}}\r\n`, 4)).tensors.size).toBe(1);
  });

  it("allows an empty header, scalars, zero-size tensors, null metadata and unknown entry fields", () => {
    expect(parse(file("{}")).tensors.size).toBe(0);
    const h =
      `{"__metadata__":null,"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]},` +
      `"z":{"dtype":"BF16","shape":[3,0],"data_offsets":[4,4]},` +
      `"u":{"dtype":"U8","shape":[3],"data_offsets":[4,7],"extra":{"ignored":[1,2]}}}`;
    const hdr = parse(file(h, 7));
    expect(hdr.tensors.get("s")!.numel).toBe(1);
    expect(hdr.tensors.get("z")!.numel).toBe(0);
    expect(hdr.metadata).toEqual({});
  });

  it("knows every reference dtype, including sub-byte ones when they fill whole bytes", () => {
    const dts: [string, number][] = [
      ["BOOL", 1], ["F4", 0.5], ["F6_E2M3", 0.75], ["F6_E3M2", 0.75], ["U8", 1], ["I8", 1], ["F8_E5M2", 1],
      ["F8_E4M3", 1], ["F8_E8M0", 1], ["I16", 2], ["U16", 2], ["F16", 2], ["BF16", 2], ["I32", 4], ["U32", 4],
      ["F32", 4], ["C64", 8], ["F64", 8], ["I64", 8], ["U64", 8],
    ];
    for (const [dt, size] of dts) {
      const bytes = 4 * 8 * size;
      const hdr = parse(file(`{"t":{"dtype":"${dt}","shape":[4,8],"data_offsets":[0,${bytes}]}}`, bytes));
      expect(hdr.tensors.get("t")!.dtype).toBe(dt);
    }
  });

  it("decodes escapes in names", () => {
    const hdr = parse(file(`{"a\\u00e9\\"\\ud83d\\ude00":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, 1));
    expect([...hdr.tensors.keys()]).toEqual(['aé"😀']);
  });
});

describe("header length and encoding", () => {
  it("rejects files shorter than 8 bytes", () => {
    expectError(new Uint8Array(5), /too small/);
    expectError(new Uint8Array(0), /too small/);
  });

  it("rejects a header length over 100,000,000 bytes", () => {
    expectError(file("{}", 0, 100_000_001n), /exceeds the limit of 100000000/);
    expectError(file("{}", 0, 0xffffffffffffffffn), /18446744073709551615 exceeds the limit/);
  });

  it("rejects a header length past the end of the file", () => {
    expectError(file("{}", 0, 3n), /runs past the end of the file/);
  });

  it("rejects invalid UTF-8", () => {
    const h = new TextEncoder().encode(`{"a\u00e9":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`);
    const bad = h.slice();
    bad[bad.indexOf(0xc3)] = 0xff;
    expectError(file(bad, 1), /not valid UTF-8/);
    expectError(file(new Uint8Array([0x7b, 0x22, 0xed, 0xa0, 0x80, 0x22, 0x3a, 0x31, 0x7d])), /UTF-8/); // encoded surrogate
  });

  it("rejects invalid JSON", () => {
    expectError(file(`{${f32("a", [1], 0, 4)},}`, 4), /not valid JSON/);
    expectError(file(`{${f32("a", [1], 0, 4)}`, 4), /not valid JSON/);
    expectError(file(`{${f32("a", [1], 0, 4)}} x`, 4), /not valid JSON: unexpected/);
    expectError(file(`{'a':1}`), /not valid JSON/);
    expectError(file(`{${f32("a", [1], 0, 4)}}\u0000\u0000`, 4), /not valid JSON/); // NUL padding is not whitespace
    expectError(file(`{"a\\ud800":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, 1), /surrogate/);
    expectError(file(`{"a":{"dtype":"U8","shape":[01],"data_offsets":[0,1]}}`, 1), /not valid JSON/, "a");
  });

  it("rejects a header that is not an object", () => {
    expectError(file(`[]`), /not a JSON object/);
    expectError(file(`"x"`), /not a JSON object/);
  });
});

describe("tensor entries", () => {
  it("rejects entries that are not objects or lack a field", () => {
    expectError(file(`{"a":5}`), /not an object/, "a");
    expectError(file(`{"a":{"shape":[1],"data_offsets":[0,4]}}`, 4), /missing field "dtype"/, "a");
    expectError(file(`{"a":{"dtype":"F32","data_offsets":[0,4]}}`, 4), /missing field "shape"/, "a");
    expectError(file(`{"a":{"dtype":"F32","shape":[1]}}`, 4), /missing field "data_offsets"/, "a");
  });

  it("rejects unknown dtypes (a parse error, not a read error)", () => {
    expectError(file(`{"w":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}}`, 4), /unknown dtype "F33"/, "w");
    expectError(file(`{"w":{"dtype":"f32","shape":[1],"data_offsets":[0,4]}}`, 4), /unknown dtype "f32"/, "w");
    expectError(file(`{"w":{"dtype":32,"shape":[1],"data_offsets":[0,4]}}`, 4), /"dtype" is not a string/, "w");
  });

  it("rejects shapes and offsets that are not non-negative integers", () => {
    expectError(file(`{"w":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}}`, 1), /not a non-negative integer/, "w");
    expectError(file(`{"w":{"dtype":"U8","shape":[1.0],"data_offsets":[0,1]}}`, 1), /1\.0, not a non-negative/, "w");
    expectError(file(`{"w":{"dtype":"U8","shape":["1"],"data_offsets":[0,1]}}`, 1), /not a non-negative/, "w");
    expectError(file(`{"w":{"dtype":"U8","shape":1,"data_offsets":[0,1]}}`, 1), /"shape" is not an array/, "w");
    expectError(file(`{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1e0]}}`, 1), /not a non-negative/, "w");
    expectError(file(`{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1,2]}}`, 1), /not an array \[begin, end\]/, "w");
    expectError(file(`{"w":{"dtype":"U8","shape":[1],"data_offsets":[0]}}`, 1), /not an array \[begin, end\]/, "w");
    expectError(
      file(`{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,18446744073709551616]}}`, 1),
      /too large/,
      "w",
    );
  });

  it("rejects shapes whose element count overflows", () => {
    expectError(file(`{"w":{"dtype":"U8","shape":[1099511627776,1099511627776,0],"data_offsets":[0,0]}}`), /overflow/, "w");
  });
});

describe("offsets", () => {
  it("rejects overlapping tensors, naming both", () => {
    const e = expectError(file(`{${f32("a", [2], 0, 8)},${f32("b", [2], 4, 12)}}`, 12), /overlapping/, "b");
    expect(e.message).toContain(`"a"`);
  });

  it("rejects a hole between tensors and before the first one", () => {
    expectError(file(`{${f32("a", [1], 0, 4)},${f32("b", [1], 8, 12)}}`, 12), /hole/, "b");
    expectError(file(`{${f32("a", [1], 4, 8)}}`, 8), /hole/, "a");
  });

  it("rejects end before begin", () => {
    expectError(file(`{${f32("a", [1], 0, 4)},${f32("b", [0], 4, 0)}}`, 4), /end is before begin/, "b");
  });

  it("rejects a byte count that does not match dtype and shape", () => {
    expectError(file(`{${f32("a", [2], 0, 12)}}`, 12), /span 12 bytes .* needs 8/, "a");
    expectError(file(`{"a":{"dtype":"BF16","shape":[3],"data_offsets":[0,4]}}`, 4), /needs 6/, "a");
  });

  it("rejects sub-byte tensors that do not fill whole bytes", () => {
    expectError(file(`{"a":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}`, 2), /whole number of bytes/, "a");
  });

  it("requires the data to end exactly at the end of the file", () => {
    expectError(file(`{${f32("a", [1], 0, 4)}}`, 6), /covers? 4 bytes .* file has 6 .*trailing/);
    expectError(file(`{${f32("a", [2], 0, 8)}}`, 6), /file has only 6 bytes .*truncated/);
    expectError(file(`{}`, 1), /trailing/);
  });
});

describe("duplicates and metadata", () => {
  it("rejects a tensor name given twice", () => {
    expectError(file(`{${f32("a", [1], 0, 4)},${f32("a", [1], 4, 8)}}`, 8), /duplicate tensor name/, "a");
  });

  it("rejects a field given twice inside an entry", () => {
    expectError(file(`{"w":{"dtype":"U8","dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, 1), /duplicate key "dtype"/, "w");
  });

  it("rejects __metadata__ given twice, or with a duplicate key", () => {
    expectError(file(`{"__metadata__":{},"__metadata__":{}}`), /duplicate "__metadata__"/);
    expectError(file(`{"__metadata__":{"k":"a","k":"b"}}`), /duplicate key "k"/);
  });

  it("requires __metadata__ to map strings to strings", () => {
    expectError(file(`{"__metadata__":{"n":1}}`), /value for key "n" is not a string/);
    expectError(file(`{"__metadata__":["a"]}`), /must be an object of strings/);
    expectError(file(`{"__metadata__":"pt"}`), /must be an object of strings/);
    expectError(file(`{"__metadata__":{"n":{"a":"b"}}}`), /not a string/);
  });
});

describe("reading", () => {
  it("reads F32, F16 and BF16 bytes written by hand", () => {
    // a: F32 [1.5, -2]; b: F16 [1, -0.5, 65504]; c: BF16 [3, 2^-10]
    const data = new Uint8Array([
      0x00, 0x00, 0xc0, 0x3f, 0x00, 0x00, 0x00, 0xc0, // F32 1.5, -2
      0x00, 0x3c, 0x00, 0xb8, 0xff, 0x7b, // F16 1, -0.5, 65504
      0x40, 0x40, 0x80, 0x3a, // BF16 3, 2^-10
    ]);
    const h =
      `{${f32("a", [2], 0, 8)},"b":{"dtype":"F16","shape":[3],"data_offsets":[8,14]},` +
      `"c":{"dtype":"BF16","shape":[1,2],"data_offsets":[14,18]}}`;
    const r = SafetensorsReader.open(bytesSource(file(h, data)), FILE);
    expect([...r.readF32("a")]).toEqual([1.5, -2]);
    expect([...r.readF32("b")]).toEqual([1, -0.5, 65504]);
    expect([...r.readF32("c")]).toEqual([3, 2 ** -10]);
    expect([...r.readBytes("c")]).toEqual([0x40, 0x40, 0x80, 0x3a]);
  });

  it("parses other dtypes but refuses to read them as f32, naming dtype, tensor and file", () => {
    const r = SafetensorsReader.open(bytesSource(file(`{"ids":{"dtype":"I64","shape":[2],"data_offsets":[0,16]}}`, 16)), FILE);
    expect(r.info("ids").dtype).toBe("I64");
    expect(() => r.readF32("ids")).toThrow(`${FILE}: tensor "ids": unsupported dtype I64`);
    expect(() => r.readF32("ids")).toThrow(SafetensorsError);
  });

  it("names file and tensor for a missing tensor or a destination of the wrong size", () => {
    const r = SafetensorsReader.open(bytesSource(file(`{${f32("a", [2], 0, 8)}}`, 8)), FILE);
    expect(r.has("zz")).toBe(false);
    expect(() => r.readF32("zz")).toThrow(`${FILE}: tensor "zz": no such tensor`);
    expect(() => r.readF32("a", new Float32Array(3))).toThrow(/tensor "a": destination holds 3 floats .* has 2/);
  });
});
