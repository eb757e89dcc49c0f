// `jacsteer verify --result OURS --reference THEIRS`: is a result the same as a reference run
// (typically the seed's PyTorch procedure on a GPU)? Exit 0 on PASS, 1 on FAIL or MISMATCH.
import { existsSync } from "node:fs";
import { decodeVectorFile, VectorFileError, type VectorSet } from "../io/vector-file.js";
import { openSafetensorsFile } from "../node/safetensors-file.js";
import { compareRuns, formatReport, notCheckedWarning, verifyVectorSets, DTYPE_EPS, type VerifyOptions, type VerifyReport } from "../verify/verify.js";
import { intFlag, numberFlag, parseFlags, stringList, type Options } from "./args.js";
import { UsageError } from "./errors.js";

export const VERIFY_HELP = `jacsteer verify --result OURS.safetensors --reference THEIRS.safetensors
    [--layers S,T] [--positions K] [--tokens 1,2,3]...

Compares two vector files (safetensors: "vectors" F32 [n, d], "singular_values", run metadata; as
power-iter and reference/ write them). First the runs: other layers, positions, prompt
tokens, model or steering point are reported as a MISMATCH, not as a numerical failure. What a file
does not state (a reference from your own script may hold only vectors, singular values and layers)
is listed on one "warning: not checked" line and the numbers are still compared. Then per vector:
relative sigma error and |cos|, clusters of near-tied sigmas compared as subspaces, and the principal
angles between the two subspaces, judged by a perturbation model whose eps follows the reference's dtype
(${Object.entries(DTYPE_EPS).map(([k, v]) => `${k} ${v}`).join(", ")}).

  --eps E            relative perturbation allowed in J (overrides the dtype's)
  --safety F         factor on the bounds (default 4)
  --cluster-sin S    vectors whose Davis-Kahan bound exceeds S are judged together (default 0.05)
  --count N          compare only the first N vectors
  --json             machine-readable report on stdout

The reference's run, for a file that does not state it (a value its file does state must agree):
  --layers S,T       source and target layer
  --positions K      last K positions (or as the result's metadata writes it: list:1,3 or all)
  --tokens 1,2,3     the prompt's token ids (repeatable, one per prompt, in order)
`;

const OPTIONS: Options = {
  result: { type: "string" },
  reference: { type: "string" },
  eps: { type: "string" },
  safety: { type: "string" },
  "cluster-sin": { type: "string" },
  count: { type: "string" },
  layers: { type: "string" },
  positions: { type: "string" },
  tokens: { type: "string", multiple: true },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
};

export function readVectorSet(file: string, flag: string): VectorSet {
  if (!existsSync(file)) throw new VectorFileError(`${flag} ${file}: file does not exist`);
  const r = openSafetensorsFile(file);
  try {
    return decodeVectorFile(r, file);
  } finally {
    r.close?.();
  }
}

export function verifyOptionsFrom(f: Record<string, unknown>): VerifyOptions {
  const opts: VerifyOptions = {
    eps: numberFlag(f, "eps"),
    safety: numberFlag(f, "safety"),
    clusterSin: numberFlag(f, "cluster-sin"),
    count: intFlag(f, "count", undefined, 1),
  };
  for (const [flag, v] of [["eps", opts.eps], ["safety", opts.safety], ["cluster-sin", opts.clusterSin]] as const) {
    if (v !== undefined && !(v > 0)) throw new UsageError(`--${flag} ${v}: must be positive`);
  }
  return opts;
}

/**
 * The reference's identity from --layers S,T, --positions K and --tokens, merged into its metadata.
 * A flag that contradicts what the file states is a usage error: one of the two is wrong.
 */
export function referenceIdentityFrom(f: Record<string, unknown>, ref: VectorSet, file: string): VectorSet {
  const given: Record<string, string> = {};
  if (f.layers !== undefined) {
    const m = /^\s*(\d+)\s*,\s*(\d+)\s*$/.exec(String(f.layers));
    if (!m) throw new UsageError(`--layers ${String(f.layers)}: expected S,T (source and target layer), e.g. 6,20`);
    if (Number(m[1]) > Number(m[2])) throw new UsageError(`--layers ${String(f.layers)}: the source layer is after the target layer`);
    given.source_layer = String(Number(m[1]));
    given.target_layer = String(Number(m[2]));
  }
  if (f.positions !== undefined) {
    const p = String(f.positions).trim();
    if (!/^(\d+|all|list:\d+(,\d+)*)$/.test(p) || p === "0") throw new UsageError(`--positions ${p}: expected K (last K positions, K >= 1), list:I,J,... or all`);
    given.positions = p;
  }
  const tokens = stringList(f, "tokens");
  if (tokens.length) {
    given.tokens = JSON.stringify(
      tokens.map((t) => {
        if (!/^\s*\d+(\s*,\s*\d+)*\s*$/.test(t)) throw new UsageError(`--tokens ${t}: expected comma-separated non-negative integers`);
        return t.split(",").map(Number);
      }),
    );
  }
  for (const [key, value] of Object.entries(given)) {
    const stated = ref.metadata[key];
    if (stated !== undefined && compareRuns({ [key]: value }, { [key]: stated }, [key]).length) {
      const flag = key === "tokens" ? "--tokens" : key === "positions" ? "--positions" : "--layers";
      throw new UsageError(`${flag} gives ${key} ${value}, but ${file} states ${key} ${stated}`);
    }
  }
  return { ...ref, metadata: { ...ref.metadata, ...given } };
}

/** Print the report (table to stdout, or JSON) and the not-checked warning (stderr); return the exit code. */
export function emitReport(report: VerifyReport, json: boolean): number {
  const warning = notCheckedWarning(report);
  if (warning) process.stderr.write(`jacsteer: ${warning}\n`);
  if (json) process.stdout.write(JSON.stringify(report, null, 2) + "\n");
  else process.stdout.write(formatReport(report));
  return report.verdict === "PASS" ? 0 : 1;
}

export async function verify(argv: string[]): Promise<number> {
  const f = parseFlags(argv, OPTIONS);
  if (f.help) {
    process.stdout.write(VERIFY_HELP);
    return 0;
  }
  if (typeof f.result !== "string") throw new UsageError("--result FILE is required");
  if (typeof f.reference !== "string") throw new UsageError("--reference FILE is required");
  const opts = verifyOptionsFrom(f);
  const ours = readVectorSet(f.result, "--result");
  const ref = referenceIdentityFrom(f, readVectorSet(f.reference, "--reference"), f.reference);
  return emitReport(verifyVectorSets(ours, ref, opts), !!f.json);
}
