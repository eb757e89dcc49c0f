// Axis scales and tick choice for the report's plots (platform-neutral, no DOM).
//
// Linear axes use "nice" steps 1, 2, 2.5, 5 x 10^k, and the domain is widened to whole steps so the
// first and last ticks sit on the axis ends. Log axes keep the data's range (a spectrum often spans
// less than one decade; widening to [1, 10] would squash it) and label 1-2-5 x 10^k inside it, or
// every integer multiple of 10^k when that gives too few, or linear nice ticks as a last resort.

export interface Scale {
  /** data value -> pixel */
  (x: number): number;
  domain: [number, number];
  range: [number, number];
  kind: "linear" | "log";
}

export function linearScale(domain: [number, number], range: [number, number]): Scale {
  const [d0, d1] = domain, [r0, r1] = range;
  const span = d1 - d0;
  if (!(Number.isFinite(d0) && Number.isFinite(d1)) || span === 0) throw new Error(`linearScale: bad domain [${d0}, ${d1}]`);
  const f = ((x: number) => r0 + ((x - d0) / span) * (r1 - r0)) as Scale;
  f.domain = [d0, d1];
  f.range = [r0, r1];
  f.kind = "linear";
  return f;
}

export function logScale(domain: [number, number], range: [number, number]): Scale {
  const [d0, d1] = domain, [r0, r1] = range;
  if (!(d0 > 0 && d1 > 0 && Number.isFinite(d0) && Number.isFinite(d1)) || d0 === d1) throw new Error(`logScale: bad domain [${d0}, ${d1}]`);
  const l0 = Math.log10(d0), span = Math.log10(d1) - l0;
  const f = ((x: number) => r0 + ((Math.log10(x) - l0) / span) * (r1 - r0)) as Scale;
  f.domain = [d0, d1];
  f.range = [r0, r1];
  f.kind = "log";
  return f;
}

/**
 * The step 1, 2 or 5 x 10^k nearest (in ratio) to span / target, as d3's tickIncrement chooses it;
 * 2.5 is left out: its ticks (-12.5, -7.5) read worse than the extra or missing tick costs.
 */
export function niceStep(span: number, target: number, integer = false): number {
  const raw = span / Math.max(1, target);
  const k = Math.floor(Math.log10(raw));
  const m = raw / 10 ** k;
  const mult = m >= Math.sqrt(50) ? 10 : m >= Math.sqrt(10) ? 5 : m >= Math.sqrt(2) ? 2 : 1;
  let step = mult * 10 ** k;
  // An index axis: whole steps only.
  if (integer && !Number.isInteger(step)) step = step < 1 ? 1 : Math.round(step);
  return step;
}

/** Digits after the point that a tick step needs (0.25 -> 2, 2.5 -> 1, 50 -> 0). */
export function stepDecimals(step: number): number {
  for (let d = 0; d < 12; d++) {
    const scaled = step * 10 ** d;
    if (Math.round(scaled) >= 1 && Math.abs(scaled - Math.round(scaled)) < 1e-6 * scaled) return d;
  }
  return 12;
}

export interface Ticks {
  /** the (possibly widened) domain the axis should use */
  domain: [number, number];
  values: number[];
  labels: string[];
}

/** Pad a degenerate range (all values equal) so that a scale can be built. */
export function padRange(lo: number, hi: number): [number, number] {
  if (!(Number.isFinite(lo) && Number.isFinite(hi))) throw new Error(`padRange: non-finite range [${lo}, ${hi}]`);
  if (lo > hi) [lo, hi] = [hi, lo];
  if (hi > lo) return [lo, hi];
  const pad = lo === 0 ? 1 : Math.abs(lo) * 0.1;
  return [lo - pad, hi + pad];
}

/**
 * About `target` ticks on a linear axis covering [lo, hi]; the domain is widened to whole steps.
 * `integer`: steps of at least 1 and integer tick values (an index axis).
 */
export function niceTicks(lo: number, hi: number, target = 5, integer = false): Ticks {
  [lo, hi] = padRange(lo, hi);
  const step = niceStep(hi - lo, target, integer);
  const first = Math.floor(lo / step + 1e-9), last = Math.ceil(hi / step - 1e-9);
  const values: number[] = [];
  // 12 significant digits drop float noise (3 x 0.1 = 0.30000000000000004) at any magnitude.
  for (let i = first; i <= last; i++) values.push(i === 0 ? 0 : Number((i * step).toPrecision(12)));
  return { domain: [values[0], values[values.length - 1]], values, labels: values.map((v) => formatTick(v, step)) };
}

