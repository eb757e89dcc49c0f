// Plain float64 references for the kernels, written for clarity, not speed, and independently of
// the kernels' code. Inputs are Float32Array or number arrays (the f32 values the kernels see);
// outputs are Float64Array. Derivative references (jvp / vjp) are the analytic f64 formulas; tests
// also check them against central finite differences (`centralDifference`).

export type Vec = ArrayLike<number>;

// ---------------------------------------------------------------------------------------------
// generic helpers

/** f64 copy of any array. */
export function f64(a: Vec): Float64Array {
  return Float64Array.from(a as ArrayLike<number>);
}

/** sum_i a[i] * b[i] in f64. */
export function dot64(a: Vec, b: Vec): number {
  if (a.length !== b.length) throw new Error(`dot64: lengths ${a.length} and ${b.length}`);
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/** sum_i |a[i] * b[i]|, the scale against which an inner product's rounding error is judged. */
export function absDot64(a: Vec, b: Vec): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i] * b[i]);
  return s;
}

/**
 * Central finite difference of f at x along v, all in f64:  (f(x + h v) - f(x - h v)) / (2 h).
 * With h about 1e-5 for O(1) data the error is about h^2 |f'''| + 1e-16 / h, near 1e-10.
 */
export function centralDifference(f: (x: Float64Array) => Float64Array, x: Vec, v: Vec, h = 1e-5): Float64Array {
  const xp = new Float64Array(x.length), xm = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    xp[i] = x[i] + h * v[i];
    xm[i] = x[i] - h * v[i];
  }
  const fp = f(xp), fm = f(xm);
  const out = new Float64Array(fp.length);
  for (let i = 0; i < out.length; i++) out[i] = (fp[i] - fm[i]) / (2 * h);
  return out;
}

/**
 * The largest of |actual[i] - expected[i]| / (scale[i] + floor): the error in units of each
 * element's own magnitude (scale defaults to |expected|). A test asserts it is below a tolerance.
 */
export function maxScaledError(actual: Vec, expected: Vec, scale?: Vec, floor = 1e-30): number {
  if (actual.length !== expected.length) throw new Error(`maxScaledError: lengths ${actual.length} and ${expected.length}`);
  let worst = 0;
  for (let i = 0; i < actual.length; i++) {
    const s = (scale ? scale[i] : Math.abs(expected[i])) + floor;
    const e = Math.abs(actual[i] - expected[i]) / s;
    if (!(e <= worst)) worst = e; // NaN propagates as the worst
  }
  return worst;
}

// ---------------------------------------------------------------------------------------------
// RMSNorm (transformers' Qwen3RMSNorm): y = w * x / sqrt(mean(x^2) + eps), per row of length dim

export function rmsnormRef(x: Vec, w: Vec, rows: number, dim: number, eps: number): { y: Float64Array; rstd: Float64Array } {
  const y = new Float64Array(rows * dim), rstd = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let i = 0; i < dim; i++) ss += x[r * dim + i] ** 2;
    const s = 1 / Math.sqrt(ss / dim + eps);
    rstd[r] = s;
    for (let i = 0; i < dim; i++) y[r * dim + i] = w[i] * x[r * dim + i] * s;
  }
  return { y, rstd };
}

/**
 * J tx for RMSNorm, with the magnitude of its terms (for tolerances):
 * ty = w * (rstd * tx - x * rstd^3 * sum(x * tx) / dim).
 */
export function rmsnormJvpRef(x: Vec, w: Vec, tx: Vec, rows: number, dim: number, eps: number): { ty: Float64Array; scale: Float64Array } {
  const ty = new Float64Array(rows * dim), scale = new Float64Array(rows * dim);
  const { rstd } = rmsnormRef(x, w, rows, dim, eps);
  for (let r = 0; r < rows; r++) {
    const s = rstd[r];
    let d = 0, ad = 0;
    for (let i = 0; i < dim; i++) {
      d += x[r * dim + i] * tx[r * dim + i];
      ad += Math.abs(x[r * dim + i] * tx[r * dim + i]);
    }
    for (let i = 0; i < dim; i++) {
      const k = r * dim + i;
      ty[k] = w[i] * (s * tx[k] - x[k] * s ** 3 * d / dim);
      scale[k] = Math.abs(w[i]) * (s * Math.abs(tx[k]) + Math.abs(x[k]) * s ** 3 * ad / dim);
    }
  }
  return { ty, scale };
}

/** J^T gy for RMSNorm, with term magnitudes: g = w * gy, gx = rstd * g - x * rstd^3 * sum(x * g) / dim. */
export function rmsnormVjpRef(x: Vec, w: Vec, gy: Vec, rows: number, dim: number, eps: number): { gx: Float64Array; scale: Float64Array } {
  const gx = new Float64Array(rows * dim), scale = new Float64Array(rows * dim);
  const { rstd } = rmsnormRef(x, w, rows, dim, eps);
  for (let r = 0; r < rows; r++) {
    const s = rstd[r];
    let d = 0, ad = 0;
    for (let i = 0; i < dim; i++) {
      d += x[r * dim + i] * w[i] * gy[r * dim + i];
      ad += Math.abs(x[r * dim + i] * w[i] * gy[r * dim + i]);
    }
    for (let i = 0; i < dim; i++) {
      const k = r * dim + i;
      gx[k] = s * w[i] * gy[k] - x[k] * s ** 3 * d / dim;
      scale[k] = s * Math.abs(w[i] * gy[k]) + Math.abs(x[k]) * s ** 3 * ad / dim;
    }
  }
  return { gx, scale };
}

