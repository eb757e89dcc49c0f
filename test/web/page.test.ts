// The browser page in a real browser: Debian's Chromium, headless, driven by playwright-core, loads
// web/ from `jacsteer serve`, is handed the bundled tiny model's folder (the directory input), runs
// power-iter (Lanczos), and the file it offers for download must hold bitwise the vectors, singular
// values and residuals the command line writes for the same flags and thread count: with two Web
// Worker threads (cross-origin isolated; the workers must take part) and, served without the
// COOP/COEP headers, on the one-thread fallback, which the page must announce.
// Without Chromium this file warns LOUDLY and skips; with JACSTEER_REQUIRE_CHROMIUM=1 it fails.
// JACSTEER_WEB_SCREENSHOT=FILE.png keeps a screenshot of the finished page for a person to look at.
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { findChromium, jacsteer, REQUIRE_CHROMIUM, tempDir } from "../report/fixtures.js";
import { launchChromium, startServe, type Served } from "../../bench/browser.js";
import type { VectorSet } from "../../src/io/vector-file.js";
import { readVectorSet } from "../../src/cli/verify.js";
import type { BrowserContext } from "playwright-core";
import { expectBitwiseEqual } from "../helpers/bitwise.js";

const chromium = findChromium();
const work = tempDir("jacsteer-web-");
const PROMPT = "The cat sat on the mat";
const TINY = join(process.cwd(), "models", "tiny");
/** Generous: a shared 2-core machine under load takes seconds to start Node or Chromium. */
const SLOW = 400_000;

const readSet = (file: string): VectorSet => readVectorSet(file, "vector file");

/** The CLI's run with the page's defaults (S, T, K, n, tol, seed) at `threads`. */
function cliRun(threads: number): VectorSet {
  const out = join(work.dir, `cli-${threads}.safetensors`);
  const r = jacsteer(["power-iter", "--prompt", PROMPT, "--threads", String(threads), "--out", out, "--quiet"]);
  expect(r.code, r.stderr).toBe(0);
  return readSet(out);
}

interface PageRun {
  set: VectorSet;
  result: { threads: number; workerUnits: number; converged: boolean; kernels: string };
  isolation: string;
  file: string;
}

/** Open the page, pick models/tiny, type the prompt, run, download the vector file. */
async function runPage(context: BrowserContext, served: Served, query: string, name: string, screenshot?: string): Promise<PageRun> {
  const page = await context.newPage();
  page.setDefaultTimeout(SLOW);
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));
  try {
    step(`${name}: open`);
    await page.goto(`${served.url.split("?")[0]}?${query}`);
    const isolation = (await page.textContent("#isolation")) ?? "";
    await page.setInputFiles("#folder", TINY);
    await page.waitForFunction(() => !(document.getElementById("run") as HTMLButtonElement).disabled);
    await page.fill("#prompt", PROMPT);
    step(`${name}: run`);
    await page.click("#run");
    await page.waitForFunction(() => (document.getElementById("status")?.textContent ?? "").match(/^(done|error)/), undefined, { timeout: SLOW });
    step(`${name}: ${await page.textContent("#status")}`);
    const status = (await page.textContent("#status")) ?? "";
    expect(status, `${status}\n${await page.textContent("#log")}\n${errors.join("\n")}`).toMatch(/^done/);
    const download = page.waitForEvent("download");
    await page.click("#download");
    const file = join(work.dir, `${name}.safetensors`);
    await (await download).saveAs(file);
    const result = (await page.evaluate(() => (window as unknown as { jacsteerResult: unknown }).jacsteerResult)) as PageRun["result"];
    // The certificate and the report's spectrum (an SVG inside the report frame) are on the page.
    expect(await page.textContent("#certificate")).toMatch(/Converged: every residual/);
    const frame = page.frameLocator("#report");
    await expect.poll(() => frame.locator("svg").count()).toBeGreaterThan(0);
    step(`${name}: checked`);
    if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
    expect(errors).toEqual([]);
    return { set: readSet(file), result, isolation, file };
  } finally {
    await page.close();
  }
}

const t0 = Date.now();
/** JACSTEER_DEBUG_WEB=1: when each step happened (the shared machine makes these tests slow). */
const step = (s: string) => process.env.JACSTEER_DEBUG_WEB && process.stderr.write(`[web test ${((Date.now() - t0) / 1000).toFixed(1)} s] ${s}\n`);

