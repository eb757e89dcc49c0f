// Long runs of `jacsteer power-iter`, end to end on the built CLI: a real child process interrupted with
// SIGINT/SIGTERM exits 130/143 with one line on how to resume and no --out file, and --resume then gives
// a file bitwise identical to an uninterrupted run; state files from other runs, or damaged ones, are
// refused with one line; --threads above the core count is capped; progress lines carry an ETA.
import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { makeTempDir } from "../helpers/checkpoints.js";
import { BIN, expectInputError, jacsteer } from "../helpers/cli.js";
import { decodeStateFile } from "../../src/io/state-file.js";

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
function tempDir() {
  const d = makeTempDir("jacsteer-longrun-");
  dirs.push(d);
  return d;
}

/** Blocks in a state file, or -1 while it does not exist (it is replaced atomically, never partial). */
function stateBlocks(file: string): number {
  if (!existsSync(file)) return -1;
  return decodeStateFile(readFileSync(file), file).blocks.length;
}

/** Spawn the CLI, send `signal` once `ready(stderr so far)` holds (polled), and collect its exit. */
function interrupted(args: string[], signal: NodeJS.Signals, ready: (stderr: string) => boolean): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    child.stdout.resume();
    const poll = setInterval(() => {
      try {
        if (!ready(stderr)) return;
      } catch (e) {
        child.kill("SIGKILL");
        reject(e);
      }
      clearInterval(poll);
      child.kill(signal);
    }, 5);
    child.on("error", reject);
    child.on("exit", (code) => {
      clearInterval(poll);
      resolveRun({ code, stderr });
    });
  });
}

// The bundled tiny model (hidden 64). Lanczos with 2 vectors thick-restarts at 48 basis vectors, so with
// --tol 0 both solvers run to --max-iters: long enough to interrupt, a few seconds in all.
const RUN = ["power-iter", "--prompt", "Hello, world", "--num-vectors", "2", "--tol", "0", "--max-iters", "400", "--threads", "1"];

