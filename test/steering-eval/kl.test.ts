// `jacsteer kl` against a float64 PyTorch computation (test/python/kl_both_signs.py: its own forward
// hook and KL, reference/qwen3_minimal.py in float64) on the bundled tiny model, with a stated
// tolerance and errors injected just outside it; the evaluator's independence of threads and batching
// (bitwise); bad inputs. Needs the built CLI (dist/).
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { makeTempDir } from "../helpers/checkpoints.js";
import { itWithTorch, runPython } from "../helpers/torch.js";
import { randn, rng } from "../helpers/random.js";
import { expectInputError } from "../helpers/cli.js";
import { BUNDLED_TINY, ROOT, jacsteer, writeVectors } from "../generation/fixtures.js";
import { KlEvaluator, klBothSigns, klFromLogProbs, logSoftmaxRows } from "../../src/steering-eval/kl.js";
import { ForwardModel } from "../../src/engine/forward.js";
import { openCheckpoint } from "../../src/node/checkpoint.js";
import { createNodeRuntime } from "../../src/node/runtime.js";
import { createParallelGemm } from "../../src/node/thread-pool.js";
import type { KlRow } from "../../src/steering-eval/kl.js";

const work = makeTempDir("jacsteer-kl-");
afterAll(() => rmSync(work, { recursive: true, force: true }));

const D = 64; // the tiny model's hidden size
const unit = (v: Float32Array) => {
  const n = Math.hypot(...v);
  return v.map((x) => x / n);
};
const VECTORS = [unit(randn(rng(71), D)), unit(randn(rng(72), D))];
const VFILE = writeVectors(join(work, "v.safetensors"), VECTORS, { source_layer: "1" });
const TOKENS = [[72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108, 100], [84, 104, 101, 32, 99, 97, 116, 32, 115, 97, 116]];

/**
 * The stated tolerance: |KL_jacsteer - KL_torch| <= KL_ABS + KL_REL * KL_torch. jacsteer runs the
 * forward in float32 (logits right to ~1e-6 relative on this model), PyTorch in float64; the KL is
 * a sum of p * (difference of log-probabilities), so its error is a few times the logits' error.
 */
const KL_ABS = 2e-6, KL_REL = 1e-4; // measured: 1.1e-5 relative at most (KL 0.2..5 nats)
function klMismatches(ours: number[], ref: number[]): string[] {
  const bad: string[] = [];
  ours.forEach((x, i) => {
    const tol = KL_ABS + KL_REL * Math.abs(ref[i]);
    if (!(Math.abs(x - ref[i]) <= tol)) bad.push(`#${i}: ${x} vs ${ref[i]} (tolerance ${tol.toExponential(2)})`);
  });
  return bad;
}

function torchKl(kind: "absolute" | "residual-fraction", magnitudes: number[], K: number, reverse = false): { kl: number[][][][]; norms: number[] } {
  const inFile = join(work, `torch-in-${Math.random().toString(36).slice(2)}.json`), outFile = inFile.replace("-in-", "-out-");
  writeFileSync(inFile, JSON.stringify({ model: BUNDLED_TINY, layer: 1, tokens: TOKENS, vectors: VECTORS.map((v) => Array.from(v)), magnitudes, kind, K, reverse }));
  runPython([join(ROOT, "test", "python", "kl_both_signs.py"), inFile, outFile]);
  return JSON.parse(readFileSync(outFile, "utf8"));
}

/** The CLI's rows flattened in the reference's order (vector, magnitude, sign +/-, prompt). */
function cliKl(args: string[]): { rows: KlRow[]; flat: number[]; json: Record<string, unknown> } {
  const out = join(work, `rows-${Math.random().toString(36).slice(2)}.json`);
  const r = jacsteer(["kl", "--model", BUNDLED_TINY, ...TOKENS.flatMap((t) => ["--tokens", t.join(",")]), "--vectors", VFILE, ...args, "--out", out, "--json", "--threads", "2"]);
  expect(r.code, r.stderr).toBe(0);
  const file = JSON.parse(readFileSync(out, "utf8")) as { rows: KlRow[] };
  return { rows: file.rows, flat: file.rows.flatMap((x) => x.kl), json: JSON.parse(r.stdout) };
}

