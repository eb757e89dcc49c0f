// The command line end to end (built CLI in dist/, as a user runs it): results, files, and every
// kind of bad input: exit 1, one line naming the flag/file/tensor, no stack trace, no --out file.
import { readFileSync, writeFileSync, rmSync, openSync, writeSync, closeSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { writeTempCheckpoint, makeTempDir, SMALL_SHAPE, type TempCheckpoint } from "../helpers/checkpoints.js";
import { openSafetensorsFile } from "../../src/node/safetensors-file.js";
import { decodeVectorFile } from "../../src/io/vector-file.js";
import { explicitJacobian, loadTestModel } from "../helpers/model.js";
import { SteeringJacobian } from "../../src/jacobian/steering-jacobian.js";
import { svd } from "../../src/linalg/dense.js";

import { expectInputError, jacsteer } from "../helpers/cli.js";

const cleanup: TempCheckpoint[] = [];
const dirs: string[] = [];
afterAll(() => {
  cleanup.forEach((c) => c.remove());
  dirs.forEach((d) => rmSync(d, { recursive: true, force: true }));
});
function tempDir() {
  const d = makeTempDir("jacsteer-cli-");
  dirs.push(d);
  return d;
}

describe("jacsteer power-iter", () => {
  const ck = writeTempCheckpoint(SMALL_SHAPE, { seed: 21 });
  cleanup.push(ck);

  it("writes the vector file of CONTRACT.md section 3 and a JSON summary that match an exact SVD", async () => {
    const out = join(tempDir(), "v.safetensors");
    const r = jacsteer(["power-iter", "--model", ck.dir, "--tokens", "1,2,3,4,5,6", "--tokens", "7,8,9,10", "--source-layer", "0", "--target-layer", "1", "--positions", "3", "--num-vectors", "3", "--tol", "1e-7", "--max-iters", "300", "--out", out, "--json"]);
    expect(r.stderr).toMatch(/iter 1: sigma/);
    expect(r.code, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout);
    for (const key of ["singular_values", "iterations", "products", "seconds", "tokens"]) expect(summary).toHaveProperty(key);
    expect(summary.tokens).toEqual([[1, 2, 3, 4, 5, 6], [7, 8, 9, 10]]);
    const reader = openSafetensorsFile(out);
    const file = decodeVectorFile(reader, out);
    expect(reader.info("vectors").dtype).toBe("F32");
    expect(reader.info("vectors").shape).toEqual([3, SMALL_SHAPE.hidden_size]);
    expect(file.metadata).toMatchObject({ format: "jacsteer.vectors.v1", source_layer: "0", target_layer: "1", positions: "3", seed: "0", model: ck.dir.split("/").pop() });
    expect(file.singularValues).toEqual(summary.singular_values.map((x: number) => Math.fround(x)));
    // Independent check: SVD of J formed column by column.
    const { model } = await loadTestModel(ck.dir);
    const J = new SteeringJacobian(model, summary.tokens, { sourceLayer: 0, targetLayer: 1, positions: 3 });
    const d = J.inputDim;
    const rows = explicitJacobian(J);
    const exact = svd(rows, d).values;
    summary.singular_values.forEach((s: number, i: number) => expect(Math.abs(s - exact[i]) / exact[i]).toBeLessThan(1e-4));
  });

  it("--weights stream and --weights resident write bitwise identical vector files (1 and 2 threads), and auto says which it chose", () => {
    const base = ["power-iter", "--model", ck.dir, "--tokens", "1,2,3,4,5,6", "--tokens", "7,8,9,10", "--source-layer", "0", "--target-layer", "1", "--num-vectors", "3", "--tol", "1e-6"];
    const tensors = (file: string) => {
      const r = openSafetensorsFile(file);
      const out = ["vectors", "singular_values", "residuals"].map((t) => Buffer.from(r.readBytes(t)).toString("hex"));
      r.close();
      return out;
    };
    let ref: string[] | undefined;
    for (const threads of ["1", "2"]) {
      for (const weights of ["resident", "stream"]) {
        const out = join(tempDir(), `${weights}-${threads}.safetensors`);
        const r = jacsteer([...base, "--threads", threads, "--weights", weights, "--out", out]);
        expect(r.code, r.stderr).toBe(0);
        expect(r.stderr).toMatch(weights === "stream" ? /weights streamed from the checkpoint/ : /weights resident/);
        ref ??= tensors(out);
        expect(tensors(out)).toEqual(ref);
      }
    }
    expect(jacsteer(base).stderr).toMatch(/engine: weights resident: layers 1\.\.1 in their stored dtype, read once/);
  });

  it("both methods give the same singular values", () => {
    const run = (m: string) => JSON.parse(jacsteer(["power-iter", "--model", ck.dir, "--tokens", "4,3,2,1,0,5", "--source-layer", "0", "--target-layer", "1", "--num-vectors", "2", "--method", m, "--tol", "1e-7", "--max-iters", "300", "--json"]).stdout);
    const a = run("jvp"), b = run("double-vjp");
    a.singular_values.forEach((s: number, i: number) => expect(Math.abs(s - b.singular_values[i]) / s).toBeLessThan(1e-5));
  });

  it("runs on the bundled tiny model with no --model, text and chat prompts", () => {
    const r = jacsteer(["power-iter", "--prompt", "Hello", "--json", "--num-vectors", "2"]);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s.tokens).toEqual([[72, 101, 108, 108, 111]]); // UTF-8 bytes of "Hello" (byte-level vocabulary)
    expect(r.stderr).toMatch(/using --source-layer \d+ --target-layer \d+/);
    const c = jacsteer(["power-iter", "--prompt", "Hi", "--chat", "--system", "Be brief.", "--json", "--num-vectors", "1"]);
    expect(c.code, c.stderr).toBe(0);
    expect(JSON.parse(c.stdout).tokens[0].length).toBeGreaterThan(20);
  });

  it("--at evaluates J at a steered point and --init accepts a vector file", () => {
    const dir = tempDir();
    const first = join(dir, "first.safetensors");
    expect(jacsteer(["power-iter", "--model", ck.dir, "--tokens", "1,2,3,4,5", "--source-layer", "0", "--target-layer", "1", "--num-vectors", "2", "--out", first]).code).toBe(0);
    const at = JSON.parse(jacsteer(["power-iter", "--model", ck.dir, "--tokens", "1,2,3,4,5", "--source-layer", "0", "--target-layer", "1", "--num-vectors", "2", "--at", `${first}:1`, "--at-scale", "4", "--init", first, "--json"]).stdout);
    const zero = JSON.parse(jacsteer(["power-iter", "--model", ck.dir, "--tokens", "1,2,3,4,5", "--source-layer", "0", "--target-layer", "1", "--num-vectors", "2", "--json"]).stdout);
    expect(Math.abs(at.singular_values[0] - zero.singular_values[0])).toBeGreaterThan(1e-4);
  });
});

