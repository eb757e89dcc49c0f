// Node 20 ships relaxed SIMD behind a V8 flag. NODE_OPTIONS and a Worker's execArgv reject it, but
// v8.setFlagsFromString works if called before any module is compiled, and worker threads created
// afterwards inherit it. Newer Node has it on by default; the flag is then harmless.
import v8 from "node:v8";

let done = false;
export function enableRelaxedSimd(): void {
  if (done) return;
  done = true;
  try {
    v8.setFlagsFromString("--experimental-wasm-relaxed-simd");
  } catch {
    // Unknown flag on some future V8: chooseKernelBuild probes with WebAssembly.validate anyway.
  }
}