describe("jacsteer kl against PyTorch float64 (bundled tiny model)", () => {
  itWithTorch("--scale-frac, last 2 positions: every (vector, fraction, sign, prompt) within tolerance; injected errors fail", () => {
    const { rows, flat, json } = cliKl(["--scale-frac", "0.35,0.7", "--positions", "2"]);
    const ref = torchKl("residual-fraction", [0.35, 0.7], 2);
    const refFlat = ref.kl.flat(3);
    expect(flat.length).toBe(2 * 2 * 2 * 2);
    expect(klMismatches(flat, refFlat)).toEqual([]);
    // the scale applied is the fraction of ||h_1|| at each prompt's last token (float32 there)
    rows.forEach((r) => r.scales.forEach((c, p) => expect(Math.abs(c) / (r.magnitude * ref.norms[p])).toBeCloseTo(1, 5)));
    expect(refFlat.every((x) => x > 1e-4)).toBe(true); // non-trivial KLs, so the relative tolerance bites
    // An error just outside the tolerance, in any one entry, is caught.
    for (const i of [0, 5, 15]) {
      const bumped = flat.slice();
      bumped[i] = refFlat[i] + 1.5 * (KL_ABS + KL_REL * refFlat[i]);
      expect(klMismatches(bumped, refFlat).length).toBe(1);
    }
    // The other direction, KL(unsteered || steered), is not what jacsteer computes: it fails.
    expect(klMismatches(flat, torchKl("residual-fraction", [0.35, 0.7], 2, true).kl.flat(3)).length).toBeGreaterThan(8);
    // the summary: max over the signs of the mean over prompts
    const summary = json.summary as { vector: number; magnitude: number; kl_plus: number; kl_minus: number; max_kl: number; sign: number }[];
    expect(summary.length).toBe(4);
    summary.forEach((s, i) => {
      const plus = ref.kl[s.vector][i % 2][0], minus = ref.kl[s.vector][i % 2][1];
      const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
      expect(s.max_kl).toBe(Math.max(s.kl_plus, s.kl_minus));
      expect(klMismatches([s.kl_plus, s.kl_minus], [mean(plus), mean(minus)])).toEqual([]);
    });
  }, 240_000);

  itWithTorch("--scales (absolute), last position", () => {
    const { flat } = cliKl(["--scales", "3"]);
    const refFlat = torchKl("absolute", [3], 1).kl.flat(3);
    expect(klMismatches(flat, refFlat)).toEqual([]);
  }, 240_000);
});

describe("KL evaluator", () => {
  it("log-softmax and KL against a direct float64 computation", () => {
    const logits = Float32Array.from([1, 2, 3, -1, 0, 0.5]);
    const lp = logSoftmaxRows(logits, 2, 3);
    const direct = (xs: number[]) => xs.map((x) => x - Math.log(xs.reduce((s, y) => s + Math.exp(y), 0)));
    [...direct([1, 2, 3]), ...direct([-1, 0, 0.5])].forEach((x, i) => expect(lp[i]).toBeCloseTo(x, 12));
    const p = direct([1, 2, 3]), q = direct([-1, 0, 0.5]);
    const kl = p.reduce((s, lpi, i) => s + Math.exp(lpi) * (lpi - q[i]), 0);
    expect(klFromLogProbs(lp, lp, 0, 3, 3)).toBeCloseTo(kl, 12);
    expect(klFromLogProbs(lp, lp, 0, 0, 3)).toBe(0);
  });

  it("results are bitwise the same for 1 and 2 threads and any batching", async () => {
    const run = async (threads: number, activationBytes?: number) => {
      const ckpt = openCheckpoint(BUNDLED_TINY);
      const rt = await createNodeRuntime();
      const gemm = await createParallelGemm(rt, threads);
      const model = await ForwardModel.create(rt, ckpt.config, ckpt.tensors, { gemm, fullHead: true });
      try {
        const ev = await KlEvaluator.create(model, TOKENS, { lastK: 2, steerLayers: [0, 1, 2], activationBytes });
        const a = await klBothSigns(ev, 1, VECTORS, { kind: "residual-fraction", values: [0.35] });
        const b = await klBothSigns(ev, 2, VECTORS, { kind: "absolute", values: [2] });
        return [...a.rows, ...b.rows].flatMap((r) => r.kl);
      } finally {
        await model.close();
        ckpt.close();
      }
    };
    const base = await run(1);
    expect(base.every((x) => x > 0)).toBe(true);
    expect(await run(2)).toEqual(base);
    // a budget of about one sequence: every steered sequence in its own batch
    expect(await run(1, 40_000)).toEqual(base);
  }, 120_000);
});

describe("jacsteer kl: bad input", () => {
  const base = ["kl", "--model", BUNDLED_TINY, "--tokens", TOKENS[0].join(",")];
  it("one line naming the flag, exit 1, no output file", () => {
    expectInputError([...base, "--vectors", VFILE, "--scales", "2", "--scale-frac", "0.3"], /--scales and --scale-frac/, ".json");
    expectInputError([...base, "--vectors", VFILE, "--scale-frac", "-0.3"], /--scale-frac -0\.3/, ".json");
    expectInputError([...base, "--vectors", join(work, "missing.safetensors")], /--vectors .*missing\.safetensors/, ".json");
    expectInputError([...base, "--vectors", VFILE, "--positions", "40"], /--positions 40: prompt 1 has only 12 token/, ".json");
    expectInputError([...base], /--vectors FILE\[:ROW\] is required/, ".json");
    expectInputError([...base, "--vectors", VFILE], /--out .*: the file name must end in \.json/, ".txt");
    expect(existsSync(join(work, "out.json"))).toBe(false);
  }, 120_000);
});
