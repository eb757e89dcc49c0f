// Runs the benchmarks: `npm run bench` (all but `web`, which needs Chromium), or `node --experimental-wasm-relaxed-simd dist/bench/run.js matmul`
// for some of them by name. Each bench writes bench/results/<name>.json and <name>.md.
import { enableRelaxedSimd } from "../src/node/relaxed-simd.js";
import { benchMatmul } from "./matmul.js";
import { benchWorkload } from "./workload.js";
import { benchEngine } from "./engine.js";
import { benchWeb } from "./web.js";

const BENCHES: Record<string, () => Promise<unknown>> = {
  matmul: () => benchMatmul(),
  workload: () => benchWorkload(),
  engine: () => benchEngine(),
  // Not in the default set (needs Chromium): `npm run bench -- web`.
  web: () => benchWeb(),
};
const DEFAULT = ["matmul", "workload", "engine"];

async function main(): Promise<void> {
  enableRelaxedSimd();
  const names = process.argv.slice(2);
  for (const n of names) if (!(n in BENCHES)) throw new Error(`unknown bench "${n}"; known: ${Object.keys(BENCHES).join(", ")}`);
  for (const n of names.length ? names : DEFAULT) await BENCHES[n]();
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? (e.stack ?? e.message) : e);
  process.exit(1);
});
