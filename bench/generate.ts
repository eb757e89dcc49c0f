// generate on the Qwen3-0.6B-shaped BF16 checkpoint (bench/make-checkpoint.ts, random weights), greedy,
// steered at layer 6, 2 threads:
//   - batched (generateBatched, what `jacsteer generate` runs): 1 sequence, and 24 sequences decoded
//     together (12 vectors x 2 scales on one prompt), NEW tokens each;
//   - today's code (generateTokens on the autodiff model's KV-cache decoder, one thread, f32 weights):
//     1 sequence, the same prompt and steering, NEW tokens;
//   - the memory-bandwidth bound of one sequence: bytes of weights read per token (the layers' and the
//     LM head's stored bytes) / the copy bandwidth measured here (a 256 MiB wasm copy, best of 5).
// Decode tokens/s exclude the prompt's prefill (timed from the first chosen token). The greedy tokens of
// the single sequence are compared with today's. Writes bench/results/generate.md and .json.
//
//   node --experimental-wasm-relaxed-simd dist/bench/generate.js [--new N] [--threads N]
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { AutodiffContext } from "../src/autodiff/tensor.js";
import { ForwardModel } from "../src/engine/forward.js";
import { generateBatched } from "../src/generation/batched.js";
import { SteeredDecoder } from "../src/generation/decoder.js";
import { generateTokens } from "../src/generation/generate.js";
import { Qwen3Model } from "../src/model/qwen3.js";
import { loadQwen3Weights } from "../src/model/weights.js";
import { openCheckpoint } from "../src/node/checkpoint.js";
import { enableRelaxedSimd } from "../src/node/relaxed-simd.js";
import { createNodeRuntime, packageRoot } from "../src/node/runtime.js";
import { createParallelGemm } from "../src/node/thread-pool.js";
import { machineInfo, machineLine, markdownTable } from "./harness.js";
import { ensureBenchCheckpoint } from "./make-checkpoint.js";
import { workloadTokens } from "./workload.js";

const LAYER = 6, PROMPT = 24, BATCH = 24;

