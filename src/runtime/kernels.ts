// Typed view of the kernel module's exports, and the choice between its two builds.
// Pointers are byte offsets into the shared memory; sizes are element counts.

export interface KernelExports {
  heapBase(): number;
  isRelaxedBuild(): number;
  /** Rows up to which gemmSlice reads a stored PACK_BT weight directly, never packing (assembly/matmul.ts). */
  directMaxRows(): number;
  // elementwise.ts
  fill(dst: number, n: number, value: number): void;
  copy(dst: number, src: number, n: number): void;
  add(a: number, b: number, out: number, n: number): void;
  sub(a: number, b: number, out: number, n: number): void;
  scale(x: number, alpha: number, out: number, n: number): void;
  axpy(alpha: number, x: number, y: number, n: number): void;
  dot(a: number, b: number, n: number): number;
  sumSquares(x: number, n: number): number;
  addRowVector(x: number, v: number, out: number, rows: number, cols: number): void;
  sumRows(x: number, out: number, rows: number, cols: number): void;
  // matmul.ts, rmsnorm.ts, rope.ts, silu.ts, attention.ts: typed wrappers in src/kernels/ (shapes documented there).
  [name: string]: (...args: number[]) => number | void;
}

export type KernelBuild = "relaxed-simd" | "simd";

/**
 * Pick the build: relaxed SIMD (fused multiply-add, about 1.2x on products) where the engine
 * validates it, plain SIMD otherwise. On Node 20 relaxed SIMD needs `--experimental-wasm-relaxed-simd`
 * (see src/node/relaxed-simd.ts); newer engines have it on by default.
 */
export function chooseKernelBuild(relaxed: Uint8Array<ArrayBuffer>, simd: Uint8Array<ArrayBuffer>, prefer?: KernelBuild): { build: KernelBuild; bytes: Uint8Array<ArrayBuffer> } {
  if (prefer === "simd") return { build: "simd", bytes: simd };
  if (WebAssembly.validate(relaxed)) return { build: "relaxed-simd", bytes: relaxed };
  if (prefer === "relaxed-simd") throw new Error("relaxed SIMD requested but this WebAssembly engine does not support it");
  if (!WebAssembly.validate(simd)) throw new Error("this WebAssembly engine supports neither SIMD128 nor relaxed SIMD");
  return { build: "simd", bytes: simd };
}

export async function instantiateKernels(module: WebAssembly.Module, memory: WebAssembly.Memory): Promise<KernelExports> {
  const instance = await WebAssembly.instantiate(module, {
    env: {
      memory,
      abort(_msg: number, _file: number, line: number, col: number) {
        throw new Error(`kernel abort at ${line}:${col}`);
      },
    },
  });
  return instance.exports as unknown as KernelExports;
}
