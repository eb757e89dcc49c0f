// Builds the AssemblyScript kernels twice: plain SIMD128 and relaxed SIMD (fused multiply-add).
// The host picks one at run time (src/runtime/kernels.ts): relaxed where WebAssembly.validate accepts it.
// Both import one shared memory ('env.memory', up to 4 GiB) so Piscina workers can compute on it.
import { execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const asc = join(root, "node_modules", "assemblyscript", "bin", "asc.js");
mkdirSync(join(root, "build"), { recursive: true });

const common = [
  "assembly/index.ts",
  "-O3", "--noAssert", "--runtime", "stub",
  "--enable", "simd", "--enable", "threads",
  "--importMemory", "--sharedMemory", "--initialMemory", "1", "--maximumMemory", "65536",
];
const builds = [
  { out: "build/kernels-simd.wasm", extra: [] },
  { out: "build/kernels-relaxed.wasm", extra: ["--enable", "relaxed-simd"] },
];
for (const b of builds) {
  execFileSync(process.execPath, [asc, ...common, ...b.extra, "-o", b.out], { cwd: root, stdio: "inherit" });
}
console.error(`built ${builds.map((b) => b.out).join(", ")}`);
