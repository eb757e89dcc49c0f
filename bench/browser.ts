// Shared by bench/web.ts and the browser-page tests (test/web/, test/cli/serve.test.ts): `jacsteer serve` as a child process, and Debian's
// Chromium driven headless by playwright-core (no downloaded browser build), with a fresh profile.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { createInterface } from "node:readline";
import { chromium as playwright, type BrowserContext } from "playwright-core";
import { packageRoot } from "../src/node/runtime.js";

const BIN = join(packageRoot(), "bin", "jacsteer.js");

/** Debian's `chromium` (or chromium-browser / google-chrome) on PATH, or $JACSTEER_CHROMIUM. */
export function findChromiumBinary(): string | undefined {
  if (process.env.JACSTEER_CHROMIUM) return process.env.JACSTEER_CHROMIUM;
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    for (const name of ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"]) {
      if (dir && existsSync(join(dir, name))) return join(dir, name);
    }
  }
  return undefined;
}

/** The flags every launch gets: headless, no sandbox (CI runs as root), nothing that phones home. */
export const CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];

export interface Served {
  url: string;
  port: number;
  isolated: boolean;
  stop(): Promise<void>;
}

/** `jacsteer serve ARGS --port 0 --json`: resolves with the URL it prints once listening. */
export async function startServe(args: string[] = []): Promise<Served> {
  const child: ChildProcess = spawn(process.execPath, [BIN, "serve", ...args, "--port", "0", "--json", "--quiet"], { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (d) => (stderr += d));
  const first = await new Promise<string>((resolve, reject) => {
    const rl = createInterface({ input: child.stdout! });
    rl.once("line", resolve);
    child.once("exit", (code) => reject(new Error(`jacsteer serve exited ${code}: ${stderr}`)));
  });
  const info = JSON.parse(first) as { url: string; port: number; isolated: boolean };
  return {
    ...info,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once("exit", () => resolve());
        child.kill("SIGTERM");
      }),
  };
}

/** A persistent context on a fresh --user-data-dir (removed by close). */
export async function launchChromium(executablePath: string): Promise<{ context: BrowserContext; profile: string; close(): Promise<void> }> {
  const profile = mkdtempSync(join(tmpdir(), "jacsteer-web-chromium-"));
  const context = await playwright.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    args: CHROMIUM_FLAGS,
    acceptDownloads: true,
    viewport: { width: 1100, height: 1400 },
  });
  return {
    context,
    profile,
    close: async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
