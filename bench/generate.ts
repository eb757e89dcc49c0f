// generate on the Qwen3-0.6B-shaped BF16 checkpoint (bench/make-checkpoint.ts, random weights), greedy,
// steered at layer 6, 2 threads:
//   - batched (generateBatched, what `jacsteer generate` runs): 1 sequence, and 24 sequences decoded
//     together (12 vectors x 2 scales on one prompt), NEW tokens each;
//   - today's code (generateTokens on the autodiff model's KV-cache decoder, one thread, f32 weights):
//     1 sequence, the same prompt and steering, NEW tokens;
//   - the memory-bandwidth bound of one sequence: bytes of weights read per token (the layers' and the
//     LM head's stored bytes) / the copy bandwidth measured here (a 256 MiB wasm copy, best of 5).
//   - PyTorch (bench/torch_generate.py: reference/qwen3_minimal.py's model with a KV-cache step,
//     /usr/bin/python3, torch threads = --threads), the same checkpoint, prompt, steering and batches
//     (1 and 24), float32 (and bfloat16 for one sequence), in this run, after jacsteer's;
//   - the small-M kernels: one thread, a BF16 weight of the 0.6B shape's gate_proj [3072, 1024] and
//     down_proj [1024, 3072], C = A W^T for M rows: gemmDirectBt (widening in registers), packPanels +
//     gemmPacked (f32 panels), packPanelsBf16 + gemmPackedBf16 (BF16 panels), BF16 panels prepacked.
// Decode tokens/s exclude the prompt's prefill (timed from the first chosen token). The greedy tokens of
// the single sequence are compared with today's and PyTorch's. Writes bench/results/generate.md and .json.
//
//   node --experimental-wasm-relaxed-simd dist/bench/generate.js [--new N] [--threads N] [--no-torch]
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { AutodiffContext } from "../src/autodiff/tensor.js";
import { ForwardModel } from "../src/engine/forward.js";
import { PROJECTIONS, projectionShape } from "../src/engine/layer-weights.js";
import { generateBatched } from "../src/generation/batched.js";
import { SteeredDecoder } from "../src/generation/decoder.js";
import { generateTokens } from "../src/generation/generate.js";
import { Qwen3Model } from "../src/model/qwen3.js";
import { loadQwen3Weights } from "../src/model/weights.js";
import { openCheckpoint } from "../src/node/checkpoint.js";
import { enableRelaxedSimd } from "../src/node/relaxed-simd.js";
import { createNodeRuntime, packageRoot } from "../src/node/runtime.js";
import { createParallelGemm } from "../src/node/thread-pool.js";
import { packedFloats } from "../src/kernels/matmul.js";
import type { Runtime } from "../src/runtime/runtime.js";
import { machineInfo, machineLine, markdownTable } from "./harness.js";
import { ensureBenchCheckpoint } from "./make-checkpoint.js";
import { workloadTokens } from "./workload.js";

const LAYER = 6, PROMPT = 24, BATCH = 24;

