// `jacsteer verify` against references that state only part of the run (a user's own PyTorch script:
// vectors, singular values, layers), and reference/convert_pt.py, which turns the research line's
// `.pt` outputs into vector files. The PyTorch part runs the seed's procedure (power_iteration.py,
// float64) on the bundled model, saves its result the ways research scripts do (a dict with V as
// columns, eigh's ascending eigenpairs, a bare tensor), converts each back and verifies jacsteer's run
// against it; a sigma pushed out of tolerance must still FAIL, another layer still MISMATCH.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encodeVectorFile } from "../../src/io/vector-file.js";
import { readVectorSet } from "../../src/cli/verify.js";
import { jacsteer } from "../helpers/cli.js";
import { describeTorch, PYTHON, runPython } from "../helpers/torch.js";

let tmp = "";
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), "jacsteer-partial-"));
});
afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

const read = (file: string) => readVectorSet(file, "vector file");

/** stderr lines that are warnings */
const warnings = (stderr: string) => stderr.split("\n").filter((l) => /warning/i.test(l));

describe("jacsteer verify with a partial reference (CLI, synthetic files)", () => {
  const d = 6;
  const vectors = [0, 1, 2].map((i) => Float32Array.from({ length: d }, (_, k) => (k === i ? 1 : 0)));
  const full = { model_config: "[6,12,2,2,1,3,20]", source_layer: "0", target_layer: "1", positions: "4", tokens: "[[1,2,3,4]]", at_sha256: "" };
  const write = (name: string, sigmas: number[], metadata: Record<string, string>) => {
    const f = join(tmp, name);
    writeFileSync(f, encodeVectorFile({ vectors, singularValues: sigmas, metadata }));
    return f;
  };

  it("PASS with one warning line naming what was not checked; the flags fill the identity in", () => {
    const ours = write("ours.safetensors", [5, 3, 1], full);
    const ref = write("ref.safetensors", [5, 3, 1], { source_layer: "0", target_layer: "1", dtype: "float64" });
    const r = jacsteer(["verify", "--result", ours, "--reference", ref]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^PASS: 3 singular values and vectors agree/m);
    expect(warnings(r.stderr)).toEqual(["jacsteer: warning: not checked: model_config, positions, tokens, at_sha256 (absent from the reference); the numbers are compared assuming the runs agree there"]);
    const r2 = jacsteer(["verify", "--result", ours, "--reference", ref, "--positions", "4", "--tokens", "1,2,3,4"]);
    expect(r2.code).toBe(0);
    expect(warnings(r2.stderr)).toEqual(["jacsteer: warning: not checked: model_config, at_sha256 (absent from the reference); the numbers are compared assuming the runs agree there"]);
  });

  it("the exit status comes from the numbers; what the flags give must agree with the result", () => {
    const ours = write("ours2.safetensors", [5, 3, 1], full);
    const off = write("off.safetensors", [5, 3.01, 1], { source_layer: "0", target_layer: "1", dtype: "float64" });
    const bad = jacsteer(["verify", "--result", ours, "--reference", off]);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(/^FAIL: vector 1 \(sigma\)/m);
    const ref = write("ref2.safetensors", [5, 3, 1], { dtype: "float64" });
    const other = jacsteer(["verify", "--result", ours, "--reference", ref, "--layers", "0,1", "--tokens", "9,9,9,9"]);
    expect(other.code).toBe(1);
    expect(other.stdout).toMatch(/tokens: ours \[\[1,2,3,4\]\] \| reference \[\[9,9,9,9\]\]/);
    expect(other.stdout).toMatch(/^MISMATCH: the runs differ in tokens; numbers not compared/m);
  });

  it("a flag that contradicts the reference file is a usage error (one line, exit 1)", () => {
    const ours = write("ours3.safetensors", [5, 3, 1], full);
    const ref = write("ref3.safetensors", [5, 3, 1], { source_layer: "0", target_layer: "1" });
    const r = jacsteer(["verify", "--result", ours, "--reference", ref, "--layers", "0,2"]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toMatch(/^jacsteer: error: --layers gives target_layer 2, but .*ref3\.safetensors states target_layer 1$/);
    const bad = jacsteer(["verify", "--result", ours, "--reference", ref, "--layers", "3"]);
    expect(bad.stderr.trim()).toMatch(/^jacsteer: error: --layers 3: expected S,T/);
  });
});

// ------------------------------------------------------------------------------------------------

const MODEL = "models/tiny";
const TOKENS = Array.from(Buffer.from("The cat sat")).join(",");
const RUN = ["--tokens", TOKENS, "--source-layer", "1", "--target-layer", "3", "--num-vectors", "4", "--max-iters", "400"];

function convert(args: string[]) {
  const r = spawnSync(PYTHON, ["reference/convert_pt.py", ...args], { encoding: "utf8", timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describeTorch("reference/convert_pt.py and verify on the bundled model", () => {
  let ours = "";
  beforeAll(() => {
    const ref = join(tmp, "ref64.safetensors");
    runPython(["reference/power_iteration.py", "--model", MODEL, ...RUN, "--tol", "1e-9", "--dtype", "float64", "--threads", "1", "--out", ref]);
    ours = join(tmp, "ours.safetensors");
    const r = jacsteer(["power-iter", "--model", MODEL, ...RUN, "--tol", "1e-7", "--out", ours]);
    expect(r.code, r.stderr).toBe(0);
    // What research scripts save: no metadata, vectors as columns, eigh's ascending eigenpairs, a bare tensor.
    runPython(["-c", `
import sys, torch
sys.path.insert(0, "reference")
from safetensors_io import load_file
t = load_file(${JSON.stringify(ref)})
V, S = t["vectors"].to(torch.float64), t["singular_values"].to(torch.float64)
d = ${JSON.stringify(tmp)}
torch.save({"V": V.t().contiguous(), "S": S, "note": torch.tensor(1)}, d + "/dict.pt")
torch.save({"eigenvectors": V.flip(0).t().contiguous(), "eigenvalues": (S * S).flip(0)}, d + "/eigh.pt")
torch.save(V.t().contiguous(), d + "/cols.pt")
torch.save(V.clone(), d + "/rows.pt")
S2 = S.clone(); S2[1] *= 1.02
torch.save({"vectors": V, "singular_values": S2}, d + "/wrong.pt")
torch.save((V.float(), S.float()), d + "/pair.pt")
`]);
  }, 300_000);

  const identity = ["--source-layer", "1", "--target-layer", "3"];

  it("a dict {V: [d, n], S}: converted with the layers only, verify PASSES and names what it did not check", () => {
    const out = join(tmp, "dict.safetensors");
    const c = convert([join(tmp, "dict.pt"), "--model", MODEL, ...identity, "--out", out]);
    expect(c.code, c.stderr).toBe(0);
    const set = read(out);
    expect(set.metadata).toMatchObject({ format: "jacsteer.vectors.v1", source_layer: "1", target_layer: "3", dtype: "float64", method: "pt-import" });
    expect(set.metadata.tokens).toBeUndefined();
    const r = jacsteer(["verify", "--result", ours, "--reference", out]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^PASS: /m);
    expect(warnings(r.stderr)).toEqual(["jacsteer: warning: not checked: model_config, positions, tokens, at_sha256 (absent from the reference); the numbers are compared assuming the runs agree there"]);
    // the identity given on verify's command line instead
    const r2 = jacsteer(["verify", "--result", ours, "--reference", out, "--positions", "4", "--tokens", TOKENS]);
    expect(r2.code).toBe(0);
    expect(warnings(r2.stderr)).toEqual(["jacsteer: warning: not checked: model_config, at_sha256 (absent from the reference); the numbers are compared assuming the runs agree there"]);
  });

  it("the identity as converter flags; eigh's ascending eigenvalues with --squared; a (vectors, sigmas) pair", () => {
    const out = join(tmp, "eigh.safetensors");
    const c = convert([join(tmp, "eigh.pt"), "--hidden", "64", "--vectors-key", "eigenvectors", "--sigmas-key", "eigenvalues", "--squared", ...identity, "--positions", "4", "--tokens", TOKENS, "--out", out]);
    expect(c.code, c.stderr).toBe(0);
    expect(c.stderr).toMatch(/descending order/);
    const r = jacsteer(["verify", "--result", ours, "--reference", out]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(warnings(r.stderr)).toEqual(["jacsteer: warning: not checked: model_config, at_sha256 (absent from the reference); the numbers are compared assuming the runs agree there"]);
    const pair = join(tmp, "pair.safetensors");
    expect(convert([join(tmp, "pair.pt"), "--hidden", "64", ...identity, "--dtype", "float32", "--out", pair]).code).toBe(0);
    expect(jacsteer(["verify", "--result", ours, "--reference", pair]).code).toBe(0);
  });

  it("[d, n] and [n, d] tensors give the same vectors (orientation from the hidden size)", () => {
    const rows = join(tmp, "rows.safetensors"), cols = join(tmp, "cols.safetensors");
    expect(convert([join(tmp, "rows.pt"), "--hidden", "64", "--out", rows]).code).toBe(0);
    expect(convert([join(tmp, "cols.pt"), "--model", MODEL, "--out", cols]).code).toBe(0);
    const a = read(rows), b = read(cols);
    expect(a.vectors.length).toBe(4);
    expect(b.vectors.map((v) => Array.from(v))).toEqual(a.vectors.map((v) => Array.from(v)));
    expect(a.singularValues).toBeUndefined();
    // usable by compare straight away: the same subspace as jacsteer's
    const cmp = jacsteer(["compare", ours, cols, "--json"]);
    expect(cmp.code).toBe(0);
    expect(Math.max(...(JSON.parse(cmp.stdout).principal_angles_deg as number[]))).toBeLessThan(0.01);
  });

  it("a partial reference still FAILs on a sigma out of tolerance and MISMATCHes another layer", () => {
    const wrong = join(tmp, "wrong.safetensors");
    expect(convert([join(tmp, "wrong.pt"), "--hidden", "64", ...identity, "--out", wrong]).code).toBe(0);
    const r = jacsteer(["verify", "--result", ours, "--reference", wrong]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^FAIL: vector 1 \(sigma\)/m);
    const other = join(tmp, "other.safetensors");
    expect(convert([join(tmp, "dict.pt"), "--hidden", "64", "--source-layer", "1", "--target-layer", "2", "--out", other]).code).toBe(0);
    const m = jacsteer(["verify", "--result", ours, "--reference", other]);
    expect(m.code).toBe(1);
    expect(m.stdout).toMatch(/^MISMATCH: the runs differ in target_layer; numbers not compared/m);
  });

  it("bad input: one line naming the file or flag, exit 1, no output file", () => {
    runPython(["-c", `
import torch
d = ${JSON.stringify(tmp)}
torch.save(torch.zeros(5, 5), d + "/square.pt")
torch.save(torch.zeros(3, 7), d + "/nodim.pt")
torch.save({"weights": torch.zeros(2, 5)}, d + "/nokey.pt")
torch.save({"vectors": torch.zeros(2, 5), "singular_values": torch.ones(3)}, d + "/count.pt")
torch.save({"vectors": torch.zeros(2, 5), "singular_values": torch.tensor([1.0, -1.0])}, d + "/neg.pt")
`]);
    writeFileSync(join(tmp, "text.pt"), "not a torch file");
    const cases: [string[], RegExp][] = [
      [["square.pt", "--hidden", "5"], /square\.pt: shape \[5, 5\] is square: cannot tell rows from columns; give --layout rows or --layout columns/],
      [["nodim.pt", "--hidden", "5"], /nodim\.pt: shape \[3, 7\]: neither dimension is the hidden size 5/],
      [["nodim.pt"], /nodim\.pt: shape \[3, 7\]: give the hidden size/],
      [["nokey.pt", "--hidden", "5"], /nokey\.pt: none of the keys vectors, .* \(the dict has weights\); name the vectors with --vectors-key/],
      [["count.pt", "--hidden", "5"], /count\.pt: 3 singular values for 2 vectors/],
      [["neg.pt", "--hidden", "5"], /neg\.pt: a singular value is negative/],
      [["text.pt", "--hidden", "5"], /text\.pt: cannot be read as a torch\.save file of tensors/],
      [["missing.pt", "--hidden", "5"], /missing\.pt: file does not exist/],
      [["square.pt", "--hidden", "5", "--layout", "rows", "--positions", "0"], /--positions 0: expected K/],
    ];
    for (const [[file, ...flags], pattern] of cases) {
      const out = join(tmp, `bad-${file}.safetensors`);
      const r = convert([join(tmp, file), ...flags, "--out", out]);
      expect(r.code, r.stderr).toBe(1);
      const lines = r.stderr.trim().split("\n");
      expect(lines.length, r.stderr).toBe(1);
      expect(lines[0]).toMatch(/^convert_pt\.py: error: /);
      expect(lines[0]).toMatch(pattern);
      expect(existsSync(out)).toBe(false);
    }
    // --layout resolves the square case
    expect(convert([join(tmp, "square.pt"), "--hidden", "5", "--layout", "columns", "--out", join(tmp, "sq.safetensors")]).code).toBe(0);
  });
});
