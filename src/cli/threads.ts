// --threads: more threads than cores only oversubscribes them (each worker also holds its own scratch
// memory): `--threads 999` took 87 s and 8 GB where 2 threads take 0.7 s. So it is capped, with a line.
import { availableParallelism } from "node:os";
import { intFlag } from "./args.js";

/** The cores this process may use (respects CPU affinity where the platform reports it). */
export function coreCount(): number {
  return Math.max(1, availableParallelism());
}

/** --threads N (default: all cores), capped at the core count with one line on stderr. */
export function threadsFlag(f: Record<string, unknown>, log: (msg: string) => void): number {
  const cores = coreCount();
  const requested = intFlag(f, "threads", cores, 1)!;
  if (requested <= cores) return requested;
  log(`jacsteer: --threads ${requested}: this machine has ${cores} core${cores === 1 ? "" : "s"}; using ${cores}`);
  return cores;
}
