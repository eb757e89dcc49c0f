// Long runs of `jacsteer power-iter`: an ETA on each progress line, --state FILE (the replay log of
// src/solvers/replay.ts, saved atomically after every block product), --resume FILE, and SIGINT/SIGTERM
// (one line on how to resume, exit 130/143). power-iter.ts and melbo.ts hand it to the library call
// as its hooks (LongRunHooks, src/api/common.ts); the solvers do not know about any of it.
import { existsSync, readFileSync, statSync, writeSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { createHash } from "node:crypto";
import type { Options } from "./args.js";
import { UsageError } from "./errors.js";
import { writeFileAtomic } from "../node/safetensors-file.js";
import { decodeStateFile, encodeStateFile, StateFileError, type SolverState } from "../io/state-file.js";
import { modelConfigKey, svBytes } from "../io/run-identity.js";
import { describePositions, describePositionWeights, type Positions } from "../jacobian/positions.js";
import { resumableOperator, ReplayMismatchError, type ReplayBlock, type ResumableOperator } from "../solvers/replay.js";
import { solverEta, solverEtaMetric, type EtaEstimator } from "../solvers/eta.js";
import type { BlockOperator, Progress } from "../solvers/common.js";
import type { Qwen3Config } from "../model/config.js";
import { turnEventLoop } from "../api/common.js";
import type { MelboRunInfo } from "../api/melbo.js";

export const LONG_RUN_OPTIONS: Options = {
  state: { type: "string" },
  resume: { type: "string" },
};

/** What identifies a run: the flags and inputs that change the sequence of block products. */
export interface RunIdentityInput {
  config: Qwen3Config;
  modelName: string;
  prompts: number[][];
  sourceLayer: number;
  targetLayer: number;
  positions: Positions;
  method: string;
  numVectors: number;
  /** Vectors per product (Lanczos; the whole block for power iteration). */
  blockSize: number;
  tol: number;
  maxIters: number | undefined;
  seed: number;
  init: readonly Float64Array[] | undefined;
  at: Float32Array | undefined;
  /** The kernel build: relaxed SIMD (fused multiply-add) and plain SIMD round differently. */
  kernels: string;
}

/** How each identity field is named when it differs. */
const FIELD_NAMES: Record<string, string> = {
  model_config: "the model's shape (model_config)",
  model: "the model (--model)",
  tokens: "the prompt (its tokens)",
  source_layer: "--source-layer",
  target_layer: "--target-layer",
  positions: "the positions",
  position_weights: "--position-weights",
  method: "--method",
  num_vectors: "--num-vectors",
  block_size: "--block-size",
  tol: "--tol",
  max_iters: "--max-iters",
  seed: "--seed",
  init_sha256: "--init",
  at_sha256: "--at (with --at-scale)",
  kernels: "the kernel build",
  steps: "--steps",
  radius: "--radius (or its default from the model)",
  p: "--p",
  q: "--q",
  lr: "--lr",
  weight_decay: "--weight-decay",
};

/** The identity fields every long run shares: the model, the prompts and the steering site. */
function siteIdentity(r: Pick<RunIdentityInput, "config" | "modelName" | "prompts" | "sourceLayer" | "targetLayer" | "positions">): Record<string, string> {
  return {
    model_config: modelConfigKey(r.config),
    model: r.modelName,
    tokens: JSON.stringify(r.prompts),
    source_layer: String(r.sourceLayer),
    target_layer: String(r.targetLayer),
    positions: describePositions(r.positions),
    position_weights: describePositionWeights(r.positions),
  };
}

export function runIdentity(r: RunIdentityInput): Record<string, string> {
  const sha = (bytes: Uint8Array | null) => (bytes ? createHash("sha256").update(bytes).digest("hex") : "");
  const initBytes = r.init ? new Uint8Array(Float64Array.from(r.init.flatMap((v) => Array.from(v))).buffer) : null;
  return {
    ...siteIdentity(r),
    method: r.method,
    num_vectors: String(r.numVectors),
    block_size: String(r.blockSize),
    tol: String(r.tol),
    max_iters: r.maxIters === undefined ? "" : String(r.maxIters),
    seed: String(r.seed),
    init_sha256: sha(initBytes),
    at_sha256: sha(svBytes(r.at)),
    kernels: r.kernels,
  };
}

export interface StateFlags {
  /** Where the state is saved after each block (--state, else the --resume file). */
  statePath?: string;
  resumePath?: string;
  /** The --resume file, read and checked as a file (not yet against this run). */
  resumed?: SolverState;
}

/**
 * Check --state and --resume before any work: the resume file must be a state file, and --state must
 * not overwrite an existing file that is not being resumed (it may hold hours of products).
 */
export function stateFlags(f: Record<string, unknown>): StateFlags {
  const statePath = f.state as string | undefined;
  const resumePath = f.resume as string | undefined;
  let resumed: SolverState | undefined;
  if (resumePath !== undefined) {
    if (!existsSync(resumePath)) throw new UsageError(`--resume ${resumePath}: file does not exist`);
    let bytes: Uint8Array;
    try {
      bytes = readFileSync(resumePath);
    } catch (e) {
      throw new UsageError(`--resume ${resumePath}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    resumed = decodeStateFile(bytes, `--resume ${resumePath}`);
  }
  if (statePath !== undefined) {
    const dir = dirname(resolve(statePath));
    if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new UsageError(`--state ${statePath}: directory ${dir} does not exist`);
    const same = resumePath !== undefined && resolve(resumePath) === resolve(statePath);
    if (!same && existsSync(statePath)) throw new UsageError(`--state ${statePath}: the file exists; add --resume ${statePath} to continue that run, or remove it`);
  }
  return { statePath: statePath ?? resumePath, resumePath, resumed };
}

export interface LongRunOptions extends StateFlags {
  identity: Record<string, string>;
  dim: number;
  /** lanczos or power (a solver run to a tolerance), or melbo: a fixed count of blocks (maxIters). */
  method: string;
  tol: number;
  maxIters: number | undefined;
  /** What one block is called in the interrupt line (default "block product"). */
  unit?: string;
  log: (msg: string) => void;
}

/** What identifies a MELBO run: every flag and input that changes the sequence of evaluations. */
export interface MelboIdentityInput extends Omit<MelboRunInfo, "evaluations">, Pick<RunIdentityInput, "config" | "modelName"> {}

export function melboIdentity(r: MelboIdentityInput): Record<string, string> {
  return {
    ...siteIdentity(r),
    method: "melbo",
    num_vectors: String(r.numVectors),
    steps: String(r.steps),
    radius: String(r.radius),
    p: String(r.p),
    q: String(r.q),
    lr: String(r.lr),
    weight_decay: String(r.weightDecay),
    seed: String(r.seed),
    kernels: r.kernels,
  };
}

/** One solver run with state saving, resuming, an ETA and interrupt handling. */
export class LongRun {
  private readonly eta: EtaEstimator;
  private op: ResumableOperator | undefined;
  private lastTime = performance.now();
  /** Blocks in the state file on disk. */
  private saved = 0;

  constructor(private readonly o: LongRunOptions) {
    if (o.resumed) {
      checkIdentity(o.resumed, o.identity, o.dim, o.resumePath!);
      this.saved = o.resumed.blocks.length;
    }
    this.eta = solverEta(o.method, o.tol, o.maxIters);
  }

  /** The operator to hand the solver: answers from the --resume log first, saves after each block. */
  wrap(op: BlockOperator): ResumableOperator {
    // Write the state before the first product (not earlier: a run that fails while loading the model
    // should leave no file), so the file is a valid state, empty or copied from --resume, from the start.
    const o = this.o;
    if (o.statePath !== undefined && (o.resumePath === undefined || resolve(o.resumePath) !== resolve(o.statePath))) this.save(o.resumed?.blocks ?? []);
    const resumable = resumableOperator(op, {
      replay: this.o.resumed?.blocks,
      onBlock: this.o.statePath === undefined ? undefined : (log) => this.save(log),
    });
    this.op = resumable;
    if (this.o.resumed) this.o.log(`jacsteer: resuming from ${this.o.resumePath}: replaying its ${this.o.resumed.blocks.length} ${this.o.unit ?? "block product"}s`);
    return {
      dim: resumable.dim,
      log: resumable.log,
      replayLength: resumable.replayLength,
      get lastReplayed() {
        return resumable.lastReplayed;
      },
      applyBlock: async (V) => {
        const W = await resumable.applyBlock(V);
        // A block product may complete without ever leaving the microtask queue (small products run on
        // this thread), and a signal is only handled on an event-loop turn: take one after each block,
        // once its state is saved.
        await turnEventLoop();
        return W;
      },
    };
  }

  /** Print a progress line with the ETA; replayed blocks print nothing but the last one. */
  progress(p: Progress, line: string): void {
    this.observe(p.iteration, solverEtaMetric(this.o.method, p), line);
  }

  /**
   * A run of a fixed count of blocks (MELBO): `block` of them done; `line` (or null: time it, print
   * nothing) gets the ETA.
   */
  step(block: number, line: string | null): void {
    this.observe(block, Number.NaN, line);
  }

  private observe(block: number, metric: number, line: string | null): void {
    const now = performance.now();
    const replayed = this.op?.lastReplayed ?? false;
    this.eta.observe({ block, metric, seconds: replayed ? undefined : (now - this.lastTime) / 1000 });
    this.lastTime = now;
    if (line === null || (replayed && block < (this.op?.replayLength ?? 0))) return;
    this.o.log(`${line} | ${replayed ? "replayed" : this.eta.format()}`);
  }

  /** Run the solve with SIGINT/SIGTERM handled: one line on how to resume, exit 130/143. */
  async run<T>(solve: () => Promise<T>): Promise<T> {
    // The state after the last complete block is already on disk (saved synchronously, so a signal,
    // which is handled between event-loop turns, never finds a half-written temporary file). Exiting
    // ends the worker threads too; --out is only written after the solve, so none exists yet.
    const onSignal = (signal: NodeJS.Signals) => {
      this.o.log(this.interruptMessage(signal));
      process.exit(signal === "SIGINT" ? 130 : 143);
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
    this.lastTime = performance.now();
    try {
      const result = await solve();
      await turnEventLoop(); // a signal that came during the last block is handled as during any other
      return result;
    } catch (e) {
      if (e instanceof ReplayMismatchError) throw new StateFileError(`the state file ${this.o.resumePath} does not belong to this run: ${e.message}`);
      throw e;
    } finally {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
    }
  }

  private interruptMessage(signal: NodeJS.Signals): string {
    const unit = this.o.unit ?? "block product";
    const blocks = `${this.saved} ${unit}${this.saved === 1 ? "" : "s"}`;
    if (this.o.statePath === undefined) {
      return `jacsteer: interrupted (${signal}); nothing was saved (run with --state FILE to be able to resume)`;
    }
    return `jacsteer: interrupted (${signal}); the state after ${blocks} is in ${this.o.statePath}: to continue, run the same command with --resume ${this.o.statePath}`;
  }

  private save(blocks: readonly ReplayBlock[]): void {
    const parts = encodeStateFile({ dim: this.o.dim, identity: this.o.identity, blocks });
    writeFileAtomic(this.o.statePath!, (fd) => {
      for (const p of parts) {
        let done = 0;
        while (done < p.length) done += writeSync(fd, p, done, p.length - done);
      }
    });
    this.saved = blocks.length;
  }
}


function checkIdentity(state: SolverState, identity: Record<string, string>, dim: number, path: string): void {
  const show = (s: string | undefined) => (s === undefined ? "(none)" : s === "" ? "(none)" : s.length > 48 ? `${s.slice(0, 45)}...` : s);
  const fail = (what: string) => {
    throw new StateFileError(`the state file ${path} does not belong to this run: ${what}`);
  };
  if (state.dim !== dim) fail(`the vector length differs (the file's run: ${state.dim}, this run: ${dim})`);
  for (const key of new Set([...Object.keys(identity), ...Object.keys(state.identity)])) {
    const a = state.identity[key], b = identity[key];
    if (a !== b) fail(`${FIELD_NAMES[key] ?? key} differs (the file's run: ${show(a)}, this run: ${show(b)})`);
  }
}
