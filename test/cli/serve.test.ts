// `jacsteer serve`: the page's files with the cross-origin-isolation headers, 127.0.0.1 by default,
// and nothing outside its folder: `..`, its percent-encoded spellings, backslashes, NUL, absolute
// request targets and symlinks that point out are all 404, while a symlink that stays inside works.
import { request } from "node:http";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startServe, type Served } from "../../bench/browser.js";
import { resolveServedPath } from "../../src/cli/serve.js";
import { jacsteer } from "../helpers/cli.js";

const base = mkdtempSync(join(tmpdir(), "jacsteer-serve-"));
const site = join(base, "site");
afterAll(() => rmSync(base, { recursive: true, force: true }));
mkdirSync(join(site, "dist"), { recursive: true });
writeFileSync(join(site, "index.html"), "<!DOCTYPE html><title>page</title>");
writeFileSync(join(site, "dist", "page.js"), "export {};\n");
writeFileSync(join(site, "dist", "k.wasm"), new Uint8Array([0, 97, 115, 109]));
writeFileSync(join(base, "secret.txt"), "SECRET");
mkdirSync(join(base, "outside"));
writeFileSync(join(base, "outside", "x.txt"), "OUTSIDE");
symlinkSync(join(base, "secret.txt"), join(site, "link-out.txt"));
symlinkSync(join(base, "outside"), join(site, "dir-out"));
symlinkSync(join(site, "dist", "page.js"), join(site, "link-in.js"));

/** A raw GET with the request target exactly as given (fetch and URL would normalise `..` away). */
function get(port: number, target: string): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path: target, method: "GET" }, (res) => {
      let body = "";
      res.on("data", (d) => (body += d));
      res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("jacsteer serve", () => {
  let served: Served;
  beforeAll(async () => {
    served = await startServe([site]);
  }, 120_000);
  afterAll(() => served?.stop());

  it("listens on 127.0.0.1 and serves the page's files with COOP/COEP and the right types", async () => {
    expect(served.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\//);
    const index = await get(served.port, "/");
    expect(index.status).toBe(200);
    expect(index.body).toContain("<title>page</title>");
    expect(index.headers["cross-origin-opener-policy"]).toBe("same-origin");
    expect(index.headers["cross-origin-embedder-policy"]).toBe("require-corp");
    expect(index.headers["content-type"]).toMatch(/^text\/html/);
    const js = await get(served.port, "/dist/page.js?v=1");
    expect([js.status, js.headers["content-type"]]).toEqual([200, "text/javascript; charset=utf-8"]);
    expect((await get(served.port, "/dist/k.wasm")).headers["content-type"]).toBe("application/wasm");
    expect((await get(served.port, "/dist/")).status).toBe(404); // a folder without index.html
    expect((await get(served.port, "/link-in.js")).status).toBe(200); // a symlink that stays inside
  });

  it("answers 404 for every path outside the folder", async () => {
    const outside = [
      "/../secret.txt",
      "/dist/../../secret.txt",
      "/%2e%2e/secret.txt",
      "/%2E%2E/secret.txt",
      "/dist/%2e%2e/%2e%2e/secret.txt",
      "/%2e%2e%2fsecret.txt",
      "/..%2fsecret.txt",
      "/..%5csecret.txt",
      "/..\\secret.txt",
      "/%252e%252e/secret.txt",
      `/${base.replace(/^\//, "")}/secret.txt`,
      `${join(base, "secret.txt")}`,
      `//${join(base, "secret.txt")}`,
      "http://127.0.0.1/../secret.txt",
      "/link-out.txt",
      "/dir-out/x.txt",
      "/index.html%00.js",
      "/%",
      "/./index.html",
      "/nope.html",
    ];
    for (const target of outside) {
      const r = await get(served.port, target);
      expect(r.status, target).toBe(404);
      expect(r.body, target).not.toMatch(/SECRET|OUTSIDE/);
    }
    // The checks are not vacuous: the same files are there to be read, one level up.
    expect(resolveServedPath(base, "/secret.txt")).toBe(join(base, "secret.txt"));
  });

  it("--no-isolation leaves out COOP/COEP; --json, --help; bad input is one line", async () => {
    const plain = await startServe([site, "--no-isolation"]);
    try {
      expect(plain.isolated).toBe(false);
      const r = await get(plain.port, "/");
      expect(r.status).toBe(200);
      expect(r.headers["cross-origin-opener-policy"]).toBeUndefined();
      expect(r.headers["cross-origin-embedder-policy"]).toBeUndefined();
    } finally {
      await plain.stop();
    }
    const help = jacsteer(["serve", "--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/--host HOST[\s\S]*127\.0\.0\.1/);
    expect(help.stdout).toMatch(/--no-isolation/);
    expect(help.stdout).toMatch(/--threads N/);
    expect(help.stdout).not.toMatch(/\/work\//);
    // serve writes no file (expectInputError's --out does not apply): exit 1 and one line naming what is wrong.
    for (const [args, pattern] of [
      [["serve", join(base, "missing")], /serve .*missing: not a directory/],
      [["serve", join(base, "outside")], /no index\.html/],
      [["serve", site, "--port", "70000"], /--port 70000/],
      [["serve", site, site], /unexpected argument/],
    ] as const) {
      const r = jacsteer([...args]);
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr.trim().split("\n"), r.stderr).toHaveLength(1);
      expect(r.stderr).toMatch(pattern);
    }
  }, 120_000);
});
