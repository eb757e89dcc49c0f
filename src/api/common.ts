// What every one-call function (powerIter, melbo, caa, evalAb, generate) shares: the model as an opened
// checkpoint (any TensorSource: files on disk through jacsteer/node, fetched buffers in a browser), the
// runtime, where matrix products run, the tokenizer, progress and warnings, and cancellation.
// Platform-neutral; jacsteer/node's wrappers (src/node/api.ts) fill these in from a directory path.
import type { Runtime } from "../runtime/runtime.js";
import type { Qwen3Config } from "../model/config.js";
import type { TensorSource } from "../model/weights.js";
import type { ParallelGemm } from "../engine/parallel-gemm.js";
import type { TextTokenizer } from "../tokenizer/index.js";
import { renderPrompt } from "../tokenizer/index.js";
import { InputError } from "../model/qwen3.js";
import { defaultLayers } from "../jacobian/steering-jacobian.js";
import type { BlockOperator } from "../solvers/common.js";
import { yieldToEventLoop } from "../engine/weight-store.js";

/** An opened checkpoint: jacsteer/node's `openCheckpoint(dir)` returns one; a browser builds one from fetched files. */
export interface OpenedModel {
  config: Qwen3Config;
  /** The weights by name (safetensors names). The batched engine streams them when the source can read raw bytes. */
  tensors: TensorSource;
  /** How results name the model (default "model"). */
  name?: string;
  /** Where it came from, for the vector file's `model_path` (default ""). */
  dir?: string;
}

/** A prompt: text (needs a tokenizer) or token ids. */
export type PromptInput = string | readonly number[];

/**
 * The tokenizer, or a function that loads it when a text needs it: with `required` false it returns
 * null when the checkpoint has none; with `required` true it throws an error that names what is missing.
 */
export type TokenizerInput = TextTokenizer | null | ((required: boolean) => Promise<TextTokenizer | null>);

export interface CommonOptions {
  model: OpenedModel;
  runtime: Runtime;
  /**
   * Where matrix products run, made when the call needs them (default: this thread). The call closes
   * what it returns. jacsteer/node passes worker threads (`threads`).
   */
  createGemm?: (rt: Runtime) => Promise<ParallelGemm>;
  /** How many threads createGemm gives (for messages; jacsteer/node sets it). */
  threads?: number;
  tokenizer?: TokenizerInput;
  /** Aborting rejects the call with an AbortError at the next step (block product, optimiser step, batch, token); everything it opened is closed. */
  signal?: AbortSignal;
  /** Progress and notes, one line each (the CLI prints them on stderr). */
  log?: (line: string) => void;
  /** Results that are probably not what you wanted; also in the result's `warnings`. */
  onWarning?: (message: string) => void;
}

/** The call was cancelled through its AbortSignal. Nothing it opened is left open, and it wrote nothing. */
export class AbortError extends Error {
  constructor(message = "the operation was aborted") {
    super(message);
    this.name = "AbortError";
  }
}

/** Throw an AbortError when the signal has fired (its reason, when it is a string or an Error, is in the message). */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (!signal?.aborted) return;
  const r = signal.reason as unknown;
  const why = r instanceof Error ? r.message : typeof r === "string" ? r : "";
  throw new AbortError(why && why !== "This operation was aborted" ? `the operation was aborted: ${why}` : "the operation was aborted");
}

/** What every call's result has. */
export interface CallResult {
  /** The kernel build that ran ("relaxed-simd" or "simd"). */
  kernels: string;
  /** Wall time of the call. */
  seconds: number;
  warnings: string[];
}

/** A result that is a vector file: encodeVectorFile(result) writes the file the CLI writes. */
export interface VectorFileResult extends CallResult {
  vectors: Float32Array[];
  metadata: Record<string, string>;
}

/** Progress lines, warnings and the wall time of one call. */
export class Reporter {
  readonly warnings: string[] = [];
  readonly log: (line: string) => void;
  private readonly started = performance.now();
  constructor(private readonly o: Pick<CommonOptions, "log" | "onWarning">) {
    this.log = o.log ?? (() => {});
  }
  /** Seconds since the call began. */
  seconds(): number {
    return (performance.now() - this.started) / 1000;
  }
  warn(message: string): void {
    this.warnings.push(message);
    this.o.onWarning?.(message);
  }
}

