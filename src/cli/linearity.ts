// `jacsteer linearity FILE[:ROW]`: how far each direction of a vector file can be pushed before the
// steering Jacobian stops describing it (src/linearity/). Writes a JSON result (`--out`) that
// `jacsteer report --linearity` plots.
import { parseFlagsAndPositionals, type Options } from "./args.js";
import { positiveNumber } from "./melbo.js";
import { UsageError } from "./errors.js";
import { checkOutPath, log, warn, warnings } from "./session.js";
import { ENGINE_SESSION_OPTIONS, engineSessionHelp, openEngineSession, passEta } from "./engine-session.js";
import { readVectorSet } from "./verify.js";
import { parseVectorRef, resolveRow } from "../io/vector-file.js";
import { writeFileAtomic } from "../node/safetensors-file.js";
import { describePositions, describePositionWeights } from "../jacobian/positions.js";
import { DEFAULT_RADIUS_FRACTIONS, DEFAULT_TARGET_RATIO, linearity as runLinearity, unitVectors } from "../linearity/linearity.js";
import { DEFAULT_RADIUS_FACTOR, defaultRadius } from "../melbo/melbo.js";
import { LINEARITY_FORMAT, type LinearityFile } from "../report/linearity.js";

export const LINEARITY_HELP = `jacsteer linearity FILE[:ROW]: how far each direction can be pushed before the Jacobian stops describing it.
For each row v of FILE (made unit length) and each radius r:
  ratio(r) = ||Delta(r v) - r J v|| / ||r J v||,   Delta(r v) = target(sv0 + r v) - target(sv0)
with target and J as power-iter's (layer T's output at the target positions of every prompt), and the
radius where the ratio first reaches the target (interpolated on log-log axes between the radii).
One batched J V, then one nonlinear pass per radius with all rows stacked.

  FILE[:ROW]               a vector file (every row, or row ROW; -1 = the last)
  --radii R1,R2,...        radii (norms of the steering vector added), increasing
  --radius-fracs F1,...    radii as fractions of the median norm of the layer-S output over all positions
                           of the prompts (default ${DEFAULT_RADIUS_FRACTIONS.join(",")})
  --target-ratio X         the ratio whose radius is reported (default ${DEFAULT_TARGET_RATIO}, the value Mack's DCT calibrates to)
  --out FILE.json          write the result (for \`jacsteer report --linearity FILE.json\`), atomically
${engineSessionHelp(true)}`;

const OPTIONS: Options = {
  ...ENGINE_SESSION_OPTIONS,
  radii: { type: "string" },
  "radius-fracs": { type: "string" },
  "target-ratio": { type: "string" },
  out: { type: "string" },
};

function numberList(s: string, flag: string): number[] {
  const parts = s.split(",").map((x) => x.trim());
  const xs = parts.map(Number);
  if (parts.some((p) => p === "") || xs.some((x) => !Number.isFinite(x) || x <= 0)) throw new UsageError(`${flag} ${s}: expected comma-separated positive numbers`);
  for (let i = 1; i < xs.length; i++) if (!(xs[i]! > xs[i - 1]!)) throw new UsageError(`${flag} ${s}: the values must be increasing`);
  return xs;
}

