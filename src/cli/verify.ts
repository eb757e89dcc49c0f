// `jacsteer verify --result OURS --reference THEIRS`: is a result the same as a reference run
// (typically the seed's PyTorch procedure on a GPU)? Exit 0 on PASS, 1 on FAIL or MISMATCH.
import { existsSync } from "node:fs";
import { decodeVectorFile, VectorFileError, type VectorSet } from "../io/vector-file.js";
import { openSafetensorsFile } from "../node/safetensors-file.js";
import { formatReport, verifyVectorSets, DTYPE_EPS, type VerifyOptions, type VerifyReport } from "../verify/verify.js";
import { intFlag, numberFlag, parseFlags, type Options } from "./args.js";
import { UsageError } from "./errors.js";

export const VERIFY_HELP = `jacsteer verify --result OURS.safetensors --reference THEIRS.safetensors

Compares two vector files (safetensors: "vectors" F32 [n, d], "singular_values", run metadata; as
power-iter and reference/ write them). First the runs: other layers, positions, prompt
tokens, model or steering point are reported as a MISMATCH, not as a numerical failure. Then per vector:
relative sigma error and |cos|, clusters of near-tied sigmas compared as subspaces, and the principal
angles between the two subspaces, judged by a perturbation model whose eps follows the reference's dtype
(${Object.entries(DTYPE_EPS).map(([k, v]) => `${k} ${v}`).join(", ")}).

  --eps E            relative perturbation allowed in J (overrides the dtype's)
  --safety F         factor on the bounds (default 4)
  --cluster-sin S    vectors whose Davis-Kahan bound exceeds S are judged together (default 0.05)
  --count N          compare only the first N vectors
  --json             machine-readable report on stdout
`;

const OPTIONS: Options = {
  result: { type: "string" },
  reference: { type: "string" },
  eps: { type: "string" },
  safety: { type: "string" },
  "cluster-sin": { type: "string" },
  count: { type: "string" },
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

/** Print the report (table to stdout, or JSON) and return the exit code. */
export function emitReport(report: VerifyReport, json: boolean): number {
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
  const ref = readVectorSet(f.reference, "--reference");
  return emitReport(verifyVectorSets(ours, ref, opts), !!f.json);
}
