#!/usr/bin/env node
// Relaxed SIMD must be enabled before any WebAssembly module is compiled (Node 20 keeps it behind a
// V8 flag that NODE_OPTIONS rejects), so the flag is set here, before the CLI is even imported.
import v8 from "node:v8";
try {
  v8.setFlagsFromString("--experimental-wasm-relaxed-simd");
} catch {
  // newer V8: on by default, or the flag is gone; the kernel loader probes either way
}
const { main } = await import("../dist/src/cli/main.js");
process.exitCode = await main(process.argv.slice(2));
