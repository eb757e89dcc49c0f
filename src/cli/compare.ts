// `jacsteer compare A B`: cosine-similarity matrix, best matches and principal angles between two
// vector files (src/compare/). A and B are FILE (all rows) or FILE:ROW (that row).
import { parseArgs } from "node:util";
import { existsSync } from "node:fs";
import { UsageError } from "./errors.js";
import { decodeVectorFile, parseVectorRef, resolveRow, VectorFileError } from "../io/vector-file.js";
import { openSafetensorsFile } from "../node/safetensors-file.js";
import { compareVectorSets, comparisonJson, formatComparison, type SetInfo } from "../compare/compare.js";

export const COMPARE_HELP = `jacsteer compare A B: how two sets of steering vectors relate

  A, B                     vector files (safetensors with "vectors" F32 [n, d]): FILE (all its rows) or FILE:ROW
                           (one row; -1 = the last)
  --json                   print a JSON object instead of the table: cosines [A][B], best_matches,
                           principal_angles_deg, principal_cosines, ranks

Prints the cosine similarity of every vector of A with every vector of B; for each vector of A the
vector of B with the largest |cos| and the sign of that cosine (singular vectors have no preferred
sign); and the principal angles between the subspaces the two sets span (0 degrees: a shared
direction; 90: orthogonal), from an SVD of orthonormalised bases.
`;

function readSet(arg: string, which: "A" | "B"): { vectors: Float32Array[]; info: SetInfo } {
  const { file, row } = parseVectorRef(arg);
  if (!existsSync(file)) throw new VectorFileError(`${which} ${file}: file does not exist`);
  const r = openSafetensorsFile(file);
  let set;
  try {
    set = decodeVectorFile(r, file);
  } finally {
    r.close?.();
  }
  const rows = row === null ? set.vectors.map((_, i) => i) : [resolveRow(row, set.vectors.length, `${which} ${arg}`)];
  return { vectors: rows.map((i) => set.vectors[i]), info: { name: arg, rows, method: set.metadata.method } };
}

export async function compare(argv: string[]): Promise<number> {
  let values: { json?: boolean; help?: boolean };
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({ args: argv, options: { json: { type: "boolean" }, help: { type: "boolean", short: "h" } }, strict: true, allowPositionals: true }));
  } catch (e) {
    throw new UsageError((e as Error).message.split("\n")[0]);
  }
  if (values.help) {
    process.stdout.write(COMPARE_HELP);
    return 0;
  }
  if (positionals.length !== 2) throw new UsageError(`compare needs exactly two vector files, A and B (got ${positionals.length}): jacsteer compare A.safetensors B.safetensors[:ROW]`);
  const a = readSet(positionals[0], "A");
  const b = readSet(positionals[1], "B");
  const d = a.vectors[0].length;
  if (b.vectors[0].length !== d) throw new UsageError(`A ${positionals[0]} has vectors of length ${d} but B ${positionals[1]} has length ${b.vectors[0].length}: they come from models of different hidden sizes`);
  const res = compareVectorSets(a.vectors, b.vectors, {
    a: (i) => `A ${a.info.name.replace(/:\d+$/, "")}:${a.info.rows[i]}`,
    b: (j) => `B ${b.info.name.replace(/:\d+$/, "")}:${b.info.rows[j]}`,
  });
  if (values.json) process.stdout.write(JSON.stringify(comparisonJson(res, a.info, b.info), null, 2) + "\n");
  else process.stdout.write(formatComparison(res, a.info, b.info));
  if (res.rankA < a.vectors.length || res.rankB < b.vectors.length) {
    process.stderr.write(`jacsteer: note: the vectors are linearly dependent (rank A ${res.rankA} of ${a.vectors.length}, rank B ${res.rankB} of ${b.vectors.length}); principal angles use the spans\n`);
  }
  return 0;
}
