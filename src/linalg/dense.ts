// Small dense linear algebra in float64 for the solvers: the block is n <= a few dozen vectors of
// length d (hidden size), so plain loops are enough; what matters is accuracy and a fixed order.

export type Vec = Float64Array;

export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

export function norm(a: ArrayLike<number>): number {
  return Math.sqrt(dot(a, a));
}

/** y += alpha * x */
export function axpy(alpha: number, x: ArrayLike<number>, y: Float64Array): void {
  for (let i = 0; i < y.length; i++) y[i] += alpha * x[i];
}

export function toF64(x: ArrayLike<number>): Float64Array {
  return Float64Array.from(x as ArrayLike<number>);
}

/**
 * Orthonormalise the columns in place by modified Gram-Schmidt, twice ("twice is enough").
 * A column that becomes numerically zero (rank deficiency) is replaced by a vector from `fill`,
 * orthogonalised in turn, so the block keeps its size.
 */
export function orthonormalize(V: Vec[], fill?: (i: number) => Vec): Vec[] {
  for (let i = 0; i < V.length; i++) {
    for (let attempt = 0; ; attempt++) {
      const before = norm(V[i]);
      for (let pass = 0; pass < 2; pass++) {
        for (let j = 0; j < i; j++) axpy(-dot(V[j], V[i]), V[j], V[i]);
      }
      const after = norm(V[i]);
      if (after > 1e-10 * Math.max(before, 1e-300) && after > 0) {
        for (let k = 0; k < V[i].length; k++) V[i][k] /= after;
        break;
      }
      if (!fill || attempt > 3) throw new Error(`orthonormalize: column ${i} is linearly dependent on the previous ones`);
      V[i] = fill(i);
    }
  }
  return V;
}

/**
 * Eigen-decomposition of a symmetric matrix (cyclic Jacobi): eigenvalues in descending order and the
 * matching eigenvectors as columns of `vectors` (vectors[r][c]). Accurate to rounding for n up to ~100.
 */
export function symmetricEigen(A: number[][]): { values: number[]; vectors: number[][] } {
  const n = A.length;
  const a = A.map((row) => row.slice());
  const v: number[][] = Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => (i === j ? 1 : 0)));
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0, total = 0;
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
      total += a[i][j] * a[i][j];
      if (i !== j) off += a[i][j] * a[i][j];
    }
    if (off <= 1e-30 * total || off === 0) break;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        if (Math.abs(a[p][q]) < 1e-300) continue;
        const theta = (a[q][q] - a[p][p]) / (2 * a[p][q]);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1), s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = a[k][p], akq = a[k][q];
          a[k][p] = c * akp - s * akq;
          a[k][q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = a[p][k], aqk = a[q][k];
          a[p][k] = c * apk - s * aqk;
          a[q][k] = s * apk + c * aqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = v[k][p], vkq = v[k][q];
          v[k][p] = c * vkp - s * vkq;
          v[k][q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((i, j) => a[j][j] - a[i][i]);
  return {
    values: order.map((i) => a[i][i]),
    vectors: Array.from({ length: n }, (_, r) => order.map((c) => v[r][c])),
  };
}

/**
 * Singular values and right singular vectors of a dense m x n matrix (rows given as arrays), by
 * one-sided Jacobi on the columns: accurate in relative terms, used to check the solvers against an
 * explicitly formed Jacobian. Returns values descending, `right[i]` the i-th right singular vector.
 */
export function svd(rows: ArrayLike<number>[], n: number): { values: number[]; right: Float64Array[] } {
  const m = rows.length;
  // Work on columns of A (length m) and accumulate V (n x n).
  const cols = Array.from({ length: n }, (_, j) => Float64Array.from({ length: m }, (_, i) => rows[i][j]));
  const V = Array.from({ length: n }, (_, j) => Float64Array.from({ length: n }, (_, i) => (i === j ? 1 : 0)));
  for (let sweep = 0; sweep < 60; sweep++) {
    let rotated = false;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        const alpha = dot(cols[p], cols[p]), beta = dot(cols[q], cols[q]), gamma = dot(cols[p], cols[q]);
        if (Math.abs(gamma) <= 1e-15 * Math.sqrt(alpha * beta) || gamma === 0) continue;
        rotated = true;
        const zeta = (beta - alpha) / (2 * gamma);
        const t = Math.sign(zeta || 1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
        const c = 1 / Math.sqrt(1 + t * t), s = c * t;
        for (const X of [cols, V]) {
          const xp = X[p], xq = X[q];
          for (let k = 0; k < xp.length; k++) {
            const a = xp[k], b = xq[k];
            xp[k] = c * a - s * b;
            xq[k] = s * a + c * b;
          }
        }
      }
    }
    if (!rotated) break;
  }
  const sig = cols.map((c) => norm(c));
  const order = sig.map((_, i) => i).sort((i, j) => sig[j] - sig[i]);
  return { values: order.map((i) => sig[i]), right: order.map((i) => V[i]) };
}

/** Flip each vector so that its entry of largest magnitude is positive (CONTRACT.md's sign convention). */
export function canonicalSign(v: Float64Array | Float32Array): void {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (Math.abs(v[i]) > Math.abs(v[best])) best = i;
  if (v[best] < 0) for (let i = 0; i < v.length; i++) v[i] = -v[i];
}

/** Deterministic Gaussian vectors (xorshift128+ and Box-Muller), so `--seed` reproduces a run everywhere. */
export function gaussianStream(seed: number): () => number {
  let s0 = (seed ^ 0x9e3779b9) >>> 0 || 1, s1 = (Math.imul(seed, 0x85ebca6b) ^ 0xc2b2ae35) >>> 0 || 2;
  const uniform = () => {
    let x = s0;
    const y = s1;
    s0 = y;
    x ^= x << 23;
    x >>>= 0;
    s1 = (x ^ y ^ (x >>> 17) ^ (y >>> 26)) >>> 0;
    return ((s1 + y) >>> 0) / 4294967296;
  };
  let spare: number | null = null;
  return () => {
    if (spare !== null) {
      const s = spare;
      spare = null;
      return s;
    }
    const u = Math.max(uniform(), 1e-300), w = uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    spare = r * Math.sin(2 * Math.PI * w);
    return r * Math.cos(2 * Math.PI * w);
  };
}
