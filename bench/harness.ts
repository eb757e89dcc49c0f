// A small timing harness: warm-up, then repetitions until a time budget is spent; reports the median
// and the best time, and GFLOP/s from a flop count. Deliberately not benny / benchmark.js: those
// report ops/s, not GFLOP/s, and are unmaintained.
import { readFileSync } from "node:fs";
import os from "node:os";

export interface Timing {
  /** Median of the timed repetitions, milliseconds. */
  medianMs: number;
  /** Fastest repetition, milliseconds. */
  minMs: number;
  reps: number;
}

export interface MeasureOptions {
  /** Untimed calls first (JIT tier-up, page faults, caches). */
  warmup?: number;
  minReps?: number;
  maxReps?: number;
  /** Stop adding repetitions once this much time was spent timing (after minReps). */
  budgetMs?: number;
}

export function measure(fn: () => void, opts: MeasureOptions = {}): Timing {
  const { warmup = 2, minReps = 5, maxReps = 50, budgetMs = 1500 } = opts;
  for (let i = 0; i < warmup; i++) fn();
  const samples: number[] = [];
  let spent = 0;
  while (samples.length < minReps || (samples.length < maxReps && spent < budgetMs)) {
    const t0 = performance.now();
    fn();
    const dt = performance.now() - t0;
    samples.push(dt);
    spent += dt;
  }
  samples.sort((x, y) => x - y);
  const mid = samples.length >> 1;
  const medianMs = samples.length % 2 ? samples[mid] : (samples[mid - 1] + samples[mid]) / 2;
  return { medianMs, minMs: samples[0], reps: samples.length };
}

/** GFLOP/s of `flops` floating-point operations done in `ms` milliseconds. */
export function gflops(flops: number, ms: number): number {
  return flops / (ms * 1e6);
}

export interface MachineInfo {
  cpu: string;
  cores: number;
  node: string;
  v8: string;
  kernel: string;
  date: string;
  /** 1-minute load average when the bench started: other work on the machine skews the numbers. */
  loadavg1: number;
}

export function machineInfo(): MachineInfo {
  let cpu = os.cpus()[0]?.model ?? "unknown CPU";
  try {
    const info = readFileSync("/proc/cpuinfo", "utf8");
    const field = (name: string) => new RegExp(`^${name}\\s*:\\s*(.*)$`, "m").exec(info)?.[1].trim();
    // Virtual machines often print only "AMD EPYC": family and model tell the generation (26 = Zen 5).
    const name = field("model name"), family = field("cpu family"), model = field("model");
    if (name) cpu = family && model ? `${name} (family ${family} model ${model})` : name;
  } catch {
    // not Linux: keep os.cpus()
  }
  return {
    cpu,
    cores: os.availableParallelism?.() ?? os.cpus().length,
    node: process.version,
    v8: process.versions.v8,
    kernel: `${os.type()} ${os.release()} ${os.version()}`,
    date: new Date().toISOString(),
    loadavg1: os.loadavg()[0],
  };
}

export function machineLine(m: MachineInfo): string {
  return `${m.cpu}, ${m.cores} cores, Node ${m.node}, V8 ${m.v8}, ${m.kernel}, ${m.date} (load average ${m.loadavg1.toFixed(2)} at start)`;
}

/** A markdown table from a header row and data rows. */
export function markdownTable(header: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(" | ")} |`;
  return [line(header), line(header.map(() => "---")), ...rows.map(line)].join("\n");
}