describe("bad input: exit 1, one clear line, no partial output", () => {
  const good = writeTempCheckpoint(SMALL_SHAPE, { seed: 22 });
  cleanup.push(good);
  const base = ["power-iter", "--tokens", "1,2,3,4,5", "--source-layer", "0", "--target-layer", "1"];

  function copyCheckpoint(): string {
    const dir = tempDir();
    for (const f of ["config.json", "model.safetensors"]) writeFileSync(join(dir, f), readFileSync(join(good.dir, f)));
    return dir;
  }

  it("a model directory that does not exist", () => expectInputError([...base, "--model", "/nonexistent/model"], /--model \/nonexistent\/model: directory does not exist/));
  it("a config that is not JSON", () => {
    const dir = copyCheckpoint();
    writeFileSync(join(dir, "config.json"), "{ not json");
    expectInputError([...base, "--model", dir], /config\.json: not valid JSON/);
  });
  it("an unknown model_type", () => {
    const dir = copyCheckpoint();
    const cfg = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
    writeFileSync(join(dir, "config.json"), JSON.stringify({ ...cfg, model_type: "llama" }));
    expectInputError([...base, "--model", dir], /unsupported model_type "llama"/);
  });
  it("S > T", () => expectInputError(["power-iter", "--model", good.dir, "--tokens", "1,2,3,4", "--source-layer", "1", "--target-layer", "0"], /--source-layer 1 is after --target-layer 0/));
  it("T beyond the last layer", () => expectInputError(["power-iter", "--model", good.dir, "--tokens", "1,2,3,4", "--source-layer", "0", "--target-layer", "2"], /--target-layer 2 is out of range: the model has layers 0\.\.1/));
  it("K longer than the prompt", () => expectInputError([...base, "--model", good.dir, "--positions", "9"], /--positions 9 needs at least 9 tokens, but prompt 1 has 5/));
  it("a token id outside the vocabulary", () => expectInputError(["power-iter", "--model", good.dir, "--tokens", "1,2,3,50", "--source-layer", "0", "--target-layer", "1"], /token id 50 is outside the vocabulary \[0, 50\)/));
  it("an unknown flag", () => expectInputError([...base, "--model", good.dir, "--frobnicate"], /frobnicate/));
  it("a missing tensor", () => {
    const dir = copyCheckpoint();
    // Rename one tensor in the header (same length keeps the file valid).
    const p = join(dir, "model.safetensors");
    const buf = readFileSync(p);
    const i = buf.indexOf("model.layers.0.mlp.up_proj.weight");
    buf.write("model.layers.0.mlp.up_proj.wXight", i);
    writeFileSync(p, buf);
    expectInputError([...base, "--model", dir], /missing tensor "model\.layers\.0\.mlp\.up_proj\.weight" in .*model\.safetensors/);
  });
  it("a misshapen tensor", () => {
    const dir = copyCheckpoint();
    const cfg = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
    writeFileSync(join(dir, "config.json"), JSON.stringify({ ...cfg, intermediate_size: 47 }));
    expectInputError([...base, "--model", dir], /has shape \[48, 32\], expected \[47, 32\]/);
  });
  it("NaN weights", () => {
    const dir = copyCheckpoint();
    const p = join(dir, "model.safetensors");
    const r = openSafetensorsFile(p);
    const info = r.header.tensors.get("model.layers.0.self_attn.k_proj.weight")!;
    r.close?.();
    const fd = openSync(p, "r+");
    const nan = Buffer.alloc(4);
    nan.writeFloatLE(NaN);
    writeSync(fd, nan, 0, 4, info.begin + 8);
    closeSync(fd);
    expectInputError([...base, "--model", dir], /tensor "model\.layers\.0\.self_attn\.k_proj\.weight" in .* has a non-finite value \(NaN\)/);
  });
  it("overlapping tensor offsets", () => {
    const dir = copyCheckpoint();
    const header = JSON.stringify({ a: { dtype: "F32", shape: [2], data_offsets: [0, 8] }, b: { dtype: "F32", shape: [2], data_offsets: [4, 12] } });
    const hb = Buffer.from(header);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(hb.length));
    writeFileSync(join(dir, "model.safetensors"), Buffer.concat([len, hb, Buffer.alloc(12)]));
    expectInputError([...base, "--model", dir], /model\.safetensors.*overlap/i);
  });
  it("a truncated safetensors file", () => {
    const dir = copyCheckpoint();
    const p = join(dir, "model.safetensors");
    writeFileSync(p, readFileSync(p).subarray(0, 1000));
    expectInputError([...base, "--model", dir], /model\.safetensors/);
  });
  it("--weights: a bad mode, or with an autodiff method", () => {
    expectInputError([...base, "--weights", "mmap"], /--weights mmap: expected one of auto, resident, stream/);
    expectInputError([...base, "--weights", "stream", "--method", "jvp"], /--weights applies to --method lanczos and power/);
  });
  it("the autodiff reference methods above their memory limit name --method lanczos", () => {
    const dir = copyCheckpoint();
    const cfg = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
    writeFileSync(join(dir, "config.json"), JSON.stringify({ ...cfg, hidden_size: 8192, intermediate_size: 65536, vocab_size: 151936, head_dim: 128, num_attention_heads: 64, num_key_value_heads: 8 }));
    expectInputError([...base, "--model", dir, "--method", "double-vjp"], /model too large for memory.*use --method lanczos, which streams the weights/);
  });
  it("a model too large for memory", () => {
    const dir = copyCheckpoint();
    const cfg = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
    writeFileSync(join(dir, "config.json"), JSON.stringify({ ...cfg, hidden_size: 8192, intermediate_size: 65536, vocab_size: 151936, head_dim: 128, num_attention_heads: 64, num_key_value_heads: 8 }));
    expectInputError([...base, "--model", dir], /model too large for memory/);
  });
  it("--out in a directory that does not exist", () => {
    const r = jacsteer([...base, "--model", good.dir, "--out", "/nonexistent/dir/v.safetensors"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/--out \/nonexistent\/dir\/v\.safetensors: directory .* does not exist/);
  });
  it("--system without --chat", () => expectInputError(["power-iter", "--prompt", "hi", "--system", "x"], /--system needs --chat/));
  it("an --at file that does not exist", () => expectInputError([...base, "--model", good.dir, "--at", "/nonexistent.safetensors"], /--at \/nonexistent\.safetensors: file does not exist/));
});