async function main(): Promise<void> {
  enableRelaxedSimd();
  const { values } = parseArgs({ options: { new: { type: "string" }, threads: { type: "string" }, "no-torch": { type: "boolean" } } });
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
  const copyMark = rt.heap.mark();
  const n = 64 * 2 ** 20, a = rt.heap.allocF32(n), b = rt.heap.allocF32(n);
  rt.heap.f32(a, n).fill(1);
  let best = Infinity;
  for (let r = 0; r < 5; r++) {
    const t = performance.now();
    rt.k.copy(b, a, n);
    best = Math.min(best, performance.now() - t);
  }
  const copyGBs = (2 * 4 * n) / (best / 1000) / 1e9; // read + write
  rt.heap.release(copyMark);
  const crossover = smallMCrossover(rt, cfg.hiddenSize, cfg.intermediateSize);
  for (const r of crossover) console.error(`bench generate: M ${r.m}: direct ${r.direct_ms.toFixed(3)} ms, f32 pack + gemm ${r.packed_ms.toFixed(3)} ms, BF16 pack + gemm ${r.bf16_pack_ms.toFixed(3)} ms, BF16 prepacked ${r.bf16_prepacked_ms.toFixed(3)} ms (${r.shape})`);
  const gemm = await createParallelGemm(rt, threads);
  // Read bandwidth with the decode's threads: sumSquares (one multiply-add per 4 bytes read) over
  // 256 MiB split into one part per thread, best of 5. Decoding one sequence reads every weight once
  // per token on every thread, so this is the rate it cannot beat.
  const readMark = rt.heap.mark();
  const buf = rt.heap.allocF32(n), part = Math.floor(n / threads);
  rt.heap.f32(buf, n).fill(1);
  let bestRead = Infinity;
  for (let r = 0; r < 5; r++) {
    const t = performance.now();
    await gemm.runTasks(Array.from({ length: threads }, (_, i) => [["sumSquares", buf + 4 * i * part, part]]), Infinity);
    bestRead = Math.min(bestRead, performance.now() - t);
  }
  const readGBs = (4 * part * threads) / (bestRead / 1000) / 1e9;
  rt.heap.release(readMark);
  const fm = await ForwardModel.create(rt, cfg, ckpt.tensors, { gemm, fullHead: true, log: (l) => console.error(l) });
  // Stored bytes a token reads: every layer's seven projections (BF16) and the whole LM head.
  const layerBytes = cfg.numLayers * 2 * PROJECTIONS.map((p) => projectionShape(cfg, p)).reduce((s, [out, inp]) => s + out * inp, 0);
  const headBytes = cfg.vocabSize * d * 2;
  // Three bounds on one sequence's tokens/s (a token reads every weight once): the issue's, bytes per
  // token against the copy bandwidth (bytes read + written per second, one thread); this bench's
  // earlier one, against the copy's reads only (half of it); and the tightest, against the read
  // bandwidth on the decode's threads.
  const copyBoundTps = (copyGBs * 1e9) / (layerBytes + headBytes);
  const boundTps = copyBoundTps / 2;
  const readBoundTps = (readGBs * 1e9) / (layerBytes + headBytes);

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
  console.error(`bench generate: batched, 1 sequence: ${single.decode_tps.toFixed(2)} tokens/s (bounds: ${copyBoundTps.toFixed(2)} at ${copyGBs.toFixed(1)} GB/s copy, ${readBoundTps.toFixed(2)} at ${readGBs.toFixed(1)} GB/s read on ${threads} threads)`);
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

  // PyTorch on the same checkpoint, prompt, steering and batches.
  const torchRun = (count: number, dtype: string): TorchRun | null => {
    if (values["no-torch"] || !existsSync("/usr/bin/python3")) return null;
    const input = JSON.stringify({ model: dir, prompt, steer: Array.from({ length: count }, (_, i) => Array.from(steerOf(i))), layer: LAYER, new: NEW, threads, dtype });
    const r = spawnSync("/usr/bin/python3", [join(packageRoot(), "bench", "torch_generate.py")], { input, encoding: "utf8", maxBuffer: 1 << 26 });
    if (r.status !== 0) {
      console.error(`bench generate: PyTorch ${dtype} x ${count} failed: ${r.stderr.trim().split("\n").at(-1)}`);
      return null;
    }
    const out = JSON.parse(r.stdout) as TorchRun;
    console.error(`bench generate: PyTorch ${out.torch} ${dtype}, ${count} sequence(s): ${out.decode_tps.toFixed(2)} tokens/s (load ${out.load_s.toFixed(1)} s, prefill ${out.prefill_s.toFixed(2)} s)`);
    return out;
  };
  const torch1 = torchRun(1, "float32");
  const torchBatch = torchRun(BATCH, "float32");
  const torch1bf = torchRun(1, "bfloat16");
  const agree = (t: number[] | undefined) => (t ? t.findIndex((x, i) => x !== single.tokens[i]) : -2);

  const result = {
    machine, threads, new_tokens: NEW, prompt_tokens: PROMPT, layer: LAYER, copy_gb_s: copyGBs, read_gb_s: readGBs, bytes_per_token: layerBytes + headBytes, copy_bound_tps: copyBoundTps, bound_tps: boundTps, read_bound_tps: readBoundTps,
    single, batch: { ...batch, tokens: undefined, sequences: BATCH }, today_tps: oldTps, same_tokens: same,
    torch: { single_f32: torch1, batch_f32: torchBatch, single_bf16: torch1bf },
    small_m_crossover: crossover,
  };
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
    `- Memory-bandwidth bound of one sequence: ${((layerBytes + headBytes) / 1e9).toFixed(2)} GB of stored weights per token (every layer's projections and the LM head, BF16). ` +
      `Against the copy bandwidth, ${copyGBs.toFixed(1)} GB/s (one thread, bytes read + written): ${copyBoundTps.toFixed(2)} tokens/s, and the batched single sequence runs at **${((100 * single.decode_tps) / copyBoundTps).toFixed(0)}%** of it (goal 70%). ` +
      `Counting only the copy's reads (${(copyGBs / 2).toFixed(1)} GB/s), as earlier runs of this bench did: ${boundTps.toFixed(2)} tokens/s, ${((100 * single.decode_tps) / boundTps).toFixed(0)}%. ` +
      `Against the read bandwidth on ${threads} threads, ${readGBs.toFixed(1)} GB/s (the tightest): ${readBoundTps.toFixed(2)} tokens/s, ${((100 * single.decode_tps) / readBoundTps).toFixed(0)}%.`,
    `- Batch of ${BATCH} vs one sequence: ${(batch.decode_tps / single.decode_tps).toFixed(1)}x the tokens/s (goal 8x); one sequence vs today's code: ${(single.decode_tps / oldTps).toFixed(1)}x.`,
    `- Same greedy tokens as today's code (single sequence): ${same ? "yes" : "NO"}.`,
    "",
    "PyTorch in the same run (bench/torch_generate.py: reference/qwen3_minimal.py's model with a KV-cache step, /usr/bin/python3, " +
      `torch ${torch1?.torch ?? "?"}, ${threads} threads), the same checkpoint, prompt, steering and batch:`,
    "",
    markdownTable(
      ["sequences", "PyTorch dtype", "PyTorch decode tokens/s", "jacsteer decode tokens/s", "jacsteer / PyTorch"],
      [
        [1, "float32", torch1, single.decode_tps],
        [BATCH, "float32", torchBatch, batch.decode_tps],
        [1, "bfloat16", torch1bf, single.decode_tps],
      ].map(([count, dtype, t, ours]) => {
        const tr = t as TorchRun | null;
        return [String(count), String(dtype), tr ? tr.decode_tps.toFixed(2) : "not run", (ours as number).toFixed(2), tr ? `${((ours as number) / tr.decode_tps).toFixed(2)}x` : "-"];
      }),
    ),
    "",
    `- Greedy tokens of the single sequence vs PyTorch float32: ${torch1 ? (agree(torch1.tokens) === -1 ? "all equal" : `equal up to token ${agree(torch1.tokens)} (random weights: near-tied logits can differ in float32 rounding)`) : "not run"}.`,
    "",
    "How a forward product C = A W^T reaches a BF16 weight (assembly/matmul.ts; bitwise the same C on every path), one thread, ms per product: the stored rows read directly (gemmDirectBt), f32 panels packed per product (packPanels + gemmPacked), BF16 panels packed per product (packPanelsBf16 + gemmPackedBf16), BF16 panels packed once (resident weights of the experiments' forward):",
    "",
    markdownTable(
      ["M", "weight [N, K]", "direct", "f32 pack + gemm", "BF16 pack + gemm", "BF16 prepacked"],
      crossover.map((r) => [String(r.m), r.shape, r.direct_ms.toFixed(3), r.packed_ms.toFixed(3), r.bf16_pack_ms.toFixed(3), r.bf16_prepacked_ms.toFixed(3)]),
    ),
    "",
    "gemmSlice reads a streamed weight directly for slices of at most 2 rows (assembly/matmul.ts DIRECT_MAX_M), packs BF16 panels above that; resident BF16 weights of the experiments' forward are prepacked.",
    "",
    "Regenerate with `npm run build && node dist/bench/make-checkpoint.js 0.6b && node --experimental-wasm-relaxed-simd dist/bench/generate.js`.",
    "",
  ].join("\n");
  writeFileSync(join(out, "generate.md"), md);
  process.stdout.write(md);
}

