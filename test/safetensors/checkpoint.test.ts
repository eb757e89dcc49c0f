import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  TINY_MODEL_SEED,
  TINY_MODEL_SHAPE,
  planShards,
  randomQwen3Tensor,
} from "../../src/checkpoint/write-random.js";
import { openSafetensorsFile } from "../../src/node/safetensors-file.js";
import { packageRoot } from "../../src/node/runtime.js";
import type { SafetensorsReader } from "../../src/safetensors/reader.js";
import { SMALL_SHAPE, writeTempCheckpoint, type TempCheckpoint } from "../helpers/checkpoints.js";
import { roundBf16Ref } from "./float-reference.js";

const made: TempCheckpoint[] = [];
afterAll(() => made.forEach((c) => c.remove()));
function make(...args: Parameters<typeof writeTempCheckpoint>): TempCheckpoint {
  const c = writeTempCheckpoint(...args);
  made.push(c);
  return c;
}

/** Expected [name, shape] for SMALL_SHAPE, written out by hand (V=50, d=32, I=48, H=4, KV=2, hd=12). */
function expectedSmallShapes(tied: boolean): [string, number[]][] {
  const out: [string, number[]][] = [["model.embed_tokens.weight", [50, 32]]];
  for (const i of [0, 1]) {
    const p = `model.layers.${i}.`;
    out.push(
      [`${p}input_layernorm.weight`, [32]],
      [`${p}self_attn.q_proj.weight`, [48, 32]],
      [`${p}self_attn.k_proj.weight`, [24, 32]],
      [`${p}self_attn.v_proj.weight`, [24, 32]],
      [`${p}self_attn.o_proj.weight`, [32, 48]],
      [`${p}self_attn.q_norm.weight`, [12]],
      [`${p}self_attn.k_norm.weight`, [12]],
      [`${p}post_attention_layernorm.weight`, [32]],
      [`${p}mlp.gate_proj.weight`, [48, 32]],
      [`${p}mlp.up_proj.weight`, [48, 32]],
      [`${p}mlp.down_proj.weight`, [32, 48]],
    );
  }
  out.push(["model.norm.weight", [32]]);
  if (!tied) out.push(["lm_head.weight", [50, 32]]);
  return out;
}

/** Open every safetensors file of a checkpoint; returns tensor name -> reader. */
function openAll(c: TempCheckpoint): Map<string, SafetensorsReader> {
  const m = new Map<string, SafetensorsReader>();
  for (const f of c.files) {
    const r = openSafetensorsFile(join(c.dir, f));
    for (const n of r.names) {
      expect(m.has(n)).toBe(false); // each tensor in exactly one file
      m.set(n, r);
    }
  }
  return m;
}