/**
 * Ticks of an index axis over the integers lo..hi (the domain is kept): multiples of a 1-2-5 step,
 * the smallest step that gives at most `maxTicks` ticks.
 */
export function integerTicks(lo: number, hi: number, maxTicks = 10): Ticks {
  lo = Math.floor(lo);
  hi = Math.max(Math.ceil(hi), lo + 1);
  let step = 1;
  for (let k = 0; (hi - lo) / step + 1 > Math.max(2, maxTicks); k++) step = [1, 2, 5][(k + 1) % 3] * 10 ** Math.floor((k + 1) / 3);
  const values: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi; v += step) values.push(v);
  return { domain: [lo, hi], values, labels: values.map(String) };
}

/** Ticks of a log axis over [lo, hi] (both > 0); the domain is kept. */
export function logTicks(lo: number, hi: number, minTicks = 3): Ticks {
  if (!(lo > 0 && hi > 0)) throw new Error(`logTicks: range [${lo}, ${hi}] is not positive`);
  if (lo > hi) [lo, hi] = [hi, lo];
  if (lo === hi) [lo, hi] = [lo / 1.5, hi * 1.5];
  const k0 = Math.floor(Math.log10(lo)), k1 = Math.ceil(Math.log10(hi));
  const inside = (mults: number[]) => {
    const out: number[] = [];
    for (let k = k0; k <= k1; k++) {
      for (const m of mults) {
        const v = Number((m * 10 ** k).toPrecision(12));
        if (v >= lo * (1 - 1e-12) && v <= hi * (1 + 1e-12)) out.push(v);
      }
    }
    return out;
  };
  const decades = inside([1]);
  // Many decades: label every decade, or every few so that at most ~8 labels remain.
  if (decades.length >= minTicks) {
    const every = Math.ceil(decades.length / 8);
    const values = decades.filter((_, i) => i % every === 0);
    return { domain: [lo, hi], values, labels: values.map(formatLogTick) };
  }
  let values = inside([1, 2, 5]);
  if (values.length < minTicks) values = inside([1, 2, 3, 4, 5, 6, 7, 8, 9]);
  if (values.length >= 2 && values.length <= 12) return { domain: [lo, hi], values, labels: values.map(formatLogTick) };
  if (values.length > 12) {
    values = inside([1, 2, 5]);
    return { domain: [lo, hi], values, labels: values.map(formatLogTick) };
  }
  // Less than one ninth of a decade: linear nice ticks inside the range read better.
  const step = niceStep(hi - lo, 4);
  const lin: number[] = [];
  for (let i = Math.ceil(lo / step - 1e-9); i * step <= hi * (1 + 1e-12); i++) lin.push(Number((i * step).toPrecision(12)));
  return { domain: [lo, hi], values: lin, labels: lin.map((v) => formatTick(v, step)) };
}

/** A tick label with as many decimals as the step needs; exponent notation for very large or small values. */
export function formatTick(v: number, step: number): string {
  const a = Math.abs(v);
  if (a >= 1e6 || step < 1e-4) return a < step * 1e-9 ? "0" : trimExponent(v.toExponential(stepDecimals(step / 10 ** Math.floor(Math.log10(a)))));
  // Every label of an axis gets the same number of decimals (0.0, 0.5, 1.0), as the step needs.
  return (a < step * 1e-9 ? 0 : v).toFixed(Math.min(12, stepDecimals(step)));
}

function formatLogTick(v: number): string {
  if (v >= 1e-3 && v < 1e5) return String(Number(v.toPrecision(6)));
  return trimExponent(v.toExponential());
}

/** "1.0e+5" -> "1e5", "2.5e-7" -> "2.5e-7". */
function trimExponent(s: string): string {
  return s.replace(/\.?0+e/, "e").replace("e+", "e");
}

/** A compact, readable number for tables and legends (4 significant digits, no trailing zeros). */
export function formatNumber(v: number | null | undefined, digits = 4): string {
  if (v === null || v === undefined) return "–";
  if (Number.isNaN(v)) return "NaN";
  if (!Number.isFinite(v)) return v > 0 ? "∞" : "−∞";
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1e6 || a < 1e-4) return trimExponent(v.toExponential(digits - 1));
  return String(Number(v.toPrecision(digits)));
}
