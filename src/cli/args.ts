// Flag parsing on node:util's parseArgs, with errors that name the flag.
import { parseArgs, type ParseArgsConfig } from "node:util";
import { UsageError } from "./errors.js";

export type Options = NonNullable<ParseArgsConfig["options"]>;

/**
 * node:util's parseArgs refuses `--flag -1` (a value that starts with a dash looks like an option) and
 * asks for `--flag=-1`. For every flag that takes a value, a following argument that reads as a
 * negative number (`-1`, `-0.5`, `-2,-1`, `-10,-5,0,5`) is joined to it, so `--scales -10,0,10` works as written.
 */
export function joinNegativeValues(argv: readonly string[], options: Options): string[] {
  const takesValue = new Set(Object.entries(options).filter(([, o]) => o.type === "string").map(([name]) => `--${name}`));
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const next = argv[i + 1];
    if (takesValue.has(argv[i]) && next !== undefined && /^-[\d.]/.test(next)) {
      out.push(`${argv[i]}=${next}`);
      i++;
    } else out.push(argv[i]);
  }
  return out;
}

export type FlagValues = Record<string, string | boolean | string[] | undefined>;

/** Flags and positional arguments (for commands that take files without a flag). */
export function parseFlagsAndPositionals(argv: string[], options: Options): { values: FlagValues; positionals: string[] } {
  try {
    const { values, positionals } = parseArgs({ args: joinNegativeValues(argv, options), options, strict: true, allowPositionals: true });
    return { values: values as FlagValues, positionals };
  } catch (e) {
    throw new UsageError((e as Error).message.replace(/\. To specify a positional.*$/s, ""));
  }
}

export function parseFlags(argv: string[], options: Options): FlagValues {
  const { values, positionals } = parseFlagsAndPositionals(argv, options);
  if (positionals.length) throw new UsageError(`unexpected argument "${positionals[0]}"`);
  return values;
}

export function intFlag(values: Record<string, unknown>, name: string, fallback?: number, min = 0): number | undefined {
  const v = values[name];
  if (v === undefined) return fallback;
  const s = String(v).trim();
  if (!/^-?\d+$/.test(s)) throw new UsageError(`--${name} ${s}: expected an integer`);
  const n = Number(s);
  if (n < min) throw new UsageError(`--${name} ${s}: must be at least ${min}`);
  return n;
}

export function numberFlag(values: Record<string, unknown>, name: string, fallback?: number): number | undefined {
  const v = values[name];
  if (v === undefined) return fallback;
  const n = Number(String(v).trim());
  if (String(v).trim() === "" || !Number.isFinite(n)) throw new UsageError(`--${name} ${String(v)}: expected a finite number`);
  return n;
}

export function stringList(values: Record<string, unknown>, name: string): string[] {
  const v = values[name];
  if (v === undefined) return [];
  return Array.isArray(v) ? v.map(String) : [String(v)];
}
