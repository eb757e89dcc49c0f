// `jacsteer atlas`: a pair's view of the span engine against an engine built for the pair (bitwise),
// a pair's vectors against `power-iter` and its KL against `kl` for the same pair (bitwise: the atlas
// shares work, it does not change the numbers), threads, resuming, refusing another run's pair
// files, bad inputs. Needs the built CLI (dist/).
import { existsSync, readFileSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { makeTempDir } from "../helpers/checkpoints.js";
import { randn, rng } from "../helpers/random.js";
import { BUNDLED_TINY, jacsteer } from "../generation/fixtures.js";
import { openCheckpoint } from "../../src/node/checkpoint.js";
import { createNodeRuntime } from "../../src/node/runtime.js";
import { SteeringEngine } from "../../src/engine/steering-engine.js";
import { atlasPairs } from "../../src/atlas/atlas.js";
import type { AtlasFile } from "../../src/cli/atlas.js";
import { readVectorSet } from "../../src/cli/verify.js";

const work = makeTempDir("jacsteer-atlas-");
afterAll(() => rmSync(work, { recursive: true, force: true }));

const TOKENS = ["72,101,108,108,111,44,32,119,111,114,108,100", "84,104,101,32,99,97,116,32,115,97,116"];
const PROMPT_ARGS = TOKENS.flatMap((t) => ["--tokens", t]);
const RUN = ["--model", BUNDLED_TINY, ...PROMPT_ARGS, "--num-vectors", "3", "--positions", "3"];

const readSet = (file: string) => readVectorSet(file, "vector file");

describe("atlas pairs", () => {
  it("lists S < T, S-major", () => {
    expect(atlasPairs([0, 1, 2], [1, 2])).toEqual([{ source: 0, target: 1 }, { source: 0, target: 2 }, { source: 1, target: 2 }]);
  });

  it("a view of the span engine gives bitwise the products of an engine built for the pair", async () => {
    const ckpt = openCheckpoint(BUNDLED_TINY);
    const prompts = TOKENS.map((t) => t.split(",").map(Number));
    const V = [randn(rng(5), 64), randn(rng(6), 64)].map((v) => Float64Array.from(v));
    const rtSpan = await createNodeRuntime();
    const span = await SteeringEngine.create(rtSpan, ckpt.config, ckpt.tensors, prompts, { sourceLayer: 0, targetLayer: 3, positions: 3 });
    for (const [S, T] of [[0, 3], [1, 2], [1, 3], [2, 3], [0, 1]]) {
      const rt = await createNodeRuntime();
      const own = await SteeringEngine.create(rt, ckpt.config, ckpt.tensors, prompts, { sourceLayer: S, targetLayer: T, positions: 3 });
      const view = span.restrict(S, T);
      expect(await view.normalProducts(V), `S ${S} T ${T}`).toEqual(await own.normalProducts(V));
      expect(view.targets()).toEqual(own.targets());
      await view.close(); // leaves the span's threads alone
      await own.close();
    }
    expect(() => span.restrict(2, 2)).toThrow(/not inside/);
    await span.close();
    ckpt.close();
  }, 120_000);
});

describe("help of kl, atlas, stability", () => {
  it("help CMD = CMD --help; listed in jacsteer --help; no path outside the repository", () => {
    const top = jacsteer(["--help"]).stdout;
    for (const cmd of ["kl", "atlas", "stability"]) {
      const a = jacsteer(["help", cmd]), b = jacsteer([cmd, "--help"]);
      expect(a.code).toBe(0);
      expect(a.stdout).toBe(b.stdout);
      expect(a.stdout).toMatch(/--json/);
      expect(a.stdout).toMatch(/--threads/);
      expect(a.stdout).not.toMatch(/CONTRACT\.md|\.\.\/shared/);
      expect(top).toMatch(new RegExp(`\\n  ${cmd} `));
    }
  }, 240_000);
});

describe("jacsteer atlas", () => {
  const dir = join(work, "run");
  const args = ["atlas", ...RUN, "--sources", "0..2", "--targets", "2,3", "--out-dir", dir, "--threads", "2", "--solver", "lanczos"];
  const pairs = ["pair-S00-T02", "pair-S00-T03", "pair-S01-T02", "pair-S01-T03", "pair-S02-T03"];

  it("one file per pair and a merged atlas.json; a pair equals power-iter + kl for that pair, bitwise", () => {
    const r = jacsteer([...args, "--json"]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).pairs).toBe(5);
    expect(r.stderr).toMatch(/atlas: pair 5\/5 \(S 2 T 3\).*\| done/);
    for (const p of pairs) expect(existsSync(join(dir, `${p}.safetensors`))).toBe(true);
    const merged: AtlasFile = JSON.parse(readFileSync(join(dir, "atlas.json"), "utf8"));
    expect(merged.complete).toBe(true);
    expect(merged.pairs.map((p) => [p.source, p.target])).toEqual([[0, 2], [0, 3], [1, 2], [1, 3], [2, 3]]);

    // the same pair on its own: power-iter (block Lanczos, same tolerance and seed), then kl
    const pi = join(work, "pi.safetensors");
    const p = jacsteer(["power-iter", ...RUN, "--source-layer", "1", "--target-layer", "3", "--tol", "1e-2", "--out", pi, "--quiet"]);
    expect(p.code, p.stderr).toBe(0);
    const atlasSet = readSet(join(dir, "pair-S01-T03.safetensors"));
    const own = readSet(pi);
    expect(atlasSet.vectors).toEqual(own.vectors);
    expect(atlasSet.singularValues).toEqual(own.singularValues);
    const k = jacsteer(["kl", "--model", BUNDLED_TINY, ...PROMPT_ARGS, "--vectors", pi, "--json", "--quiet"]);
    expect(k.code, k.stderr).toBe(0);
    const klSummary = JSON.parse(k.stdout).summary.map(({ label: _label, ...rest }: Record<string, unknown>) => rest);
    const pair = merged.pairs.find((x) => x.source === 1 && x.target === 3)!;
    expect(pair.kl).toEqual(klSummary);
    expect(pair.max_kl).toBe(Math.max(...pair.kl.map((x) => x.max_kl)));
    expect(pair.top_vector_kl).toBe(pair.kl[0].max_kl);
  }, 240_000);

  it("with prompts long enough for blocks smaller than --num-vectors, still bitwise power-iter's (its block size)", () => {
    // 2 x 36 tokens = 72 rows: power-iter's automatic block is ceil(192 / 72) = 3 vectors, not 6.
    const long = Array.from({ length: 2 }, (_, p) => Array.from({ length: 36 }, (_, i) => 32 + ((i * 7 + p * 13) % 90)).join(","));
    const run = ["--model", BUNDLED_TINY, ...long.flatMap((t) => ["--tokens", t]), "--num-vectors", "6", "--positions", "2"];
    const out = join(work, "long");
    const r = jacsteer(["atlas", ...run, "--sources", "1", "--targets", "3", "--out-dir", out, "--solver", "lanczos", "--quiet"]);
    expect(r.code, r.stderr).toBe(0);
    const pi = join(work, "long-pi.safetensors");
    const p = jacsteer(["power-iter", ...run, "--source-layer", "1", "--target-layer", "3", "--tol", "1e-2", "--out", pi, "--quiet"]);
    expect(p.code, p.stderr).toBe(0);
    expect(readSet(join(out, "pair-S01-T03.safetensors")).vectors).toEqual(readSet(pi).vectors);
  }, 120_000);

  it("bitwise the same on 1 thread", () => {
    const one = join(work, "one");
    const r = jacsteer(["atlas", ...RUN, "--sources", "1", "--targets", "3", "--out-dir", one, "--threads", "1", "--quiet", "--solver", "lanczos"]);
    expect(r.code, r.stderr).toBe(0);
    expect(readSet(join(one, "pair-S01-T03.safetensors")).vectors).toEqual(readSet(join(dir, "pair-S01-T03.safetensors")).vectors);
    const a: AtlasFile = JSON.parse(readFileSync(join(one, "atlas.json"), "utf8"));
    const b: AtlasFile = JSON.parse(readFileSync(join(dir, "atlas.json"), "utf8"));
    const strip = (x: AtlasFile["pairs"][number]) => ({ ...x, seconds: null });
    expect(strip(a.pairs[0])).toEqual(strip(b.pairs.find((x) => x.source === 1 && x.target === 3)!));
  }, 120_000);

  it("resumes: finished pairs are read back, the rest computed, the result the same", () => {
    const before: AtlasFile = JSON.parse(readFileSync(join(dir, "atlas.json"), "utf8"));
    const vectorsBefore = pairs.map((p) => readSet(join(dir, `${p}.safetensors`)).vectors);
    unlinkSync(join(dir, "pair-S01-T03.safetensors"));
    unlinkSync(join(dir, "pair-S02-T03.safetensors"));
    const r = jacsteer(args);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/5 pair\(s\) .*, 3 already in /);
    expect(r.stdout).toMatch(/2 computed, 3 read back/);
    expect(pairs.map((p) => readSet(join(dir, `${p}.safetensors`)).vectors)).toEqual(vectorsBefore);
    const after: AtlasFile = JSON.parse(readFileSync(join(dir, "atlas.json"), "utf8"));
    const strip = (f: AtlasFile) => f.pairs.map((x) => ({ ...x, seconds: null }));
    expect(strip(after)).toEqual(strip(before));
  }, 240_000);

  it("refuses a pair file from another run, naming the file and what differs", () => {
    expectInputErrorDir(["atlas", ...RUN, "--sources", "0..2", "--targets", "2,3", "--out-dir", dir, "--seed", "1"], /pair-S00-T02\.safetensors is from another atlas run: seed differs/);
  }, 120_000);

  it("bad input: one line naming the flag, exit 1", () => {
    const out = join(work, "bad");
    expectInputErrorDir(["atlas", ...RUN, "--sources", "2..1", "--out-dir", out], /--sources 2\.\.1: the range is empty/);
    expectInputErrorDir(["atlas", ...RUN, "--targets", "9", "--out-dir", out], /--targets 9: layer 9 is outside 1\.\.3/);
    expectInputErrorDir(["atlas", ...RUN, "--sources", "3", "--targets", "1..2", "--out-dir", out], /--sources 3: layer 3 is outside 0\.\.2/);
    expectInputErrorDir(["atlas", ...RUN, "--sources", "2", "--targets", "1..2", "--out-dir", out], /no pair with S < T/);
    expectInputErrorDir(["atlas", ...RUN], /--out-dir DIR is required/);
    expectInputErrorDir(["atlas", ...RUN, "--solver", "svd", "--out-dir", out], /--solver svd: expected auto, lanczos or jacobian/);
    const file = join(work, "a-file");
    writeFileSync(file, "x");
    expectInputErrorDir(["atlas", ...RUN, "--out-dir", file], /--out-dir .*a-file: exists and is not a directory/);
    expect(existsSync(out)).toBe(false);
  }, 120_000);
});

/** The bad-input contract for a command without --out: exit 1, one error line, last, no stack. */
function expectInputErrorDir(args: string[], pattern: RegExp): void {
  const r = jacsteer(args);
  expect(r.code, r.stderr).toBe(1);
  const lines = r.stderr.trim().split("\n");
  expect(lines.filter((l) => /error/i.test(l)).length, r.stderr).toBe(1);
  expect(lines.at(-1)).toMatch(/^jacsteer: error: /);
  expect(lines.at(-1)).toMatch(pattern);
  expect(r.stderr).not.toMatch(/\n\s+at /);
}
