// The setup `linearity` and `dct` share: checkpoint, layers, positions, prompts, threads, weights and
// the batched SteeringEngine (src/engine/). Where a vector file is the input (linearity), its
// metadata supplies the layers, the positions and the prompts' tokens that were not given as flags,
// so `jacsteer linearity run.safetensors` measures the run's own directions on the run's own J.
import { UsageError } from "./errors.js";
import { defaultLayers, defaultModelDir, log, resolvePrompts, promptFlags, warn, PROMPT_OPTIONS, SITE_OPTIONS } from "./session.js";
import type { Options } from "./args.js";
import { intFlag } from "./args.js";
import { threadsFlag } from "./threads.js";
import { weightsFlag, WEIGHTS_HELP } from "./weights-flag.js";
import { checkSiteLayers } from "../jacobian/steering-jacobian.js";
import { describePositions, describePositionWeights, positionsFromFlags, type Positions } from "../jacobian/positions.js";
import { SteeringEngine } from "../engine/steering-engine.js";
import { createParallelGemm } from "../node/thread-pool.js";
import { createNodeRuntime } from "../node/runtime.js";
import { openCheckpoint, type Checkpoint } from "../node/checkpoint.js";
import type { Runtime } from "../runtime/runtime.js";
import { EtaEstimator } from "../solvers/eta.js";

export const ENGINE_SESSION_OPTIONS: Options = {
  ...PROMPT_OPTIONS,
  ...SITE_OPTIONS,
  threads: { type: "string" },
  weights: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
};

/** Help lines of the shared flags (`fromFile`: the layers, positions and prompts may come from FILE). */
export function engineSessionHelp(fromFile: boolean): string {
  const dflt = (what: string) => (fromFile ? `FILE's ${what}, else ` : "");
  return `  --model DIR              checkpoint directory (default: the bundled tiny model)
  --prompt TEXT            a prompt (repeatable); --prompts FILE (one per line, or a .json array); --tokens 1,2,3 (repeatable)${fromFile ? "\n                           (default: FILE's tokens metadata, the prompts its run used)" : ""}
  --chat, --system TEXT    render prompts with the checkpoint's chat template (thinking disabled)
  --source-layer S         layer whose output receives the steering (default: ${dflt("source_layer")}scaled from the seed's 6 of 28)
  --target-layer T         layer whose output is the target (default: ${dflt("target_layer")}scaled from the seed's 20 of 28)
  --positions K            last K token positions (default: ${dflt("positions")}4); --position-list 3,7,-1, --all-positions,
                           --position-weights W,... as for power-iter
  --threads N              threads for the batched engine (default: all cores; more is capped at them)
${WEIGHTS_HELP.replace("every batch", "every pass")}  --json                   print a JSON summary on stdout
  --quiet                  no progress lines on stderr (warnings and errors still appear)
`;
}

export interface EngineSession {
  ckpt: Checkpoint;
  rt: Runtime;
  engine: SteeringEngine;
  S: number;
  T: number;
  positions: Positions;
  prompts: number[][];
  threads: number;
  close(): Promise<void>;
}

