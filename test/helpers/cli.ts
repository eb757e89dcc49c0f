// Running the built command line (dist/, as a user runs it) from tests, and the bad-input contract:
// exit 1, exactly one line naming what is wrong (last on stderr), no stack trace, no output file.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "vitest";

export const BIN = join(process.cwd(), "bin", "jacsteer.js");

export function jacsteer(args: string[], opts: { cwd?: string; timeoutMs?: number } = {}) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8", cwd: opts.cwd, timeout: opts.timeoutMs ?? 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Run `args` with `--out FILE` (FILE's extension `ext`) and check the bad-input contract. */
export function expectInputError(args: string[], pattern: RegExp, ext = ".safetensors"): void {
  const dir = mkdtempSync(join(tmpdir(), "jacsteer-bad-"));
  try {
    expectInputErrorAt(args, pattern, join(dir, `out${ext}`));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function expectInputErrorAt(args: string[], pattern: RegExp, out: string): void {
  const r = jacsteer([...args, "--out", out]);
  expect(r.code, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).toBe(1);
  // Progress lines may come first; exactly one line reports the error, and it comes last.
  const lines = r.stderr.trim().split("\n");
  expect(lines.filter((l) => /error/i.test(l)).length, r.stderr).toBe(1);
  const last = lines[lines.length - 1];
  expect(last).toMatch(/^jacsteer: error: /);
  expect(last).toMatch(pattern);
  expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
  expect(existsSync(out)).toBe(false);
}
