// Writes the bundled tiny model's byte-level tokenizer files into models/tiny/ (deterministic output).
// Run: npx tsc -p tsconfig.build.json && node dist/scripts/make-tiny-tokenizer.js [OUT_DIR]
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { packageRoot } from "../src/node/runtime.js";
import { tinyTokenizerFiles } from "../src/tokenizer/byte-level.js";

const outDir = process.argv[2] ?? join(packageRoot(), "models", "tiny");
mkdirSync(outDir, { recursive: true });
for (const [name, text] of Object.entries(tinyTokenizerFiles())) {
  writeFileSync(join(outDir, name), text);
  console.log(`wrote ${join(outDir, name)} (${Buffer.byteLength(text)} bytes)`);
}