export async function openEngineSession(f: Record<string, unknown>, meta?: { file: string; metadata: Record<string, string> }): Promise<EngineSession> {
  const threads = threadsFlag(f, log);
  const weights = weightsFlag(f);
  const ckpt = openCheckpoint((f.model as string | undefined) ?? defaultModelDir());
  try {
    const L = ckpt.config.numLayers;
    const defaults = defaultLayers(L);
    const md = meta?.metadata ?? {};
    const layerFrom = (flag: string, key: string, fallback: number) => {
      if (f[flag] !== undefined) return intFlag(f, flag)!;
      if (md[key] !== undefined && /^\d+$/.test(md[key]!)) return Number(md[key]);
      return fallback;
    };
    const S = layerFrom("source-layer", "source_layer", defaults.source);
    const T = layerFrom("target-layer", "target_layer", defaults.target);
    if (f["source-layer"] === undefined || f["target-layer"] === undefined) {
      const fromFile = md.source_layer !== undefined || md.target_layer !== undefined;
      log(`jacsteer: using --source-layer ${S} --target-layer ${T} (${fromFile ? `from ${meta!.file}'s metadata where not given` : `defaults for a ${L}-layer model; the seed used 6 and 20 of 28`})`);
    }
    checkSiteLayers(L, S, T);
    const positionFlagsGiven = ["positions", "position-list", "all-positions", "position-weights"].some((k) => f[k] !== undefined);
    let positions: Positions;
    if (!positionFlagsGiven && md.positions !== undefined && /^\d+$/.test(md.positions) && !md.position_weights) {
      positions = Number(md.positions);
      log(`jacsteer: using --positions ${positions} (from ${meta!.file}'s metadata)`);
    } else {
      positions = positionsFromFlags(
        { positions: f.positions as string | undefined, positionList: f["position-list"] as string | undefined, positionWeights: f["position-weights"] as string | undefined, allPositions: !!f["all-positions"] },
        4,
      );
      if (!positionFlagsGiven && md.positions !== undefined) {
        warn(`${meta!.file} was computed at positions ${md.positions}${md.position_weights ? ` weights ${md.position_weights}` : ""} (its metadata), which are read back only as a plain K; using ${describePositions(positions)}: give --position-list/--position-weights/--all-positions to match`);
      }
    }
    const pf = promptFlags(f);
    let prompts: number[][];
    if (!pf.prompt?.length && !pf.prompts && !pf.tokens?.length && md.tokens !== undefined) {
      prompts = parseTokensMeta(md.tokens, meta!.file);
      log(`jacsteer: using the ${prompts.length} prompt(s) of ${meta!.file} (its tokens metadata)`);
    } else {
      prompts = await resolvePrompts(pf, ckpt);
    }
    const rt = await createNodeRuntime();
    log(
      `jacsteer: ${ckpt.name}: ${L} layers, hidden ${ckpt.config.hiddenSize}; S=${S} T=${T} positions ${describePositions(positions)}${describePositionWeights(positions) ? ` weights ${describePositionWeights(positions)}` : ""}; ` +
        `${prompts.length} prompt(s) of ${prompts.map((p) => p.length).join(", ")} tokens; threads ${threads}; kernels ${rt.build}`,
    );
    const gemm = await createParallelGemm(rt, threads);
    let engine: SteeringEngine;
    try {
      engine = await SteeringEngine.create(rt, ckpt.config, ckpt.tensors, prompts, { sourceLayer: S, targetLayer: T, positions }, { gemm, log, weights });
    } catch (e) {
      await gemm.close();
      throw e;
    }
    return {
      ckpt, rt, engine, S, T, positions, prompts, threads,
      close: async () => {
        await engine.close();
        ckpt.close();
      },
    };
  } catch (e) {
    ckpt.close();
    throw e;
  }
}

function parseTokensMeta(s: string, file: string): number[][] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(s);
  } catch {
    throw new UsageError(`${file}: its tokens metadata is not JSON; give the prompts with --prompt, --prompts or --tokens`);
  }
  if (!Array.isArray(parsed) || !parsed.length || !parsed.every((p) => Array.isArray(p) && p.length && p.every((t) => Number.isInteger(t) && t >= 0))) {
    throw new UsageError(`${file}: its tokens metadata is not a list of token-id lists; give the prompts with --prompt, --prompts or --tokens`);
  }
  return parsed as number[][];
}

/**
 * "ETA 1m 5s" after each of `total` passes of similar cost (src/solvers/eta.ts's fixed-count case:
 * the passes left times the mean seconds per pass so far).
 */
export function passEta(total: number): (seconds: number) => string {
  const eta = new EtaEstimator({ metricName: "pass", maxBlocks: total });
  let done = 0;
  return (seconds) => {
    eta.observe({ block: ++done, metric: 1, seconds });
    return eta.format();
  };
}
