// Moving test data in and out of the wasm heap. Use inside rt.heap.scope(() => ...) so buffers are freed.
import type { Runtime } from "../../src/runtime/runtime.js";
import { createNodeRuntime } from "../../src/node/runtime.js";
import type { KernelBuild } from "../../src/runtime/kernels.js";

/** Allocate n f32 values and copy `data` (rounded to f32) into them; n defaults to data.length. */
export function put(rt: Runtime, data: ArrayLike<number>, n = data.length): number {
  const p = rt.heap.allocF32(n);
  rt.heap.f32(p, n).set(data);
  return p;
}

/** Allocate n f32 values, filled with NaN so a kernel that skips an output element is caught. */
export function allocNaN(rt: Runtime, n: number): number {
  const p = rt.heap.allocF32(n);
  rt.heap.f32(p, n).fill(NaN);
  return p;
}

/** A copy of n f32 values at ptr (a copy, so later allocations or kernels cannot change it). */
export function get(rt: Runtime, ptr: number, n: number): Float32Array {
  return rt.heap.f32(ptr, n).slice();
}

/** Both kernel builds: relaxed SIMD (the default here, see test/setup.ts) and plain SIMD. */
export async function bothBuilds(): Promise<Array<[KernelBuild, Runtime]>> {
  const relaxed = await createNodeRuntime();
  const simd = await createNodeRuntime({ prefer: "simd" });
  if (relaxed.k.isRelaxedBuild() !== 1 || simd.k.isRelaxedBuild() !== 0) throw new Error("expected one relaxed and one plain SIMD runtime");
  return [["relaxed-simd", relaxed], ["simd", simd]];
}
