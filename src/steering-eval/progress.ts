// Progress of a run made of items that cost about the same (KL batches, atlas pairs weighted by
// their layer count, stability runs): "done/total, elapsed, ETA" from the rate so far, at most one
// line every `everySeconds` plus the last. The solver runs use src/solvers/eta.ts instead, which
// extrapolates a convergence metric; here the amount of work left is known.
import { formatDuration } from "../solvers/eta.js";

export class WorkProgress {
  private readonly start = performance.now();
  private last = 0;

  constructor(
    private readonly what: string,
    private readonly log: (line: string) => void,
    private readonly everySeconds = 2,
  ) {}

  /** `done` of `total` units of work finished (units may be weighted: layers, sequences); `detail` says what. */
  report(done: number, total: number, detail = ""): void {
    const now = performance.now();
    if (done < total && (now - this.last) / 1000 < this.everySeconds) return;
    this.last = now;
    const elapsed = (now - this.start) / 1000;
    const eta = done >= total ? "done" : done > 0 ? `ETA ~${formatDuration((elapsed * (total - done)) / done)}` : "ETA unknown";
    this.log(`${this.what}: ${detail || `${done}/${total}`} | ${((100 * done) / total).toFixed(0)}% of the work, ${formatDuration(elapsed)} | ${eta}`);
  }
}