/** The tokenizer, loaded once if given as a function. */
export class LazyTokenizer {
  private loaded: Promise<TextTokenizer | null> | undefined;
  constructor(private readonly input: TokenizerInput | undefined) {}
  /** The tokenizer, or null when there is none. */
  get(): Promise<TextTokenizer | null> {
    if (this.loaded === undefined) {
      const t = this.input;
      this.loaded = typeof t === "function" ? t(false) : Promise.resolve(t ?? null);
    }
    return this.loaded;
  }
  /** The tokenizer, or an error saying what is missing (the loader's own, naming the file, when it has one). */
  async require(what: string): Promise<TextTokenizer> {
    const t = await this.get();
    if (t) return t;
    if (typeof this.input === "function") await this.input(true);
    throw new InputError(`${what} needs a tokenizer (tokenizer.json in the checkpoint, or the tokenizer option)`);
  }
}

export interface PromptStyleOptions {
  /** Render text prompts as a user message with the chat template (generation prompt, thinking disabled). */
  chat?: boolean;
  /** A system message before it (needs chat). */
  system?: string;
}

/** Token ids of every prompt, as run: text through the tokenizer (chat template with `chat`), ids as given. */
export async function tokenizePrompts(prompts: readonly PromptInput[] | undefined, style: PromptStyleOptions, tok: LazyTokenizer): Promise<number[][]> {
  if (!prompts || prompts.length === 0) throw new InputError("no prompt given: use --prompt TEXT, --prompts FILE or --tokens 1,2,3");
  if (style.system !== undefined && !style.chat) throw new InputError("--system needs --chat");
  const hasIds = prompts.some((p) => typeof p !== "string");
  if (hasIds && style.chat) throw new InputError("--chat applies to text prompts, not to --tokens");
  const out: number[][] = [];
  for (const p of prompts) {
    if (typeof p === "string") out.push(renderPrompt(await tok.require("a text prompt"), p, { chat: !!style.chat, system: style.system }));
    else {
      if (!p.every((x) => Number.isInteger(x) && x >= 0)) throw new InputError(`--tokens ${p.join(",")}: expected comma-separated non-negative integers`);
      out.push(Array.from(p));
    }
  }
  return out;
}

export { defaultLayers };

/** The steering site's layers: as given, or the defaults for an L-layer model (with a line saying so). */
export function siteLayers(L: number, o: { sourceLayer?: number; targetLayer?: number }, log: (line: string) => void): { S: number; T: number } {
  const defaults = defaultLayers(L);
  const S = o.sourceLayer ?? defaults.source;
  const T = o.targetLayer ?? defaults.target;
  if (o.sourceLayer === undefined || o.targetLayer === undefined) {
    log(`jacsteer: using --source-layer ${S} --target-layer ${T} (defaults for a ${L}-layer model; the seed used 6 and 20 of 28)`);
  }
  return { S, T };
}

/** Layer `flag` checked against the model: an integer in 0..L-1. */
export function checkLayer(L: number, value: number, flag: string): number {
  if (!Number.isInteger(value)) throw new InputError(`${flag} ${value}: expected an integer`);
  if (value < 0 || value >= L) throw new InputError(`${flag} ${value} is out of range: the model has layers 0..${L - 1}`);
  return value;
}

/** SHA-256 hex of bytes, platform-neutral (Web Crypto: Node 20 and browsers). */
export async function sha256Hex(bytes: Uint8Array | string): Promise<string> {
  const data = typeof bytes === "string" ? new TextEncoder().encode(bytes) : bytes;
  const digest = await globalThis.crypto.subtle.digest("SHA-256", data as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Make the gemm if asked and run `body`; afterwards, whether it succeeded, failed or was aborted, close
 * the gemm (worker threads) and give back the wasm memory the call allocated (the runtime outlives it).
 */
export async function withGemm<T>(o: CommonOptions, body: (gemm: ParallelGemm | undefined) => Promise<T>): Promise<T> {
  const mark = o.runtime.heap.mark();
  const gemm = o.createGemm ? await o.createGemm(o.runtime) : undefined;
  try {
    return await body(gemm);
  } finally {
    await gemm?.close();
    o.runtime.heap.release(mark);
  }
}

/** Yield to the event loop so an abort (or a signal) can be seen between synchronous steps (the engine's yield between layers). */
export const turnEventLoop = yieldToEventLoop;

/**
 * @internal What the CLI plugs into a long call (powerIter, melbo) for --state, --resume and signals
 * (src/cli/long-run.ts); the library itself reads and writes no files.
 */
export interface LongRunHooks<Info> {
  /** Called once the run is known, before its first block: what identifies it (model, tokens, layers, ...). */
  begin?(run: Info): void;
  /** The operator the run will apply, wrapped (answers replayed from a saved state, a save after each block). */
  wrap(op: BlockOperator): BlockOperator;
  /** Runs the whole solve (the CLI handles SIGINT/SIGTERM around it). */
  run<T>(solve: () => Promise<T>): Promise<T>;
}
