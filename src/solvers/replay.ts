// Resuming a solver run: a replay log of every block product A V, answered again in order.
//
// Why a log and not a snapshot. The solver bodies are generators (common.ts), and a suspended
// generator cannot be serialised. But a body is a deterministic function of the products it receives:
// driven from the start with the same products, it yields the same blocks bit for bit and reaches the
// same point. So the state of a run is just the products received so far; resuming drives the body
// from the start, answering its first k blocks from the log (no model work: milliseconds), and then
// continues with the real operator. The result is bitwise identical to an uninterrupted run, for every
// solver, without the solvers knowing.
//
// Each logged block carries a fingerprint of the block V that was multiplied. On replay every yielded
// V must match its fingerprint; if not, the log belongs to another run (other start, other solver or
// build) and answering from it would silently mix two runs.
import type { BlockOperator } from "./common.js";

/** One block product of the log: the fingerprint of V and A V itself (exact, float64). */
export interface ReplayBlock {
  fingerprint: string;
  products: Float64Array[];
  /** fingerprintVectors(products), kept so saving a long log does not hash it all again. */
  productsFingerprint?: string;
}

export class ReplayMismatchError extends Error {
  constructor(readonly block: number, message: string) {
    super(message);
    this.name = "ReplayMismatchError";
  }
}

export interface ResumableOptions {
  /** Products from an earlier run of the same solver, answered in order without the operator. */
  replay?: readonly ReplayBlock[];
  /**
   * Called after each live block product, with the whole log so far (replayed blocks first), before
   * the product is handed to the solver: the place to save the state.
   */
  onBlock?: (log: readonly ReplayBlock[]) => void | Promise<void>;
}

export interface ResumableOperator extends BlockOperator {
  /** Every block so far, replayed and live, in order. */
  readonly log: readonly ReplayBlock[];
  /** How many blocks the replay holds. */
  readonly replayLength: number;
  /** Whether the latest block was answered from the replay (read it in onProgress). */
  readonly lastReplayed: boolean;
}

/** Wrap a block operator so its products are logged, and the first ones answered from `replay`. */
export function resumableOperator(op: BlockOperator, opts: ResumableOptions = {}): ResumableOperator {
  const replay = opts.replay ?? [];
  const log: ReplayBlock[] = [];
  let lastReplayed = false;
  return {
    dim: op.dim,
    log,
    replayLength: replay.length,
    get lastReplayed() {
      return lastReplayed;
    },
    async applyBlock(V) {
      const fingerprint = fingerprintVectors(V);
      const k = log.length;
      if (k < replay.length) {
        const logged = replay[k];
        if (logged.fingerprint !== fingerprint || logged.products.length !== V.length) {
          throw new ReplayMismatchError(k, `block ${k + 1} of the replay was computed from other vectors than this run asks for (another start, solver or build)`);
        }
        log.push(logged);
        lastReplayed = true;
        // Copies: the log must keep the exact values whatever the solver does with its arrays.
        return logged.products.map((w) => Float64Array.from(w));
      }
      const W = await op.applyBlock(V);
      lastReplayed = false;
      const products = W.map((w) => Float64Array.from(w));
      log.push({ fingerprint, products, productsFingerprint: fingerprintVectors(products) });
      await opts.onBlock?.(log);
      return W;
    },
  };
}

/**
 * A 128-bit fingerprint of a block of float64 vectors (their exact bit patterns, the count and the
 * lengths), as 32 hex digits. Not cryptographic: it tells two different blocks apart, which is all the
 * replay check and the state file's integrity check need, and runs anywhere (no crypto module).
 */
export function fingerprintVectors(V: readonly ArrayLike<number>[]): string {
  // Four independent murmur3-style lanes over the 32-bit words, with a final avalanche each.
  let h1 = 0x9747b28c, h2 = 0x85ebca6b ^ V.length, h3 = 0xc2b2ae35, h4 = 0x27d4eb2f;
  const word = new Float64Array(1);
  const words = new Uint32Array(word.buffer);
  const mix = (h: number, k: number, m: number) => {
    k = Math.imul(k, m);
    k = (k << 15) | (k >>> 17);
    h ^= Math.imul(k, 0x1b873593);
    h = (h << 13) | (h >>> 19);
    return (Math.imul(h, 5) + 0xe6546b64) | 0;
  };
  for (const v of V) {
    h1 = mix(h1, v.length, 0xcc9e2d51);
    for (let i = 0; i < v.length; i++) {
      word[0] = v[i];
      const lo = words[0], hi = words[1];
      h1 = mix(h1, lo, 0xcc9e2d51);
      h2 = mix(h2, hi, 0x85ebca77);
      h3 = mix(h3, lo ^ hi, 0xc2b2ae3d);
      h4 = mix(h4, (lo + i) | 0, 0x27d4eb2f);
    }
    h2 = mix(h2, h1, 0x85ebca77);
    h3 = mix(h3, h2, 0xc2b2ae3d);
    h4 = mix(h4, h3, 0x27d4eb2f);
  }
  const fmix = (h: number) => {
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
    return (h >>> 0).toString(16).padStart(8, "0");
  };
  return fmix(h1 ^ h4) + fmix(h2 ^ h1) + fmix(h3 ^ h2) + fmix(h4 ^ h3);
}
