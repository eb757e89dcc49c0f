// jacsteer as a library: the entry points export what the CLI uses, and nothing outside src/node and
// src/cli imports a Node module (so a browser build can follow).
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";
import * as lib from "../../src/index.js";
import * as nodeLib from "../../src/node/index.js";

function tsFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? tsFiles(p) : p.endsWith(".ts") ? [p] : [];
  });
}

describe("library entry points", () => {
  it("export the building blocks of every command", () => {
    for (const name of ["createRuntime", "grad", "jvp", "Qwen3Model", "SteeringJacobian", "blockPowerIteration", "blockLanczos", "encodeVectorFile", "verifyVectorSets", "loadTokenizer", "parseQwen3Config"]) {
      expect(lib, name).toHaveProperty(name);
    }
    for (const ns of ["melbo", "caa", "compare", "generation", "evaluation", "report", "safetensors", "linalg", "kernels"]) expect(lib, ns).toHaveProperty(ns);
    for (const name of ["createNodeRuntime", "openCheckpoint", "openSafetensorsFile", "loadTokenizerFromDir"]) expect(nodeLib, name).toHaveProperty(name);
  });

  it("nothing under src/ but src/node and src/cli imports a Node module", () => {
    const root = join(process.cwd(), "src");
    const offenders: string[] = [];
    for (const file of tsFiles(root)) {
      const rel = relative(root, file);
      if (rel.startsWith("node/") || rel.startsWith("cli/")) continue;
      const text = readFileSync(file, "utf8");
      for (const m of text.matchAll(/(?:from|import)\s*\(?\s*["']([^"']+)["']/g)) {
        const spec = m[1];
        const isNode = spec.startsWith("node:") || ["fs", "path", "os", "url", "worker_threads", "child_process", "crypto", "v8", "util", "piscina"].includes(spec.split("/")[0]);
        if (isNode) offenders.push(`${rel}: ${spec}`);
        if (spec.startsWith(".") && (spec.includes("/node/") || spec.includes("/cli/"))) offenders.push(`${rel}: ${spec}`);
      }
    }
    expect(offenders).toEqual([]);
  });
});
