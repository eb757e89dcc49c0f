// Flag parsing on node:util's parseArgs, with errors that name the flag.
import { parseArgs, type ParseArgsConfig } from "node:util";
import { UsageError } from "./errors.js";

export type Options = NonNullable<ParseArgsConfig["options"]>;

export function parseFlags(argv: string[], options: Options): Record<string, string | boolean | string[] | undefined> {
  try {
    const { values, positionals } = parseArgs({ args: argv, options, strict: true, allowPositionals: true });
    if (positionals.length) throw new UsageError(`unexpected argument "${positionals[0]}"`);
    return values as Record<string, string | boolean | string[] | undefined>;
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError((e as Error).message.replace(/\. To specify a positional.*$/s, ""));
  }
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