async function main(): Promise<void> {
  enableRelaxedSimd();
  const { values } = parseArgs({ options: { new: { type: "string" }, threads: { type: "string" } } });
  const NEW = Number(values.new ?? 32), threads = Number(values.threads ?? 2);
  const machine = machineInfo();
  const dir = ensureBenchCheckpoint();
  const ckpt = openCheckpoint(dir);
  const cfg = ckpt.config, d = cfg.hiddenSize;
  const prompt = workloadTokens(PROMPT);
  let s = 7;
  const uniform = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32);
  const vectors = Array.from({ length: BATCH / 2 }, () => Float32Array.from({ length: d }, () => uniform() - 0.5));
  const steerOf = (i: number) => vectors[i >> 1]!.map((x) => x * (i % 2 ? 4 : -4));

  const rt = await createNodeRuntime();
  // Copy bandwidth: one 256 MiB wasm copy, best of 5.
  const n = 64 * 2 ** 20, a = rt.heap.allocF32(n), b = rt.heap.allocF32(n);
  rt.heap.f32(a, n).fill(1);
  let best = Infinity;
  for (let r = 0; r < 5; r++) {
    const t = performance.now();
    rt.k.copy(b, a, n);
    best = Math.min(best, performance.now() - t);
  }
  const copyGBs = (2 * 4 * n) / (best / 1000) / 1e9; // read + write
  const gemm = await createParallelGemm(rt, threads);
  const fm = await ForwardModel.create(rt, cfg, ckpt.tensors, { gemm, fullHead: true, log: (l) => console.error(l) });
  const layerBytes = fm.weightPlan.residentBytes; // stored bytes of every layer + one dispatch's packed panels
  const headBytes = cfg.vocabSize * d * 2;
  const boundTps = (copyGBs * 1e9) / 2 / (layerBytes + headBytes); // a token reads every weight once (read half of a copy)

  const decode = async (count: number) => {
    let first = 0;
    const t0 = performance.now();
    const res = await generateBatched(fm, Array.from({ length: count }, (_, i) => ({ prompt, steer: steerOf(i) })), {
      maxNewTokens: NEW, temperature: 0, topP: 1, seed: 0, layer: LAYER,
      onToken: (seq, _t, step) => void (seq === 0 && step === 0 && (first = performance.now())),
    });
    const end = performance.now();
    const tokens = res.reduce((x, r) => x + r.tokens.length, 0);
    return { tokens: res[0]!.tokens, prefill_s: (first - t0) / 1000, decode_tps: ((tokens - count) / (end - first)) * 1000 };
  };
  const single = await decode(1);
  console.error(`bench generate: batched, 1 sequence: ${single.decode_tps.toFixed(2)} tokens/s (bound ${boundTps.toFixed(2)} at ${copyGBs.toFixed(1)} GB/s copy)`);
  const batch = await decode(BATCH);
  console.error(`bench generate: batched, ${BATCH} sequences: ${batch.decode_tps.toFixed(2)} tokens/s`);
  await fm.close();

  const rt2 = await createNodeRuntime();
  const ctx = new AutodiffContext(rt2);
  const w = ctx.noGrad(() => loadQwen3Weights(ctx, cfg, ckpt.tensors, { head: true }));
  const decoder = new SteeredDecoder(new Qwen3Model(ctx, cfg, w), PROMPT + NEW);
  decoder.setSteering({ layer: LAYER, vector: steerOf(0) });
  let first = 0;
  const t0 = performance.now();
  const old = generateTokens(decoder, prompt, { maxNewTokens: NEW, temperature: 0, topP: 1, seed: 0, onToken: (_t, step) => void (step === 0 && (first = performance.now())) });
  const oldTps = ((old.tokens.length - 1) / (performance.now() - first)) * 1000;
  const same = old.tokens.every((t, i) => t === single.tokens[i]);
  console.error(`bench generate: today's code, 1 sequence: ${oldTps.toFixed(2)} tokens/s (prefill ${((first - t0) / 1000).toFixed(1)} s); same greedy tokens: ${same}`);
  ckpt.close();

  const result = { machine, threads, new_tokens: NEW, prompt_tokens: PROMPT, layer: LAYER, copy_gb_s: copyGBs, bytes_per_token: layerBytes + headBytes, bound_tps: boundTps, single, batch: { ...batch, tokens: undefined, sequences: BATCH }, today_tps: oldTps, same_tokens: same };
  const out = join(packageRoot(), "bench", "results");
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, "generate.json"), JSON.stringify(result, null, 2) + "\n");
  const md = [
    "# generate: batched forward vs today's code",
    "",
    `Machine: ${machineLine(machine)}.`,
    "",
    `Workload: Qwen3-0.6B-shaped BF16 checkpoint (random weights), a ${PROMPT}-token prompt, greedy, ${NEW} new tokens, steered at layer ${LAYER}. Decode tokens/s exclude the prefill.`,
    "",
    markdownTable(
      ["path", "threads", "sequences", "decode tokens/s (all sequences)", "per sequence"],
      [
        ["batched (generateBatched, `jacsteer generate`)", String(threads), "1", single.decode_tps.toFixed(2), single.decode_tps.toFixed(2)],
        ["batched (generateBatched, `jacsteer generate`)", String(threads), String(BATCH), batch.decode_tps.toFixed(2), (batch.decode_tps / BATCH).toFixed(2)],
        ["today's code (generateTokens on the autodiff decoder)", "1", "1", oldTps.toFixed(2), oldTps.toFixed(2)],
      ],
    ),
    "",
    `- Memory-bandwidth bound of one sequence: ${((layerBytes + headBytes) / 2 ** 30).toFixed(2)} GiB of stored weights per token at ${copyGBs.toFixed(1)} GB/s (copy, read + write) = ${boundTps.toFixed(2)} tokens/s; batched single sequence: ${((100 * single.decode_tps) / boundTps).toFixed(0)}% of it (goal 70%).`,
    `- Batch of ${BATCH} vs one sequence: ${(batch.decode_tps / single.decode_tps).toFixed(1)}x the tokens/s (goal 8x); one sequence vs today's code: ${(single.decode_tps / oldTps).toFixed(1)}x.`,
    `- Same greedy tokens as today's code (single sequence): ${same ? "yes" : "NO"}.`,
    "- Not measured here: PyTorch on the same checkpoint and batch (issue 11's other goal).",
    "",
    "Regenerate with `npm run build && node dist/bench/make-checkpoint.js 0.6b && node --experimental-wasm-relaxed-simd dist/bench/generate.js`.",
    "",
  ].join("\n");
  writeFileSync(join(out, "generate.md"), md);
  process.stdout.write(md);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
