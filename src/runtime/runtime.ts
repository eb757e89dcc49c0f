// A Runtime is what every computation needs: the memory, its allocator and the kernels.
// Platform-neutral: the caller supplies the wasm bytes (src/node/runtime.ts reads them from disk).
import { WasmHeap, createWasmMemory } from "./heap.js";
import { chooseKernelBuild, instantiateKernels, type KernelBuild, type KernelExports } from "./kernels.js";

export interface Runtime {
  readonly memory: WebAssembly.Memory;
  readonly heap: WasmHeap;
  readonly k: KernelExports;
  readonly build: KernelBuild;
  /** The compiled module, so worker threads can instantiate it without compiling again. */
  readonly module: WebAssembly.Module;
}

export interface KernelBinaries {
  relaxed: Uint8Array<ArrayBuffer>;
  simd: Uint8Array<ArrayBuffer>;
}

export async function createRuntime(bin: KernelBinaries, opts: { prefer?: KernelBuild; memory?: WebAssembly.Memory } = {}): Promise<Runtime> {
  const { build, bytes } = chooseKernelBuild(bin.relaxed, bin.simd, opts.prefer);
  const module = await WebAssembly.compile(bytes);
  const memory = opts.memory ?? createWasmMemory();
  const k = await instantiateKernels(module, memory);
  const heap = new WasmHeap(memory, k.heapBase());
  return { memory, heap, k, build, module };
}
