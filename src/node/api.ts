// The one-call API on Node: the same functions as the platform-neutral entry (src/api/), with `model`
// a checkpoint directory path (opened here and closed when the call ends, however it ends), the
// runtime loaded from this package's kernels, matrix products on `threads` worker threads, and the
// tokenizer read from the directory when a text needs it.
import { availableParallelism } from "node:os";
import { join } from "node:path";
import * as api from "../api/index.js";
import type { CommonOptions, OpenedModel } from "../api/common.js";
import type { Runtime } from "../runtime/runtime.js";
import { InputError } from "../model/qwen3.js";
import { openCheckpoint } from "./checkpoint.js";
import { createNodeRuntime, packageRoot } from "./runtime.js";
import { createParallelGemm } from "./thread-pool.js";
import { loadTokenizerFromDir, optionalTokenizer } from "./tokenizer-files.js";

export * from "../api/index.js";

/** The bundled tiny model (random weights: for tests and smoke runs only). */
export function bundledModelDir(): string {
  return join(packageRoot(), "models", "tiny");
}

/** What the Node functions take instead of the neutral ones' model, runtime, createGemm and tokenizer. */
export interface NodeRunOptions {
  /** A checkpoint directory (default: the bundled tiny model), or an opened checkpoint (not closed here). */
  model?: string | OpenedModel;
  /** Default: this package's kernels (relaxed SIMD where the engine allows it). */
  runtime?: Runtime;
  /** Worker threads for the batched engine (default: all cores; more is capped at them, with a log line). */
  threads?: number;
  /** Default: the checkpoint directory's tokenizer.json, read when a text needs it. */
  tokenizer?: CommonOptions["tokenizer"];
  /** @internal the CLI opens the runtime after its own checks. */
  createGemm?: CommonOptions["createGemm"];
}

export type NodeOptions<O extends CommonOptions> = Omit<O, keyof NodeRunOptions> & NodeRunOptions;

async function onNode<O extends CommonOptions, R>(o: NodeOptions<O>, call: (full: O) => Promise<R>): Promise<R> {
  const cores = Math.max(1, availableParallelism());
  let threads = o.threads ?? cores;
  if (!(Number.isInteger(threads) && threads >= 1)) throw new InputError(`--threads ${threads}: must be at least 1`);
  if (threads > cores) {
    o.log?.(`jacsteer: --threads ${threads}: this machine has ${cores} core${cores === 1 ? "" : "s"}; using ${cores}`);
    threads = cores;
  }
  const opened = typeof o.model === "object" ? null : openCheckpoint(o.model ?? bundledModelDir());
  try {
    const model: OpenedModel = opened ?? (o.model as OpenedModel);
    const dir = model.dir;
    const tokenizer = o.tokenizer !== undefined ? o.tokenizer : dir ? (required: boolean) => (required ? loadTokenizerFromDir(dir) : optionalTokenizer(dir)) : null;
    const runtime = o.runtime ?? (await createNodeRuntime());
    const createGemm = o.createGemm ?? ((rt: Runtime) => createParallelGemm(rt, threads));
    return await call({ ...o, model, runtime, threads, tokenizer, createGemm } as unknown as O);
  } finally {
    opened?.close();
  }
}

/** Top singular vectors of the steering Jacobian; `model` a checkpoint directory. See the README's "Library". */
export const powerIter = (o: NodeOptions<api.PowerIterOptions>): Promise<api.PowerIterResult> => onNode(o, api.powerIter);
/** MELBO vectors; `model` a checkpoint directory. */
export const melbo = (o: NodeOptions<api.MelboApiOptions>): Promise<api.MelboApiResult> => onNode(o, api.melbo);
/** A CAA vector; `model` a checkpoint directory. */
export const caa = (o: NodeOptions<api.CaaOptions>): Promise<api.CaaApiResult> => onNode(o, api.caa);
/** A/B logit differences per vector and scale; `model` a checkpoint directory. */
export const evalAb = (o: NodeOptions<api.EvalAbOptions>): Promise<api.EvalAbResult> => onNode(o, api.evalAb);
/** Steered generation; `model` a checkpoint directory. */
export const generate = (o: NodeOptions<api.GenerateApiOptions>): Promise<api.GenerateResult> => onNode(o, api.generate);
