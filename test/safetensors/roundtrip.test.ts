import { existsSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { SafetensorsError } from "../../src/safetensors/errors.js";
import { READ_CHUNK_BYTES, SafetensorsReader, bytesSource, type ByteSource } from "../../src/safetensors/reader.js";
import { serializeSafetensors } from "../../src/safetensors/serialize.js";
import { openSafetensorsFile, writeSafetensorsFile, writeSafetensorsFileStreaming } from "../../src/node/safetensors-file.js";
import { makeTempDir } from "../helpers/checkpoints.js";
import { randn, rng } from "../helpers/random.js";
import { roundBf16Ref, roundF16Ref } from "./float-reference.js";

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function tmp(): string {
  const d = makeTempDir();
  dirs.push(d);
  return d;
}

describe("byte-exact layout (the reference implementation's own test vectors)", () => {
  it("one F32 tensor", () => {
    const out = serializeSafetensors({ "attn.0": { dtype: "F32", shape: [1, 2, 3], data: new Float32Array([0, 1, 2, 3, 4, 5]) } });
    // safetensors/src/tensor.rs, test_serialization
    expect([...out]).toEqual([
      64, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 46, 48, 34, 58, 123, 34, 100, 116, 121, 112, 101, 34, 58, 34,
      70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34, 58, 91, 49, 44, 50, 44, 51, 93, 44, 34, 100, 97, 116, 97, 95,
      111, 102, 102, 115, 101, 116, 115, 34, 58, 91, 48, 44, 50, 52, 93, 125, 125, 0, 0, 0, 0, 0, 0, 128, 63, 0, 0, 0,
      64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64,
    ]);
  });

  it("header padded to 8 bytes with spaces", () => {
    const out = serializeSafetensors({ attn0: { dtype: "F32", shape: [1, 1, 2, 3], data: new Float32Array([0, 1, 2, 3, 4, 5]) } });
    // test_serialization_forced_alignement
    expect([...out.subarray(0, 80)]).toEqual([
      72, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 48, 34, 58, 123, 34, 100, 116, 121, 112, 101, 34, 58, 34, 70,
      51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34, 58, 91, 49, 44, 49, 44, 50, 44, 51, 93, 44, 34, 100, 97, 116, 97,
      95, 111, 102, 102, 115, 101, 116, 115, 34, 58, 91, 48, 44, 50, 52, 93, 125, 125, 32, 32, 32, 32, 32, 32, 32,
    ]);
  });

  it("empty file, with and without metadata", () => {
    // test_empty
    expect([...serializeSafetensors({})]).toEqual([8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32]);
    expect([...serializeSafetensors({}, { framework: "pt" })]).toEqual([
      40, 0, 0, 0, 0, 0, 0, 0, 123, 34, 95, 95, 109, 101, 116, 97, 100, 97, 116, 97, 95, 95, 34, 58, 123, 34, 102, 114,
      97, 109, 101, 119, 111, 114, 107, 34, 58, 34, 112, 116, 34, 125, 125, 32, 32, 32, 32, 32,
    ]);
  });
});

describe("round trips", () => {
  const r = rng(3);
  const a = randn(r, 7 * 5, 3);
  a[0] = 0;
  a[1] = -0;
  a[2] = 1e-30; // below F16's range, subnormal region for BF16
  a[3] = 70000; // F16 overflow
  a[4] = Infinity;
  a[5] = -3e38;
  const tensors = {
    "z.f32": { dtype: "F32" as const, shape: [7, 5], data: a },
    "y.f16": { dtype: "F16" as const, shape: [5, 7], data: a },
    "x.bf16": { dtype: "BF16" as const, shape: [35], data: a },
    scalar: { dtype: "BF16" as const, shape: [], data: new Float32Array([2.5]) },
    empty: { dtype: "F16" as const, shape: [0, 3], data: new Float32Array(0) },
  };

  function check(reader: SafetensorsReader): void {
    expect(reader.metadata).toEqual({ format: "pt", note: "héllo" });
    const f = reader.readF32("z.f32");
    const h = reader.readF32("y.f16");
    const b = reader.readF32("x.bf16");
    for (let i = 0; i < a.length; i++) {
      expect(Object.is(f[i], a[i])).toBe(true);
      expect(Object.is(h[i], roundF16Ref(a[i]!))).toBe(true);
      expect(Object.is(b[i], roundBf16Ref(a[i]!))).toBe(true);
    }
    expect(reader.info("y.f16").shape).toEqual([5, 7]);
    expect([...reader.readF32("scalar")]).toEqual([2.5]);
    expect(reader.readF32("empty").length).toBe(0);
  }

  it("in memory: F32 exact, F16/BF16 rounded to nearest even", () => {
    const bytes = serializeSafetensors(tensors, { format: "pt", note: "héllo" });
    const reader = SafetensorsReader.open(bytesSource(bytes), "mem");
    check(reader);
    // Wider dtypes first, then by name; every tensor aligned to its width.
    expect(reader.names).toEqual(["z.f32", "scalar", "x.bf16", "empty", "y.f16"]); // F32, BF16, F16 (enum order)
    for (const n of reader.names) {
      const t = reader.info(n);
      expect(t.begin % (t.dtype === "F32" ? 4 : 2)).toBe(0);
    }
    expect(reader.header.dataStart % 8).toBe(0);
  });

  it("through a file on disk", () => {
    const p = join(tmp(), "rt.safetensors");
    writeSafetensorsFile(p, tensors, { format: "pt", note: "héllo" });
    const reader = openSafetensorsFile(p);
    check(reader);
    reader.close();
    expect(readdirSync(join(p, ".."))).toEqual(["rt.safetensors"]); // no temporary left behind
    // Same bytes as the in-memory serializer.
    expect(Buffer.compare(readFileSync(p), Buffer.from(serializeSafetensors(tensors, { format: "pt", note: "héllo" })))).toBe(0);
  });

  it("keeps names that are special in JavaScript objects", () => {
    const bytes = serializeSafetensors({
      ["__proto__"]: { dtype: "F32", shape: [1], data: new Float32Array([1]) },
      constructor: { dtype: "F32", shape: [1], data: new Float32Array([2]) },
    } as never);
    const reader = SafetensorsReader.open(bytesSource(bytes), "mem");
    expect(reader.names.sort()).toEqual(["__proto__", "constructor"]);
    expect(reader.readF32("__proto__")[0]).toBe(1);
  });

  it("reads into a view of shared wasm memory", () => {
    const bytes = serializeSafetensors(tensors);
    const mem = new WebAssembly.Memory({ initial: 1, maximum: 2, shared: true });
    const reader = SafetensorsReader.open(bytesSource(bytes), "mem");
    const dst = new Float32Array(mem.buffer, 64, 35);
    reader.readF32("x.bf16", dst);
    for (let i = 0; i < 35; i++) expect(Object.is(dst[i], roundBf16Ref(a[i]!))).toBe(true);
    reader.readF32("z.f32", dst);
    for (let i = 0; i < 35; i++) expect(Object.is(dst[i], a[i])).toBe(true);
  });
});

describe("large tensors", () => {
  it("are read in chunks of at most READ_CHUNK_BYTES, straight into the destination", () => {
    const n = READ_CHUNK_BYTES / 2 + 12345; // BF16: two chunks; F32: three
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = (i % 1000) - 500 + i / n;
    const bytes = serializeSafetensors({
      big: { dtype: "BF16", shape: [n], data },
      wide: { dtype: "F32", shape: [n], data },
    });
    const reads: number[] = [];
    const src: ByteSource = {
      size: bytes.length,
      read(offset, length, into) {
        reads.push(length);
        into.set(bytes.subarray(offset, offset + length));
      },
    };
    const reader = SafetensorsReader.open(src, "big");
    reads.length = 0;
    const b = reader.readF32("big");
    expect(reads).toEqual([READ_CHUNK_BYTES, 2 * n - READ_CHUNK_BYTES]);
    reads.length = 0;
    const w = reader.readF32("wide");
    expect(reads.length).toBe(Math.ceil((4 * n) / READ_CHUNK_BYTES));
    expect(Math.max(...reads)).toBe(READ_CHUNK_BYTES);
    let bad = 0;
    for (let i = 0; i < n; i++) {
      if (b[i] !== roundBf16Ref(data[i]!) || w[i] !== data[i]) bad++;
    }
    expect(bad).toBe(0);
  });
});

describe("files on disk", () => {
  it("a missing file is a SafetensorsError naming it", () => {
    const p = join(tmp(), "nope.safetensors");
    expect(() => openSafetensorsFile(p)).toThrow(SafetensorsError);
    expect(() => openSafetensorsFile(p)).toThrow(`${p}: cannot open (ENOENT)`);
  });

  it("a truncated file is rejected when opened", () => {
    const p = join(tmp(), "t.safetensors");
    writeSafetensorsFile(p, { w: { dtype: "F32", shape: [10], data: new Float32Array(10) } });
    truncateSync(p, readFileSync(p).length - 4);
    expect(() => openSafetensorsFile(p)).toThrow(/t\.safetensors: .*only 36 bytes .*truncated/);
  });

  it("a failed write leaves no file, and does not touch an existing one", () => {
    const dir = tmp();
    const p = join(dir, "out.safetensors");
    const specs = { a: { dtype: "F32" as const, shape: [4] }, b: { dtype: "BF16" as const, shape: [4] } };
    const failing = (name: string): Float32Array => {
      if (name === "b") throw new Error("boom");
      return new Float32Array(4);
    };
    expect(() => writeSafetensorsFileStreaming(p, specs, failing)).toThrow("boom");
    expect(readdirSync(dir)).toEqual([]);

    writeFileSync(p, "old contents");
    expect(() => writeSafetensorsFileStreaming(p, specs, failing)).toThrow("boom");
    expect(readFileSync(p, "utf8")).toBe("old contents");
    expect(readdirSync(dir)).toEqual(["out.safetensors"]);

    // Wrong data length is caught too, also leaving the old file.
    expect(() => writeSafetensorsFileStreaming(p, specs, () => new Float32Array(3))).toThrow(/3 values for shape \[4\]/);
    expect(readFileSync(p, "utf8")).toBe("old contents");
    expect(existsSync(p)).toBe(true);
  });

  it("refuses invalid tensors to write", () => {
    expect(() => serializeSafetensors({ __metadata__: { dtype: "F32", shape: [1], data: new Float32Array(1) } })).toThrow(
      /cannot be a tensor name/,
    );
    expect(() => serializeSafetensors({ w: { dtype: "I64" as never, shape: [1], data: new Float32Array(1) } })).toThrow(
      /cannot write dtype I64/,
    );
    expect(() => serializeSafetensors({ w: { dtype: "F32", shape: [-1], data: new Float32Array(1) } })).toThrow(/bad shape/);
    expect(() => serializeSafetensors({ w: { dtype: "F32", shape: [2], data: new Float32Array(1) } })).toThrow(/1 values/);
  });
});