function tests() {
  let browser: Awaited<ReturnType<typeof launchChromium>>;
  const cli: Record<number, VectorSet> = {};
  beforeAll(async () => {
    browser = await launchChromium(chromium!);
    cli[1] = cliRun(1);
    cli[2] = cliRun(2);
    step("browser and CLI runs ready");
  }, SLOW);
  afterAll(async () => {
    await browser?.close();
    work.remove();
  });

  it("cross-origin isolated, 2 Web Worker threads: the downloaded file is bitwise the CLI's --threads 2 result", async () => {
    const served = await startServe();
    try {
      expect(served.isolated).toBe(true);
      // minflops=0: every product goes to the workers, even the tiny model's (the result does not depend on it).
      const run = await runPage(browser.context, served, "threads=2&minflops=0", "page-2", process.env.JACSTEER_WEB_SCREENSHOT);
      expect(run.isolation).toMatch(/^Cross-origin isolated/);
      expect(run.result.threads).toBe(2);
      expect(run.result.workerUnits).toBeGreaterThan(0);
      expect(run.result.converged).toBe(true);
      expect(run.set.metadata.threads).toBe("2");
      expectBitwiseEqual(run.set, cli[2]!);
      for (const key of ["method", "model", "source_layer", "target_layer", "positions", "tokens", "num_vectors", "seed", "tol", "iterations", "products", "kernels"]) {
        expect(run.set.metadata[key], key).toBe(cli[2]!.metadata[key]);
      }
    } finally {
      await served.stop();
    }
  }, SLOW);

  it("without COOP/COEP (--no-isolation): the page says so and runs on one thread, bitwise the CLI's --threads 1", async () => {
    const served = await startServe(["--no-isolation"]);
    try {
      expect(served.isolated).toBe(false);
      const run = await runPage(browser.context, served, "threads=2", "page-1");
      expect(run.isolation).toMatch(/^Not cross-origin isolated.*ONE thread/);
      expect(run.result.threads).toBe(1);
      expect(run.result.workerUnits).toBe(0);
      expectBitwiseEqual(run.set, cli[1]!);
    } finally {
      await served.stop();
    }
  }, SLOW);

  it("a second vector file dropped on the page is compared as `jacsteer compare` prints it", async () => {
    const served = await startServe();
    const page = await browser.context.newPage();
    page.setDefaultTimeout(SLOW);
    try {
      await page.goto(served.url);
      await page.setInputFiles("#folder", TINY);
      await page.waitForFunction(() => !(document.getElementById("run") as HTMLButtonElement).disabled);
      await page.fill("#prompt", PROMPT);
      await page.fill("#n", "4");
      await page.click("#run");
      await page.waitForFunction(() => (document.getElementById("status")?.textContent ?? "").startsWith("done"), undefined, { timeout: SLOW });
      step("compare: run done");
      const other = join(work.dir, "cli-2.safetensors");
      await page.setInputFiles("#compare-file", other);
      await expect.poll(() => page.textContent("#compare")).toMatch(/principal angles/);
      const text = (await page.textContent("#compare"))!;
      // The CLI on the same two files prints the same text, less the file names.
      const mine = join(work.dir, "page-4.safetensors");
      const download = page.waitForEvent("download");
      await page.click("#download");
      await (await download).saveAs(mine);
      step("compare: compared in the page");
      const cli = jacsteer(["compare", mine, other]);
      step("compare: CLI compared");
      expect(cli.code, cli.stderr).toBe(0);
      const strip = (s: string) => s.split("\n").filter((l) => !/^[AB] = /.test(l)).join("\n").trim();
      expect(strip(text)).toBe(strip(cli.stdout));
    } finally {
      await page.close();
      await served.stop();
    }
  }, SLOW);
}

if (chromium) {
  describe(`the browser page in headless Chromium (${chromium})`, tests);
} else if (REQUIRE_CHROMIUM) {
  describe("the browser page in headless Chromium", () => {
    it("needs Chromium", () => expect.fail("JACSTEER_REQUIRE_CHROMIUM=1 but no chromium on PATH (apt-get install -y chromium)"));
  });
} else {
  process.stderr.write("\n!!!!! SKIPPED (Chromium missing: apt-get install -y chromium): the browser page is NOT tested\n");
  describe("the browser page in headless Chromium", () => {
    it.skip("[needs Chromium] runs power-iter in the page, bitwise the CLI's result", () => {});
  });
}
