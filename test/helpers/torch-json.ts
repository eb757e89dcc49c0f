// Running a small inline torch script on test data: the data goes through temporary JSON files
// (f32 values print exactly). Built on test/helpers/torch.ts (which interpreter, skip/require rules).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runPython } from "./torch.js";

/**
 * Run `script` (Python source) with the torch-enabled interpreter; it reads its input with
 * `json.load(open(sys.argv[1]))` and writes its output with `json.dump(out, open(sys.argv[2], "w"))`.
 * Typed arrays in `input` are written as plain arrays.
 */
export function runTorchJson<T>(script: string, input: unknown): T {
  const dir = mkdtempSync(join(tmpdir(), "jacsteer-torch-"));
  try {
    const inFile = join(dir, "in.json"), outFile = join(dir, "out.json");
    writeFileSync(inFile, JSON.stringify(input, (_k, v) => (ArrayBuffer.isView(v) ? Array.from(v as Float32Array) : v)));
    runPython(["-c", script, inFile, outFile]);
    return JSON.parse(readFileSync(outFile, "utf8")) as T;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
