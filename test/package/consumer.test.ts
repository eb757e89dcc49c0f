// The README's "Library" example as a user meets it: the package packed (`npm pack`), the tarball
// installed into an empty project, the README's code block type-checked there with `tsc --strict`
// against the published .d.ts, and run. So the example cannot rot and the published types work.
// Needs the built dist/ (npm test builds first) and npm; dependencies come from npm's cache when it has
// them (CI's `npm ci` fills it), else from the registry.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { decodeVectorFile } from "../../src/io/vector-file.js";
import { openSafetensorsFile } from "../../src/node/safetensors-file.js";
import { readmeBlock, readmeBlocks } from "../helpers/readme.js";

const ROOT = process.cwd();
const tmp = mkdtempSync(join(tmpdir(), "jacsteer-consumer-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function run(cmd: string, args: string[], cwd: string, timeout = 300_000) {
  const r = spawnSync(cmd, args, { cwd, encoding: "utf8", timeout, env: { ...process.env, npm_config_update_notifier: "false" } });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} (in ${cwd}) exited ${r.status}${r.error ? ` (${r.error.message})` : ""}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

describe("the README's Library example in a project that installs the packed tarball", () => {
  it("README has the Node example and the browser one (test/web/readme-example.test.ts runs that)", () => {
    const blocks = readmeBlocks("Library");
    expect(blocks.map((b) => b.lang)).toEqual(["ts", "html"]);
    expect(readmeBlock("Library", "ts")).toMatch(/from "jacsteer\/node"/);
    expect(readmeBlock("Library", "html")).toMatch(/from "\.\/dist\/jacsteer\.js"/);
  });

  it("packs, installs, type-checks under strict and runs", { timeout: 600_000 }, () => {
    const npm = process.platform === "win32" ? "npm.cmd" : "npm";
    // --ignore-scripts: dist/ is built already; prepare would rebuild it
    const packed = run(npm, ["pack", "--ignore-scripts", "--silent", "--pack-destination", tmp], ROOT).trim().split("\n").pop()!;
    const tarball = join(tmp, packed);
    expect(existsSync(tarball), packed).toBe(true);

    const app = join(tmp, "app");
    mkdirSync(app);
    writeFileSync(join(app, "package.json"), JSON.stringify({ name: "jacsteer-consumer", private: true, type: "module" }, null, 2));
    run(npm, ["install", "--prefer-offline", "--no-audit", "--no-fund", "--ignore-scripts", "--no-package-lock", tarball], app);
    expect(existsSync(join(app, "node_modules", "jacsteer", "dist", "src", "node", "index.d.ts"))).toBe(true);

    writeFileSync(join(app, "example.ts"), readmeBlock("Library", "ts"));
    writeFileSync(
      join(app, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          target: "ES2022",
          module: "NodeNext",
          moduleResolution: "NodeNext",
          outDir: "out",
          // the consumer's own @types/node (the repository's, not installed again)
          typeRoots: [join(ROOT, "node_modules", "@types")],
          types: ["node"],
          skipLibCheck: true,
        },
        files: ["example.ts"],
      }),
    );
    run(process.execPath, [join(ROOT, "node_modules", "typescript", "bin", "tsc"), "-p", "tsconfig.json"], app);

    const stdout = run(process.execPath, [join(app, "out", "example.js")], app);
    const lines = stdout.trim().split("\n");
    expect(lines.some((l) => /^block \d+: sigma_1 \d/.test(l)), stdout).toBe(true);
    expect(stdout).toMatch(/\bconverged\b/);
    // three generations, labelled with their scale
    for (const scale of [-8, 0, 8]) expect(stdout).toContain(`vector 0 (sv0) scale ${scale}`);
    expect(lines[lines.length - 1]).toMatch(/aborted/);
    // the vector file it wrote reads back: 4 unit vectors of the tiny model's hidden size
    const r = openSafetensorsFile(join(app, "sv0.safetensors"));
    try {
      const set = decodeVectorFile(r, "sv0.safetensors");
      expect(set.vectors).toHaveLength(4);
      for (const v of set.vectors) expect(Math.hypot(...v)).toBeCloseTo(1, 5);
      expect(set.metadata.method).toBe("power-iter/lanczos");
    } finally {
      r.close?.();
    }
  });
});