describe("random Qwen3 checkpoints", () => {
  it("BF16, 3 shards, untied: config, index, names, shapes, and values = bf16(source)", () => {
    const c = make(SMALL_SHAPE, { dtype: "BF16", seed: 11, shards: 3, tied: false });
    const cfg = JSON.parse(readFileSync(join(c.dir, "config.json"), "utf8"));
    expect(cfg).toMatchObject({
      model_type: "qwen3",
      architectures: ["Qwen3ForCausalLM"],
      vocab_size: 50,
      hidden_size: 32,
      intermediate_size: 48,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      head_dim: 12,
      rms_norm_eps: 1e-6,
      rope_theta: 10000,
      max_position_embeddings: 128,
      tie_word_embeddings: false,
      torch_dtype: "bfloat16",
      hidden_act: "silu",
      attention_bias: false,
    });

    expect(c.files).toEqual([
      "model-00001-of-00003.safetensors",
      "model-00002-of-00003.safetensors",
      "model-00003-of-00003.safetensors",
    ]);
    const index = JSON.parse(readFileSync(join(c.dir, "model.safetensors.index.json"), "utf8"));
    const expected = expectedSmallShapes(false);
    const names = expected.map(([n]) => n);
    expect(Object.keys(index.weight_map)).toEqual([...names].sort());
    const bytes = expected.reduce((a, [, s]) => a + 2 * s.reduce((x, y) => x * y, 1), 0);
    expect(index.metadata.total_size).toBe(bytes);

    const readers = openAll(c);
    expect([...readers.keys()].sort()).toEqual([...names].sort());
    const source = c.source();
    for (const [name, shape] of expected) {
      const r = readers.get(name)!;
      expect(join(c.dir, index.weight_map[name])).toBe(r.name);
      const info = r.info(name);
      expect(info.dtype).toBe("BF16");
      expect(info.shape).toEqual(shape);
      const got = r.readF32(name);
      const src = source.get(name)!.data;
      let bad = 0;
      for (let i = 0; i < src.length; i++) if (got[i] !== roundBf16Ref(src[i]!)) bad++;
      expect(bad).toBe(0);
    }
    for (const r of new Set(readers.values())) {
      expect(r.metadata).toEqual({ format: "pt" });
      r.close();
    }
  });

  it("F32, one file, tied: no lm_head, values exact", () => {
    const c = make(SMALL_SHAPE, { dtype: "F32", seed: 11 });
    expect(c.files).toEqual(["model.safetensors"]);
    const cfg = JSON.parse(readFileSync(join(c.dir, "config.json"), "utf8"));
    expect(cfg.tie_word_embeddings).toBe(true);
    expect(cfg.torch_dtype).toBe("float32");
    const r = openSafetensorsFile(join(c.dir, "model.safetensors"));
    expect(r.names.sort()).toEqual(expectedSmallShapes(true).map(([n]) => n).sort());
    for (const [name, t] of c.source()) expect(r.readF32(name)).toEqual(t.data);
    r.close();
  });

  it("values depend only on seed and name: same across dtype and sharding, different across seeds", () => {
    const a = make(SMALL_SHAPE, { dtype: "F32", seed: 5, tied: false });
    const b = make(SMALL_SHAPE, { dtype: "F32", seed: 5, tied: false, shards: 4 });
    const c = make(SMALL_SHAPE, { dtype: "F32", seed: 6, tied: false });
    const ra = openAll(a);
    const rb = openAll(b);
    const rc = openAll(c);
    for (const [name, r] of ra) {
      const va = r.readF32(name);
      expect(rb.get(name)!.readF32(name)).toEqual(va);
      const vc = rc.get(name)!.readF32(name);
      expect(vc.some((x, i) => x !== va[i])).toBe(true);
    }
    // Byte-identical files from a rerun.
    const a2 = make(SMALL_SHAPE, { dtype: "F32", seed: 5, tied: false });
    expect(Buffer.compare(readFileSync(join(a.dir, "model.safetensors")), readFileSync(join(a2.dir, "model.safetensors")))).toBe(0);
  });

  it("draws projections ~ N(0, 1/in), embeddings ~ N(0, 1), norms ~ 1 + 0.1 N(0, 1)", () => {
    const stats = (x: Float32Array) => {
      let s = 0;
      for (const v of x) s += v;
      const mean = s / x.length;
      let q = 0;
      for (const v of x) q += (v - mean) ** 2;
      return { mean, std: Math.sqrt(q / x.length) };
    };
    const cases: [string, number[], number, number][] = [
      ["model.layers.0.self_attn.q_proj.weight", [256, 256], 0, 1 / 16],
      ["model.layers.0.mlp.down_proj.weight", [256, 512], 0, 1 / Math.sqrt(512)],
      ["lm_head.weight", [50, 256], 0, 1 / 16],
      ["model.embed_tokens.weight", [50, 256], 0, 1],
      ["model.layers.3.post_attention_layernorm.weight", [4096], 1, 0.1],
      ["model.layers.0.self_attn.k_norm.weight", [4096], 1, 0.1],
      ["model.norm.weight", [4096], 1, 0.1],
    ];
    for (const [name, shape, mean, std] of cases) {
      const s = stats(randomQwen3Tensor(name, shape, 1));
      const n = shape.reduce((a, b) => a * b, 1);
      expect(Math.abs(s.mean - mean)).toBeLessThan((5 * std) / Math.sqrt(n));
      expect(Math.abs(s.std / std - 1)).toBeLessThan(0.05);
    }
  });

  it("splits shards into contiguous, non-empty, balanced groups", () => {
    const t = [100, 1, 1, 1, 1, 1, 1, 1, 1, 100].map((bytes, i) => ({ i, bytes }));
    for (const n of [1, 2, 3, 5, 10]) {
      const groups = planShards(t, n);
      expect(groups.length).toBe(n);
      expect(groups.flatMap((g) => g.tensors.map((x) => x.i))).toEqual(t.map((x) => x.i));
      for (const g of groups) expect(g.tensors.length).toBeGreaterThan(0);
    }
    expect(planShards(t, 2).map((g) => g.tensors.reduce((a, x) => a + x.bytes, 0))).toEqual([104, 104]);
    expect(() => planShards(t, 11)).toThrow(/cannot split 10 tensors into 11 shards/);
  });
});

describe("the bundled tiny model (models/tiny)", () => {
  const dir = join(packageRoot(), "models", "tiny");

  it("has the specified Qwen3 config", () => {
    const cfg = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
    expect(cfg).toMatchObject({
      model_type: "qwen3",
      architectures: ["Qwen3ForCausalLM"],
      vocab_size: 256,
      hidden_size: 64,
      num_hidden_layers: 4,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      head_dim: 16,
      intermediate_size: 192,
      rope_theta: 1000000,
      rms_norm_eps: 1e-6,
      tie_word_embeddings: true,
      torch_dtype: "float32",
    });
  });

  it("is under 1 MB and holds exactly the regenerated F32 weights", () => {
    const p = join(dir, "model.safetensors");
    expect(statSync(p).size).toBeLessThan(1_000_000);
    const r = openSafetensorsFile(p);
    expect(r.has("lm_head.weight")).toBe(false);
    expect(r.names.length).toBe(1 + 4 * 11 + 1);
    for (const name of r.names) {
      const info = r.info(name);
      expect(info.dtype).toBe("F32");
      expect(r.readF32(name)).toEqual(randomQwen3Tensor(name, info.shape, TINY_MODEL_SEED));
    }
    expect(r.info("model.layers.3.self_attn.k_proj.weight").shape).toEqual([32, 64]);
    r.close();
    expect(TINY_MODEL_SHAPE.vocab_size).toBe(256);
  });
});
