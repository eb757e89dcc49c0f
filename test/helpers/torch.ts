// Running PyTorch (Debian's python3-torch, installed for the system interpreter) from tests.
// Where torch is missing the cross-check is skipped LOUDLY; with JACSTEER_REQUIRE_TORCH=1 (set by
// .ci/run) it fails instead, so CI always runs the cross-checks.
import { execFileSync, spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";

export const PYTHON = process.env.JACSTEER_PYTHON ?? "/usr/bin/python3";
export const REQUIRE_TORCH = process.env.JACSTEER_REQUIRE_TORCH === "1";

let cached: boolean | undefined;
export function haveTorch(): boolean {
  if (cached === undefined) {
    const r = spawnSync(PYTHON, ["-c", "import torch"], { stdio: "ignore" });
    cached = r.status === 0;
  }
  return cached;
}

/**
 * `it` for a test that needs PyTorch: runs where torch is importable; otherwise skipped with a loud
 * warning, or failing when JACSTEER_REQUIRE_TORCH=1.
 */
export function itWithTorch(name: string, fn: () => unknown | Promise<unknown>, timeout?: number): void {
  if (haveTorch()) {
    it(name, fn, timeout);
    return;
  }
  if (REQUIRE_TORCH) {
    it(name, () => {
      throw new Error(`JACSTEER_REQUIRE_TORCH=1 but ${PYTHON} cannot import torch (apt-get install -y python3-torch)`);
    });
    return;
  }
  process.stderr.write(`\n!!!!! SKIPPED (PyTorch missing: ${PYTHON} cannot import torch): ${name}\n`);
  it.skip(`[needs PyTorch] ${name}`, fn);
}

/** Run a Python script (file path) with args; returns stdout. Throws with stderr on failure. */
export function runPython(args: string[], opts: { input?: string; timeoutMs?: number } = {}): string {
  try {
    return execFileSync(PYTHON, args, { input: opts.input, encoding: "utf8", timeout: opts.timeoutMs ?? 300_000, maxBuffer: 1 << 28, stdio: ["pipe", "pipe", "pipe"] });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`${PYTHON} ${args.join(" ")} failed: ${err.stderr || err.message}`);
  }
}

/** Alias kept for the reference tests. */
export const torchAvailable = haveTorch;

/**
 * A describe block that needs PyTorch: where torch cannot be imported it warns loudly and skips,
 * or fails when JACSTEER_REQUIRE_TORCH=1.
 */
export function describeTorch(name: string, body: () => void): void {
  if (haveTorch()) {
    describe(name, body);
    return;
  }
  process.stderr.write(`\n!!!!! ${REQUIRE_TORCH ? "FAILING" : "SKIPPED"} (PyTorch missing: ${PYTHON} cannot import torch): ${name}\n`);
  describe(name, () => {
    if (REQUIRE_TORCH) it("needs PyTorch", () => expect.fail(`JACSTEER_REQUIRE_TORCH=1 but ${PYTHON} cannot import torch`));
    else it.skip(`[needs PyTorch] ${name}`, () => {});
  });
}