describe("power-iter: interrupted and resumed", () => {
  for (const [method, signal, code] of [["lanczos", "SIGINT", 130], ["power", "SIGTERM", 143]] as const) {
    it(`${method}: ${signal} exits ${code} with one line; --resume gives the uninterrupted run's file bit for bit`, async () => {
      const dir = tempDir();
      const args = [...RUN, "--method", method];
      const clean = join(dir, "clean.safetensors");
      const c = jacsteer([...args, "--out", clean]);
      expect(c.code, c.stderr).toBe(0);

      const out = join(dir, "out.safetensors");
      const state = join(dir, "run.state");
      const r = await interrupted([...args, "--state", state, "--out", out], signal, () => stateBlocks(state) >= 5);
      expect(r.code, r.stderr).toBe(code);
      const lines = r.stderr.trim().split("\n");
      expect(lines.filter((l) => /interrupted/.test(l))).toHaveLength(1);
      const last = lines[lines.length - 1];
      const m = last.match(/^jacsteer: interrupted \((SIG\w+)\); the state after (\d+) block products is in (.+): to continue, run the same command with --resume (.+)$/);
      expect(m, last).not.toBeNull();
      expect(m![1]).toBe(signal);
      expect(m![3]).toBe(state);
      expect(m![4]).toBe(state);
      const blocks = Number(m![2]);
      expect(blocks).toBeGreaterThanOrEqual(5);
      expect(blocks).toBeLessThan(method === "power" ? 401 : 400); // really interrupted, not finished
      expect(stateBlocks(state)).toBe(blocks);
      // No --out, no temporary file: the directory holds the clean run's file and the state only.
      expect(readdirSync(dir).sort()).toEqual(["clean.safetensors", "run.state"]);

      const resumed = jacsteer([...args, "--state", state, "--out", out, "--resume", state]);
      expect(resumed.code, resumed.stderr).toBe(0);
      expect(resumed.stderr).toContain(`jacsteer: resuming from ${state}: replaying its ${blocks} block products`);
      expect(resumed.stderr).toMatch(new RegExp(`iter ${blocks}: .* \\| replayed\\n`));
      expect(resumed.stderr).not.toMatch(new RegExp(`iter ${blocks - 1}: `)); // replayed blocks print nothing else
      expect(Buffer.compare(readFileSync(out), readFileSync(clean))).toBe(0);
      expect(readdirSync(dir).sort()).toEqual(["clean.safetensors", "out.safetensors", "run.state"]);
    });
  }

  it("without --state: one line saying nothing was saved and how to make a run resumable", async () => {
    const dir = tempDir();
    const out = join(dir, "out.safetensors");
    const r = await interrupted([...RUN, "--method", "power", "--out", out], "SIGINT", (stderr) => /\niter 3: /.test(stderr));
    expect(r.code, r.stderr).toBe(130);
    const lines = r.stderr.trim().split("\n");
    expect(lines.filter((l) => /interrupted/.test(l))).toHaveLength(1);
    expect(lines[lines.length - 1]).toBe("jacsteer: interrupted (SIGINT); nothing was saved (run with --state FILE to be able to resume)");
    expect(readdirSync(dir)).toEqual([]);
  });

  it("a --method jvp run resumed from its complete state file repeats its result without a product", () => {
    const dir = tempDir();
    const args = ["power-iter", "--prompt", "Hi there", "--num-vectors", "2", "--method", "jvp", "--max-iters", "6", "--tol", "0"];
    const state = join(dir, "s.state");
    const first = join(dir, "a.safetensors"), again = join(dir, "b.safetensors");
    expect(jacsteer([...args, "--state", state, "--out", first]).code).toBe(0);
    const r = jacsteer([...args, "--resume", state, "--out", again]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain("replaying its 7 block products"); // 6 iterations and the final Rayleigh-Ritz block
    expect(Buffer.compare(readFileSync(first), readFileSync(again))).toBe(0);
  });
});

describe("power-iter --resume: state files that do not fit are refused with one line", () => {
  const dir = tempDir();
  const base = ["power-iter", "--prompt", "Hello", "--num-vectors", "2", "--max-iters", "3"];
  const state = join(dir, "s.state");
  const made = jacsteer([...base, "--state", state]);

  it("the state file was written", () => {
    expect(made.code, made.stderr).toBe(0);
    expect(stateBlocks(state)).toBe(3);
  });
  it("another seed", () => expectInputError([...base, "--resume", state, "--seed", "1"], /the state file .*s\.state does not belong to this run: --seed differs \(the file's run: 0, this run: 1\)/));
  it("another layer", () => expectInputError([...base, "--resume", state, "--source-layer", "0", "--target-layer", "3"], /does not belong to this run: --source-layer differs/));
  it("another prompt", () => expectInputError(["power-iter", "--prompt", "Hellp", "--num-vectors", "2", "--max-iters", "3", "--resume", state], /does not belong to this run: the prompt \(its tokens\) differs/));
  it("another method", () => expectInputError([...base, "--resume", state, "--method", "power"], /does not belong to this run: --method differs/));
  it("a truncated state file, named", () => {
    const cut = join(dir, "cut.state");
    const bytes = readFileSync(state);
    writeFileSync(cut, bytes.subarray(0, bytes.length - 100));
    expectInputError([...base, "--resume", cut], new RegExp(`--resume ${cut}: not a usable jacsteer state file \\(.*truncated\\)`));
  });
  it("a file that is not a state file, named", () => {
    const other = join(dir, "other.state");
    writeFileSync(other, "hello, this is not a state file at all");
    expectInputError([...base, "--resume", other], new RegExp(`--resume ${other}: not a usable jacsteer state file \\(wrong magic bytes\\)`));
  });
  it("a --resume file that does not exist", () => expectInputError([...base, "--resume", join(dir, "none.state")], /--resume .*none\.state: file does not exist/));
  it("--state over an existing file without --resume", () => expectInputError([...base, "--state", state], /--state .*s\.state: the file exists; add --resume .*s\.state to continue that run, or remove it/));
  it("--state in a directory that does not exist", () => expectInputError([...base, "--state", "/nonexistent/dir/s.state"], /--state \/nonexistent\/dir\/s\.state: directory .* does not exist/));
});

describe("power-iter: --threads and the ETA", () => {
  it("--threads above the core count is capped with one line", () => {
    const cores = availableParallelism();
    const r = jacsteer(["power-iter", "--prompt", "Hi there", "--num-vectors", "1", "--threads", "999", "--json"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`jacsteer: --threads 999: this machine has ${cores} core${cores === 1 ? "" : "s"}; using ${cores}\n`);
    expect(JSON.parse(r.stdout).threads).toBe(cores);
    const within = jacsteer(["power-iter", "--prompt", "Hi there", "--num-vectors", "1", "--threads", String(cores), "--json"]);
    expect(within.stderr).not.toMatch(/--threads/);
  });

  it("every progress line carries an ETA: fixed with --tol 0, from the rate otherwise", () => {
    const fixed = jacsteer(["power-iter", "--prompt", "Hi there", "--num-vectors", "2", "--method", "power", "--tol", "0", "--max-iters", "5"]);
    const progress = fixed.stderr.split("\n").filter((l) => l.startsWith("iter "));
    expect(progress).toHaveLength(5);
    for (const l of progress) expect(l).toMatch(/ \| ETA \d+s$/);
    const rate = jacsteer(["power-iter", "--prompt", "Hi there", "--num-vectors", "2", "--tol", "1e-6"]);
    const lines = rate.stderr.split("\n").filter((l) => l.startsWith("iter "));
    expect(lines[0]).toMatch(/ \| ETA unknown$/);
    expect(lines[lines.length - 1]).toMatch(/ \| ETA ~\d+s \(from the residual's rate\)$/);
  });
});
