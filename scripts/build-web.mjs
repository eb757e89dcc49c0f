// `npm run build:web`: the browser bundle of the library and the page (web/). esbuild bundles four
// ES modules into web/dist/: jacsteer.js (the library for a user's page, src/web/library.ts; README
// "Library"), page.js (src/web/page.ts), driver.js (the page's compute worker, src/web/driver.ts) and
// gemm-worker.js (the threads' Web Worker, workers/web-gemm-worker.ts), and copies the two kernel
// builds beside them (jacsteer.js and driver.js fetch them, and gemm-worker.js, from their own folder). Bundling for the browser platform fails on any import of
// a Node module, which keeps the library platform-neutral. Needs build/ (npm run build:wasm) first.
import { build } from "esbuild";
import { copyFileSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const out = join(root, "web", "dist");
const version = JSON.parse(readFileSync(join(root, "package.json"), "utf8")).version;
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
await build({
  entryPoints: {
    jacsteer: join(root, "src/web/library.ts"),
    page: join(root, "src/web/page.ts"),
    driver: join(root, "src/web/driver.ts"),
    "gemm-worker": join(root, "workers/web-gemm-worker.ts"),
  },
  outdir: out,
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2022",
  sourcemap: true,
  define: { JACSTEER_VERSION: JSON.stringify(version) },
  logLevel: "warning",
});
for (const f of ["kernels-relaxed.wasm", "kernels-simd.wasm"]) {
  try {
    copyFileSync(join(root, "build", f), join(out, f));
  } catch {
    console.error(`build-web: build/${f} missing: run \`npm run build:wasm\` first`);
    process.exit(1);
  }
}
console.error(`built web/dist (jacsteer.js, page.js, driver.js, gemm-worker.js, kernels) for jacsteer ${version}`);
