// The runtime in a browser: the two kernel builds fetched over HTTP (Node reads them from the package,
// src/node/runtime.ts) into one shared WebAssembly memory, which Web Worker threads can join
// (src/web/worker-gemm.ts).
import { createRuntime, type Runtime } from "../runtime/runtime.js";
import { createWasmMemory } from "../runtime/heap.js";
import type { KernelBuild } from "../runtime/kernels.js";

export interface WebRuntimeOptions {
  /** Force a kernel build (default: relaxed SIMD where the browser has it, else plain SIMD). */
  prefer?: KernelBuild;
  /**
   * Where kernels-relaxed.wasm and kernels-simd.wasm are (default: beside the bundle that runs this,
   * web/dist/ of the package).
   */
  base?: string | URL;
}

/** A runtime with the kernels fetched from `base` (default: beside the bundle). */
export async function createWebRuntime(opts: WebRuntimeOptions = {}): Promise<Runtime> {
  const fetchBytes = async (name: string): Promise<Uint8Array<ArrayBuffer>> => {
    const url = new URL(name, opts.base ?? import.meta.url);
    const r = await fetch(url);
    if (!r.ok) throw new Error(`${url}: HTTP ${r.status} (the kernel build is missing: run \`npm run build:web\`, or pass the folder holding it as base)`);
    return new Uint8Array(await r.arrayBuffer());
  };
  const [relaxed, simd] = await Promise.all([fetchBytes("kernels-relaxed.wasm"), fetchBytes("kernels-simd.wasm")]);
  return createRuntime({ relaxed, simd }, { prefer: opts.prefer, memory: createWasmMemory() });
}