export async function linearity(argv: string[]): Promise<number> {
  const { values: f, positionals } = parseFlagsAndPositionals(argv, OPTIONS);
  if (f.help) {
    process.stdout.write(LINEARITY_HELP);
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError(positionals.length ? `expected one vector file, got ${positionals.length}: ${positionals.join(" ")}` : "no vector file: jacsteer linearity FILE[:ROW]");
  if (f.radii !== undefined && f["radius-fracs"] !== undefined) throw new UsageError("--radii and --radius-fracs cannot be combined: choose one");
  const radiiFlag = f.radii === undefined ? undefined : numberList(f.radii as string, "--radii");
  const fracs = f["radius-fracs"] === undefined ? DEFAULT_RADIUS_FRACTIONS : numberList(f["radius-fracs"] as string, "--radius-fracs");
  const target = positiveNumber(f, "target-ratio", DEFAULT_TARGET_RATIO)!;
  const out = f.out as string | undefined;
  checkOutPath(out, ".json");

  const arg = positionals[0]!;
  const { file, row } = parseVectorRef(arg);
  const set = readVectorSet(file, "FILE");
  const rows = row === null ? set.vectors.map((_, i) => i) : [resolveRow(row, set.vectors.length, arg)];
  const started = performance.now();
  const session = await openEngineSession(f, { file, metadata: set.metadata });
  try {
    const { engine, S, T, positions, prompts, ckpt } = session;
    const d = engine.inputDim;
    if (set.vectors[0]!.length !== d) throw new UsageError(`${file}: vectors have length ${set.vectors[0]!.length}, the model's hidden size is ${d}`);
    const fileS = set.metadata.source_layer;
    if (fileS !== undefined && /^\d+$/.test(fileS) && Number(fileS) !== S) warn(`${file} was computed at source_layer ${fileS} (its metadata) but is measured at layer ${S}`);
    const { units, norms } = unitVectors(rows.map((r) => set.vectors[r]!), file);
    const medianNorm = defaultRadius(engine.sourceRowNorms()) / DEFAULT_RADIUS_FACTOR;
    const radii = radiiFlag ?? fracs.map((x) => x * medianNorm);
    log(
      `linearity: ${units.length} direction(s), ${radii.length} radii ${radii[0]!.toPrecision(4)}..${radii.at(-1)!.toPrecision(4)}` +
        `${radiiFlag ? "" : ` (${fracs[0]}..${fracs.at(-1)} x the median layer-${S} norm ${medianNorm.toPrecision(5)})`}; target ratio ${target}; ${radii.length + 1} passes`,
    );
    const eta = passEta(radii.length + 1);
    const result = await runLinearity(engine, units, {
      radii,
      target,
      onPass: ({ pass, passes, seconds, radius }) =>
        log(`linearity: pass ${pass}/${passes} (${radius === null ? "J V" : `radius ${radius.toPrecision(5)}`}): ${seconds.toFixed(2)} s, ${eta(seconds)}`),
    });
    const seconds = (performance.now() - started) / 1000;
    result.status.forEach((st, j) => {
      if (st === "below-range") warn(`row ${rows[j]}: the ratio is ${result.ratios[j]![0]!.toPrecision(3)} >= ${target} already at the smallest radius ${radii[0]!.toPrecision(4)}: give smaller radii`);
      if (st === "no-linear-part") warn(`row ${rows[j]}: J v = 0 (the target does not move to first order): the ratio is undefined`);
      if (result.nonMonotone[j]) {
        warn(`row ${rows[j]}: the ratio falls by more than 10% between consecutive radii somewhere (${result.ratios[j]!.map((x) => x.toPrecision(2)).join(", ")}): float32 rounding at the smallest radii, or a saturating nonlinearity; read the curve, not only the crossing`);
      }
    });
    const doc: LinearityFile = {
      format: LINEARITY_FORMAT,
      file,
      rows,
      model: ckpt.name,
      source_layer: S,
      target_layer: T,
      positions: describePositions(positions),
      position_weights: describePositionWeights(positions) || null,
      tokens: prompts,
      method: set.metadata.method ?? null,
      target_ratio: target,
      median_source_norm: medianNorm,
      radii,
      radius_fractions: radiiFlag ? null : fracs,
      vectors: rows.map((r, j) => ({
        row: r,
        norm: norms[j]!,
        jv_norm: result.jvNorms[j]!,
        ratios: result.ratios[j]!,
        delta_norms: result.deltaNorms[j]!,
        radius_at_target: result.radiusAtTarget[j]!,
        radius_at_target_fraction: result.radiusAtTarget[j] === null ? null : result.radiusAtTarget[j]! / medianNorm,
        status: result.status[j]!,
        non_monotone: result.nonMonotone[j]!,
      })),
      passes: result.passes,
      threads: session.threads,
      seconds,
      kernels: session.rt.build,
    };
    if (out !== undefined) {
      writeFileAtomic(out, JSON.stringify(doc, null, 2) + "\n");
      log(`jacsteer: wrote ${out}`);
    }
    if (f.json) {
      process.stdout.write(JSON.stringify({ ...doc, out: out ?? null, warnings: warnings() }, null, 2) + "\n");
    } else {
      const lines = [`  row  ||J v||      radius at ratio ${target}  (x median layer-${S} norm)  ratio at each radius`];
      doc.vectors.forEach((v) => {
        const at = v.radius_at_target === null ? (v.status === "below-range" ? `< ${radii[0]!.toPrecision(4)}` : v.status === "not-reached" ? `> ${radii.at(-1)!.toPrecision(4)}` : "undefined") : v.radius_at_target.toPrecision(5);
        const frac = v.radius_at_target_fraction === null ? "" : v.radius_at_target_fraction.toPrecision(3);
        lines.push(`${String(v.row).padStart(5)}  ${v.jv_norm.toPrecision(5).padEnd(11)}  ${at.padEnd(22)}  ${frac.padEnd(26)}  ${v.ratios.map((x) => x.toPrecision(2)).join(" ")}`);
      });
      lines.push(`radii: ${radii.map((r) => r.toPrecision(4)).join(" ")}`);
      lines.push(`${rows.length} direction(s), ${result.passes} passes, ${seconds.toFixed(2)} s`);
      process.stdout.write(lines.join("\n") + "\n");
    }
    return 0;
  } finally {
    await session.close();
  }
}