// ---------------------------------------------------------------------------------------------
// RoPE, rotate-half (transformers' apply_rotary_pos_emb); x: [T, nHeads * headDim]

/**
 * The rotation angles [T, headDim / 2]. `f32Angles` reproduces transformers' float32 recipe
 * (inv_freq and pos * inv_freq rounded to f32 at each step); otherwise exact f64 angles.
 */
export function ropeAnglesRef(positions: Vec, headDim: number, theta: number, f32Angles: boolean): Float64Array {
  const half = headDim / 2;
  const r = f32Angles ? Math.fround : (v: number) => v;
  const out = new Float64Array(positions.length * half);
  for (let t = 0; t < positions.length; t++) {
    for (let j = 0; j < half; j++) {
      const invFreq = r(1 / r(theta ** r((2 * j) / headDim)));
      out[t * half + j] = r(r(positions[t]) * invFreq);
    }
  }
  return out;
}

/** y = R(angle) x in f64; `inverse` rotates by -angle (the transpose). */
export function ropeRef(x: Vec, angles: Vec, T: number, nHeads: number, headDim: number, inverse = false): Float64Array {
  const half = headDim / 2, y = new Float64Array(T * nHeads * headDim);
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < nHeads; h++) {
      const base = (t * nHeads + h) * headDim;
      for (let j = 0; j < half; j++) {
        const a = angles[t * half + j];
        const c = Math.cos(a), s = inverse ? -Math.sin(a) : Math.sin(a);
        const x1 = x[base + j], x2 = x[base + half + j];
        y[base + j] = x1 * c - x2 * s;
        y[base + half + j] = x2 * c + x1 * s;
      }
    }
  }
  return y;
}

/** Element magnitudes of a rotation's output, |x1| + |x2| of the pair each output mixes. */
export function ropeScale(x: Vec, T: number, nHeads: number, headDim: number): Float64Array {
  const half = headDim / 2, out = new Float64Array(T * nHeads * headDim);
  for (let b = 0; b < T * nHeads; b++) {
    for (let j = 0; j < half; j++) {
      const m = Math.abs(x[b * headDim + j]) + Math.abs(x[b * headDim + half + j]);
      out[b * headDim + j] = m;
      out[b * headDim + half + j] = m;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// SwiGLU gate: y = silu(g) * u, silu(g) = g * sigmoid(g)

/** sigmoid in f64, stable for any sign of g. */
export function sigmoid64(g: number): number {
  if (g >= 0) return 1 / (1 + Math.exp(-g));
  const e = Math.exp(g);
  return e / (1 + e);
}

export function silu64(g: number): number {
  return g * sigmoid64(g);
}

/** silu'(g) = s * (1 + g * (1 - s)), with 1 - s = sigmoid(-g) formed without cancellation. */
export function dsilu64(g: number): number {
  const s = sigmoid64(g);
  return s * (1 + g * sigmoid64(-g));
}

/** The magnitude of silu'(g)'s terms, s + |g| s (1 - s): silu' crosses 0 near g = -1.2785. */
export function dsiluScale64(g: number): number {
  const s = sigmoid64(g);
  return s * (1 + Math.abs(g) * sigmoid64(-g));
}

export function siluMulRef(g: Vec, u: Vec): Float64Array {
  const y = new Float64Array(g.length);
  for (let i = 0; i < g.length; i++) y[i] = silu64(g[i]) * u[i];
  return y;
}

/** ty = tg * u * silu'(g) + tu * silu(g), with the magnitude of its terms. */
export function siluMulJvpRef(g: Vec, u: Vec, tg: Vec, tu: Vec): { ty: Float64Array; scale: Float64Array } {
  const ty = new Float64Array(g.length), scale = new Float64Array(g.length);
  for (let i = 0; i < g.length; i++) {
    const a = tg[i] * u[i] * dsilu64(g[i]), b = tu[i] * silu64(g[i]);
    ty[i] = a + b;
    scale[i] = Math.abs(tg[i] * u[i]) * dsiluScale64(g[i]) + Math.abs(b);
  }
  return { ty, scale };
}

/** gg = gy * u * silu'(g), gu = gy * silu(g), with the magnitude of gg's terms. */
export function siluMulVjpRef(g: Vec, u: Vec, gy: Vec): { gg: Float64Array; gu: Float64Array; ggScale: Float64Array } {
  const gg = new Float64Array(g.length), gu = new Float64Array(g.length), ggScale = new Float64Array(g.length);
  for (let i = 0; i < g.length; i++) {
    gg[i] = gy[i] * u[i] * dsilu64(g[i]);
    ggScale[i] = Math.abs(gy[i] * u[i]) * dsiluScale64(g[i]);
    gu[i] = gy[i] * silu64(g[i]);
  }
  return { gg, gu, ggScale };
}
