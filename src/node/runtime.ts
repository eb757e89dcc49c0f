// Node entry to the runtime: enables relaxed SIMD, reads the two kernel builds from the package.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { enableRelaxedSimd } from "./relaxed-simd.js";
import { createRuntime, type Runtime } from "../runtime/runtime.js";
import type { KernelBuild } from "../runtime/kernels.js";

/** The package root: two levels above this file both in src/node and in dist/src/node. */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    try {
      readFileSync(join(dir, "package.json"));
      return dir;
    } catch {
      dir = dirname(dir);
    }
  }
  throw new Error("cannot find the jacsteer package root");
}

export function readKernelBinaries(): { relaxed: Uint8Array<ArrayBuffer>; simd: Uint8Array<ArrayBuffer> } {
  const root = packageRoot();
  const read = (f: string) => {
    const p = join(root, "build", f);
    try {
      return new Uint8Array(readFileSync(p));
    } catch {
      throw new Error(`${p}: kernel build missing; run \`npm run build\``);
    }
  };
  return { relaxed: read("kernels-relaxed.wasm"), simd: read("kernels-simd.wasm") };
}

export async function createNodeRuntime(opts: { prefer?: KernelBuild } = {}): Promise<Runtime> {
  enableRelaxedSimd();
  const envPrefer = process.env.JACSTEER_KERNELS as KernelBuild | undefined;
  return createRuntime(readKernelBinaries(), { prefer: opts.prefer ?? envPrefer });
}
