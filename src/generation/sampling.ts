// Choosing the next token from a row of logits: greedy (argmax) or temperature sampling with an
// optional nucleus (top-p) cut, as transformers' TemperatureLogitsWarper + TopPLogitsWarper do.
// Probabilities are formed in float64 so the choice does not depend on the order of f32 rounding.

export interface SamplingOptions {
  /** 0 = greedy (argmax); > 0 divides the logits before the softmax. */
  temperature: number;
  /** Keep the smallest set of most likely tokens whose probability reaches topP (1 = all). */
  topP: number;
}

/** Index of the largest logit; the first one on ties (torch.argmax does the same). NaN is never chosen. */
export function argmax(logits: ArrayLike<number>): number {
  let best = -1;
  let bestValue = -Infinity;
  for (let i = 0; i < logits.length; i++) {
    if (logits[i] > bestValue || (best < 0 && logits[i] === -Infinity)) {
      best = i;
      bestValue = logits[i];
    }
  }
  if (best < 0) throw new Error("argmax: no finite logit (all NaN?)");
  return best;
}

/** softmax(logits / temperature) in float64. */
export function softmaxWithTemperature(logits: ArrayLike<number>, temperature: number): Float64Array {
  if (!(temperature > 0)) throw new RangeError(`temperature ${temperature} must be positive`);
  const n = logits.length;
  let m = -Infinity;
  for (let i = 0; i < n; i++) if (logits[i] > m) m = logits[i];
  const p = new Float64Array(n);
  let z = 0;
  for (let i = 0; i < n; i++) {
    const e = Math.exp((logits[i] - m) / temperature);
    p[i] = Number.isNaN(e) ? 0 : e;
    z += p[i];
  }
  for (let i = 0; i < n; i++) p[i] /= z;
  return p;
}

/**
 * The nucleus: zero every token outside the smallest set of most probable tokens whose total reaches
 * topP (ties broken by lower index; the most probable token is always kept). Returns the kept mass.
 */
export function applyTopP(p: Float64Array, topP: number): number {
  if (!(topP > 0 && topP <= 1)) throw new RangeError(`top-p ${topP} must be in (0, 1]`);
  if (topP === 1) return p.reduce((a, b) => a + b, 0);
  const order = Array.from(p.keys()).sort((i, j) => p[j] - p[i] || i - j);
  let kept = 0;
  let k = 0;
  while (k < order.length && (k === 0 || kept < topP)) kept += p[order[k++]];
  for (; k < order.length; k++) p[order[k]] = 0;
  return kept;
}

/** Greedy when temperature is 0; otherwise one draw (inverse CDF in token order) using `uniform()` in [0, 1). */
export function chooseToken(logits: ArrayLike<number>, opts: SamplingOptions, uniform: () => number): number {
  if (opts.temperature === 0) return argmax(logits);
  const p = softmaxWithTemperature(logits, opts.temperature);
  const total = applyTopP(p, opts.topP);
  const target = uniform() * total;
  let acc = 0;
  let last = -1;
  for (let i = 0; i < p.length; i++) {
    if (p[i] === 0) continue;
    last = i;
    acc += p[i];
    if (target < acc) return i;
  }
  return last; // rounding left target just above the running sum: the last kept token
}
