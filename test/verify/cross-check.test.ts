// The cross-check CI runs (issue 4): the PyTorch reference (reference/power_iteration.py, Debian
// torch on CPU) on the bundled model and on test checkpoints, in float64 and float32 (and bfloat16 on
// the bundled model); jacsteer's result must verify against each, and deliberately wrong references
// must fail.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect } from "vitest";
import { writeTempCheckpoint, SMALL_SHAPE, type TempCheckpoint } from "../helpers/checkpoints.js";
import { itWithTorch, runPython } from "../helpers/torch.js";
import { decodeVectorFile, encodeVectorFile } from "../../src/io/vector-file.js";
import { openSafetensorsFile } from "../../src/node/safetensors-file.js";

import { jacsteer as run } from "../helpers/cli.js";
const jacsteer = (args: string[]) => {
  const r = run(args);
  return { status: r.code, stdout: r.stdout, stderr: r.stderr };
};

interface Case {
  name: string;
  model: () => string;
  args: string[];
}

describe("cross-check against the PyTorch reference", () => {
  let tmp = "";
  let gqa4: TempCheckpoint;
  beforeAll(() => {
    tmp = mkdtempSync(join(tmpdir(), "jacsteer-xcheck-"));
    gqa4 = writeTempCheckpoint({ ...SMALL_SHAPE, hidden_size: 33, num_key_value_heads: 1, head_dim: 10, num_hidden_layers: 3 }, { dtype: "BF16", seed: 5, shards: 2, tied: false });
  });
  afterAll(() => {
    gqa4?.remove();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  const cases: Case[] = [
    // The bundled model (default --model), prompt "The cat" as its byte ids.
    { name: "bundled tiny model", model: () => "models/tiny", args: ["--tokens", Array.from(Buffer.from("The cat sat")).join(","), "--source-layer", "1", "--target-layer", "3"] },
    { name: "GQA 4, odd hidden, BF16 shards, 2 prompts", model: () => gqa4.dir, args: ["--tokens", "1,2,3,4,5,6", "--tokens", "7,8,9,10,11", "--source-layer", "0", "--target-layer", "2", "--positions", "3"] },
  ];
  const common = ["--num-vectors", "4", "--max-iters", "400"];

  for (const c of cases) {
    // bfloat16 is what a GPU run usually is; torch runs it on the CPU too (slowly: the bundled model only).
    const dtypes = c === cases[0] ? (["float64", "float32", "bfloat16"] as const) : (["float64", "float32"] as const);
    for (const dtype of dtypes) {
      itWithTorch(`${c.name}, reference in ${dtype}: jacsteer verify passes`, () => {
        const ref = join(tmp, `${c.name.replace(/\W+/g, "_")}-${dtype}.safetensors`);
        runPython(["reference/power_iteration.py", "--model", c.model(), ...c.args, ...common, "--tol", "1e-9", "--dtype", dtype, "--threads", "1", "--out", ref]);
        const r = jacsteer(["power-iter", "--model", c.model(), ...c.args, ...common, "--tol", "1e-7", "--verify-against", ref]);
        process.stdout.write(`\n--- ${c.name}, reference ${dtype}\n${r.stdout}`);
        expect(r.status, r.stdout + r.stderr).toBe(0);
        expect(r.stdout).toMatch(/^PASS: /m);
      });
    }
  }

  itWithTorch("deliberately wrong references fail: a rotated vector, a scaled sigma; another layer is a MISMATCH", () => {
    const c = cases[0];
    const refFile = join(tmp, "good.safetensors"), ours = join(tmp, "ours.safetensors");
    runPython(["reference/power_iteration.py", "--model", c.model(), ...c.args, ...common, "--tol", "1e-9", "--dtype", "float64", "--threads", "1", "--out", refFile]);
    expect(jacsteer(["power-iter", "--model", c.model(), ...c.args, ...common, "--tol", "1e-7", "--out", ours]).status).toBe(0);
    const reader = openSafetensorsFile(refFile);
    const good = decodeVectorFile(reader, refFile);
    reader.close?.();
    const variant = (name: string, edit: (s: typeof good) => void) => {
      const s = { ...good, vectors: good.vectors.map((v) => v.slice()), singularValues: good.singularValues!.slice(), metadata: { ...good.metadata } };
      edit(s);
      const f = join(tmp, `${name}.safetensors`);
      writeFileSync(f, encodeVectorFile(s));
      return jacsteer(["verify", "--result", ours, "--reference", f]);
    };
    // Rotate vector 0 by 3 degrees toward vector 3 (well separated: the bound is far below sin 3 deg).
    const rotated = variant("rotated", (s) => {
      const t = (3 * Math.PI) / 180;
      s.vectors[0] = s.vectors[0].map((x, i) => Math.cos(t) * x + Math.sin(t) * s.vectors[3][i]);
    });
    expect(rotated.status, rotated.stdout).toBe(1);
    expect(rotated.stdout).toMatch(/^FAIL: vector 0 \(direction\)/m);
    const scaled = variant("scaled", (s) => (s.singularValues![1] *= 1.02));
    expect(scaled.status, scaled.stdout).toBe(1);
    expect(scaled.stdout).toMatch(/^FAIL: vector 1 \(sigma\)/m);
    const other = variant("other-layer", (s) => (s.metadata.target_layer = "2"));
    expect(other.status).toBe(1);
    expect(other.stdout).toMatch(/MISMATCH/);
    expect(other.stdout).toMatch(/target_layer: ours 3 \| reference 2/);
    expect(variant("same", () => {}).status).toBe(0);
  });
});
