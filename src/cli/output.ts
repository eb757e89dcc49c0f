// What a command prints besides its results: progress (dropped with --quiet), warnings (always, and
// collected for --json), the version. Kept apart from session.ts so `jacsteer --version` and `--help`
// load nothing else.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { packageRoot } from "../node/runtime.js";

let quiet = false;
const collected: string[] = [];

/** --quiet: progress lines are dropped; warnings and errors still go to stderr. Also resets the warnings. */
export function startCommand(opts: { quiet: boolean }): void {
  quiet = opts.quiet;
  collected.length = 0;
}

/** Progress and notes, on stderr (not with --quiet). */
export const log = (msg: string) => {
  if (!quiet) process.stderr.write(msg + "\n");
};

/**
 * A result that is probably not what the user wanted: one stderr line starting "warning:" (even with
 * --quiet), and collected for the command's --json summary ("warnings").
 */
export function warn(msg: string): void {
  collected.push(msg);
  process.stderr.write(`warning: ${msg}\n`);
}

/** The warnings of this command so far. */
export function warnings(): string[] {
  return collected.slice();
}

/** The package's version (package.json). */
export function version(): string {
  try {
    return String(JSON.parse(readFileSync(join(packageRoot(), "package.json"), "utf8")).version ?? "unknown");
  } catch {
    return "unknown";
  }
}