interface TorchRun {
  load_s: number;
  prefill_s: number;
  decode_tps: number;
  tokens: number[];
  torch: string;
  threads: number;
  dtype: string;
}

/**
 * One thread, a random BF16 weight, best of 5 rounds per M, the ways a forward product C = A W^T can
 * reach it: gemmDirectBt (stored rows widened in registers), packPanels + gemmPacked (f32 panels, how
 * every product packed before BF16 panels), packPanelsBf16 + gemmPackedBf16 (what gemmSlice does for
 * a streamed BF16 weight above DIRECT_MAX_M rows), and gemmPackedBf16 alone (resident weights,
 * packed at load). All four give bitwise the same C (test/kernels/gemm-direct.test.ts).
 */
interface Crossover { m: number; shape: string; direct_ms: number; packed_ms: number; bf16_pack_ms: number; bf16_prepacked_ms: number }
function smallMCrossover(rt: Runtime, d: number, I: number): Crossover[] {
  const out: Crossover[] = [];
  for (const [N, K] of [[I, d], [d, I]] as const) {
    const mark = rt.heap.mark();
    const w = rt.heap.alloc(N * K * 2);
    const raw = new Uint16Array(rt.memory.buffer, w, N * K);
    for (let i = 0; i < raw.length; i++) raw[i] = 0x3c00 + ((i * 2654435761) >>> 24) - 128; // bf16 values around 0.0078
    const a = rt.heap.allocF32(24 * K), c = rt.heap.allocF32(24 * N), p = rt.heap.allocF32(packedFloats(N, K));
    const panels = rt.heap.alloc(packedFloats(N, K) * 2);
    rt.k.packPanelsBf16(w, 0, K, 0, N, K, panels);
    rt.heap.f32(a, 24 * K).fill(0.5);
    const BF16_BT = 1 << 1;
    for (const m of [1, 2, 3, 4, 8, 24]) {
      const time = (f: () => void) => {
        let best = Infinity;
        for (let r = 0; r < 5; r++) {
          const t = performance.now();
          for (let i = 0; i < 4; i++) f();
          best = Math.min(best, (performance.now() - t) / 4);
        }
        return best;
      };
      const direct_ms = time(() => rt.k.gemmDirectBt(a, K, w, BF16_BT, K, 0, c, N, m, N, K, 0));
      const packed_ms = time(() => {
        rt.k.packPanels(w, BF16_BT, K, 0, N, K, p);
        rt.k.gemmPacked(a, K, p, c, N, m, N, K, 0);
      });
      const bf16_pack_ms = time(() => {
        rt.k.packPanelsBf16(w, 0, K, 0, N, K, p);
        rt.k.gemmPackedBf16(a, K, p, c, N, m, N, K, 0);
      });
      const bf16_prepacked_ms = time(() => rt.k.gemmPackedBf16(a, K, panels, c, N, m, N, K, 0));
      out.push({ m, shape: `[${N}, ${K}]`, direct_ms, packed_ms, bf16_pack_ms, bf16_prepacked_ms });
    }
    rt.heap.release(mark);
  }
  return out;
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
