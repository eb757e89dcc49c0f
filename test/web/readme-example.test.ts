// The README's browser example (section "Library", the `html` block) run as a user would: written as
// index.html beside a copy of the built bundle folder web/dist/ (as `dist/`), served by `jacsteer serve
// DIR` (cross-origin isolated), opened in Debian's headless Chromium, handed the bundled tiny model's
// folder through its <input webkitdirectory>. The vector file it offers must hold bitwise the vectors,
// singular values and residuals that `jacsteer power-iter --out` writes for the same prompt and flags,
// and the sigmas it prints must be the CLI's; the same calls in a module Worker (the README's advice
// for large checkpoints: files read slice by slice there) give the same sigmas. So the example, and
// the bundle's helpers it calls (openCheckpointFiles, createWebRuntime, webThreads), cannot rot.
// Without Chromium this file warns LOUDLY and skips; with JACSTEER_REQUIRE_CHROMIUM=1 it fails.
import { cpSync, existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { findChromium, jacsteer, REQUIRE_CHROMIUM, tempDir } from "../report/fixtures.js";
import { launchChromium, startServe } from "../../bench/browser.js";
import { readVectorSet } from "../../src/cli/verify.js";
import { expectBitwiseEqual } from "../helpers/bitwise.js";
import { readmeBlock } from "../helpers/readme.js";

const chromium = findChromium();
const TINY = join(process.cwd(), "models", "tiny");
const DIST = join(process.cwd(), "web", "dist");
/** Generous: a shared 2-core machine under load takes seconds to start Node or Chromium. */
const SLOW = 400_000;

function tests() {
  const work = tempDir("jacsteer-readme-web-");
  afterAll(() => work.remove());

  it("the README's browser block, served beside web/dist/, gives bitwise the CLI's power-iter file", async () => {
    const html = readmeBlock("Library", "html");
    // The example's own inputs, read from the block so that the CLI runs what it runs.
    const prompt = /prompts: \["([^"]+)"\]/.exec(html)?.[1];
    const n = /numVectors: (\d+)/.exec(html)?.[1];
    expect(prompt && n, "the example names its prompt and numVectors").toBeTruthy();
    expect(existsSync(join(DIST, "jacsteer.js")), "web/dist/jacsteer.js: run `npm run build:web`").toBe(true);
    const site = join(work.dir, "site");
    cpSync(DIST, join(site, "dist"), { recursive: true });
    writeFileSync(join(site, "index.html"), `<!DOCTYPE html>\n<meta charset="utf-8">\n${html}`);

    const served = await startServe([site]);
    const browser = await launchChromium(chromium!);
    try {
      expect(served.isolated).toBe(true);
      const page = await browser.context.newPage();
      page.setDefaultTimeout(SLOW);
      const errors: string[] = [];
      page.on("pageerror", (e) => errors.push(e.message));
      // Every file the example loads must be there (the browser's own favicon request aside).
      page.on("response", (res) => res.status() >= 400 && !res.url().endsWith("/favicon.ico") && errors.push(`${res.url()}: HTTP ${res.status()}`));
      await page.goto(served.url.split("?")[0]!);
      await page.setInputFiles("input[webkitdirectory]", TINY);
      // Done when the download link appears; an error in the example shows up in `errors`.
      await page.waitForFunction(() => document.querySelector("a[download]") !== null || (document.getElementById("out")?.textContent ?? "").startsWith("error"), undefined, { timeout: SLOW }).catch((e) => {
        throw new Error(`${(e as Error).message}\npage errors: ${errors.join("\n")}`);
      });
      expect(errors).toEqual([]);
      const printed = (await page.textContent("#out")) ?? "";
      const threads = await page.evaluate(() => navigator.hardwareConcurrency);
      // The README's advice for large checkpoints: the same calls in a module Worker, where the files
      // are read slice by slice (FileReaderSync, File.slice) instead of whole.
      const inWorker = (await page.evaluate(
        async ({ prompt, n }) => {
          const code = `import { createWebRuntime, encodeVectorFile, openCheckpointFiles, powerIter, webThreads } from "${location.origin}/dist/jacsteer.js";
            onmessage = async (e) => {
              try {
                const { model, tokenizer } = await openCheckpointFiles(e.data);
                const sv = await powerIter({ model, tokenizer, runtime: await createWebRuntime(), ...webThreads(navigator.hardwareConcurrency), prompts: [${JSON.stringify(prompt)}], numVectors: ${n} });
                model.close();
                postMessage({ file: Array.from(encodeVectorFile(sv)), whole: typeof FileReaderSync === "undefined" });
              } catch (err) { postMessage({ error: String(err && err.stack || err) }); }
            };`;
          const worker = new Worker(URL.createObjectURL(new Blob([code], { type: "text/javascript" })), { type: "module" });
          const reply = new Promise((resolve) => (worker.onmessage = (e) => resolve(e.data)));
          worker.postMessage(Array.from((document.querySelector("input[webkitdirectory]") as HTMLInputElement).files!));
          return reply;
        },
        { prompt: prompt!, n: Number(n) },
      )) as { file?: number[]; whole?: boolean; error?: string };
      const download = page.waitForEvent("download");
      await page.click("a[download]");
      const file = join(work.dir, "page.safetensors");
      await (await download).saveAs(file);
      await page.close();

      const got = readVectorSet(file, "the page's download");
      // The command line on the same prompt and flags, at the thread count the page asked for.
      const out = join(work.dir, "cli.safetensors");
      const r = jacsteer(["power-iter", "--prompt", prompt!, "--num-vectors", n!, "--threads", String(threads), "--out", out, "--quiet"]);
      expect(r.code, r.stderr).toBe(0);
      const cli = readVectorSet(out, "cli");
      expect(got.vectors.length).toBe(Number(n));
      expectBitwiseEqual(got, cli);
      for (const key of ["method", "model", "source_layer", "target_layer", "positions", "tokens", "num_vectors", "block_size", "seed", "tol", "iterations", "products", "kernels"]) {
        expect(got.metadata[key], key).toBe(cli.metadata[key]);
      }
      // The page used the Web Worker threads it was offered (served cross-origin isolated).
      expect(got.metadata.threads).toBe(String(threads));
      expect(printed).toBe(`sigmas ${cli.singularValues!.map((s) => s.toFixed(6)).join(" ")}`);
      expect(inWorker.error).toBeUndefined();
      expect(inWorker.whole).toBe(false);
      const workerFile = join(work.dir, "worker.safetensors");
      writeFileSync(workerFile, Uint8Array.from(inWorker.file!));
      expectBitwiseEqual(readVectorSet(workerFile, "the worker's vector file"), cli);
    } finally {
      await browser.close();
      await served.stop();
    }
  }, SLOW);
}

if (chromium) {
  describe(`the README's browser example in headless Chromium (${chromium})`, tests);
} else if (REQUIRE_CHROMIUM) {
  describe("the README's browser example in headless Chromium", () => {
    it("needs Chromium", () => expect.fail("JACSTEER_REQUIRE_CHROMIUM=1 but no chromium on PATH (apt-get install -y chromium)"));
  });
} else {
  process.stderr.write("\n!!!!! SKIPPED (Chromium missing: apt-get install -y chromium): the README's browser example is NOT tested\n");
  describe("the README's browser example in headless Chromium", () => {
    it.skip("[needs Chromium] runs the README's browser block, bitwise the CLI's power-iter file", () => {});
  });
}
