// Float64 reference for causal grouped-query attention, written from the definitions (not from the
// kernels): explicit S, P matrices per head, softmax with the row max subtracted, repeat_kv by
// h -> floor(h / group). Queries are the last Tq of Tk positions.
export interface AttnShape {
  Tq: number;
  Tk: number;
  nHeads: number;
  nKv: number;
  headDim: number;
  scale: number;
}

type Arr = ArrayLike<number>;

const qAt = (x: Arr, s: AttnShape, i: number, h: number, d: number) => x[(i * s.nHeads + h) * s.headDim + d];
const kvAt = (x: Arr, s: AttnShape, j: number, g: number, d: number) => x[(j * s.nKv + g) * s.headDim + d];
const kvHead = (s: AttnShape, h: number) => Math.floor(h / (s.nHeads / s.nKv));
const visible = (s: AttnShape, i: number, j: number) => j <= s.Tk - s.Tq + i;

/** scores S[h][i][j] (masked entries -Infinity) */
function scores(s: AttnShape, q: Arr, k: Arr): number[][][] {
  const S: number[][][] = [];
  for (let h = 0; h < s.nHeads; h++) {
    const g = kvHead(s, h);
    const Sh: number[][] = [];
    for (let i = 0; i < s.Tq; i++) {
      const row: number[] = [];
      for (let j = 0; j < s.Tk; j++) {
        if (!visible(s, i, j)) {
          row.push(-Infinity);
          continue;
        }
        let d = 0;
        for (let e = 0; e < s.headDim; e++) d += qAt(q, s, i, h, e) * kvAt(k, s, j, g, e);
        row.push(s.scale * d);
      }
      Sh.push(row);
    }
    S.push(Sh);
  }
  return S;
}

function softmaxRows(S: number[][][]): number[][][] {
  return S.map((Sh) =>
    Sh.map((row) => {
      const m = Math.max(...row);
      const e = row.map((x) => (x === -Infinity ? 0 : Math.exp(x - m)));
      const z = e.reduce((a, b) => a + b, 0);
      return e.map((x) => x / z);
    }),
  );
}

/** out [Tq, nHeads*hd], probs [nHeads, Tq, Tk] (flat) */
export function attentionRef(s: AttnShape, q: Arr, k: Arr, v: Arr): { out: Float64Array; probs: Float64Array } {
  const P = softmaxRows(scores(s, q, k));
  const out = new Float64Array(s.Tq * s.nHeads * s.headDim);
  const probs = new Float64Array(s.nHeads * s.Tq * s.Tk);
  for (let h = 0; h < s.nHeads; h++) {
    const g = kvHead(s, h);
    for (let i = 0; i < s.Tq; i++) {
      for (let j = 0; j < s.Tk; j++) probs[(h * s.Tq + i) * s.Tk + j] = P[h][i][j];
      for (let e = 0; e < s.headDim; e++) {
        let a = 0;
        for (let j = 0; j < s.Tk; j++) a += P[h][i][j] * kvAt(v, s, j, g, e);
        out[(i * s.nHeads + h) * s.headDim + e] = a;
      }
    }
  }
  return { out, probs };
}

/** VJP: (gq, gk, gv) = J^T gout, with gk, gv summed over each group's query heads. */
export function attentionVjpRef(s: AttnShape, q: Arr, k: Arr, v: Arr, gout: Arr): { gq: Float64Array; gk: Float64Array; gv: Float64Array } {
  const P = softmaxRows(scores(s, q, k));
  const gq = new Float64Array(s.Tq * s.nHeads * s.headDim);
  const gk = new Float64Array(s.Tk * s.nKv * s.headDim);
  const gv = new Float64Array(s.Tk * s.nKv * s.headDim);
  for (let h = 0; h < s.nHeads; h++) {
    const g = kvHead(s, h);
    for (let i = 0; i < s.Tq; i++) {
      const dP = new Array<number>(s.Tk).fill(0);
      for (let j = 0; j < s.Tk; j++) for (let e = 0; e < s.headDim; e++) dP[j] += qAt(gout, s, i, h, e) * kvAt(v, s, j, g, e);
      let c = 0;
      for (let j = 0; j < s.Tk; j++) c += P[h][i][j] * dP[j];
      for (let j = 0; j < s.Tk; j++) {
        const dS = P[h][i][j] * (dP[j] - c);
        for (let e = 0; e < s.headDim; e++) {
          gq[(i * s.nHeads + h) * s.headDim + e] += s.scale * dS * kvAt(k, s, j, g, e);
          gk[(j * s.nKv + g) * s.headDim + e] += s.scale * dS * qAt(q, s, i, h, e);
          gv[(j * s.nKv + g) * s.headDim + e] += P[h][i][j] * qAt(gout, s, i, h, e);
        }
      }
    }
  }
  return { gq, gk, gv };
}

/** JVP: tout = J (tq, tk, tv). */
export function attentionJvpRef(s: AttnShape, q: Arr, k: Arr, v: Arr, tq: Arr, tk: Arr, tv: Arr): Float64Array {
  const P = softmaxRows(scores(s, q, k));
  const tout = new Float64Array(s.Tq * s.nHeads * s.headDim);
  for (let h = 0; h < s.nHeads; h++) {
    const g = kvHead(s, h);
    for (let i = 0; i < s.Tq; i++) {
      const tS = new Array<number>(s.Tk).fill(0);
      for (let j = 0; j < s.Tk; j++) {
        if (!visible(s, i, j)) continue;
        let d = 0;
        for (let e = 0; e < s.headDim; e++) d += qAt(tq, s, i, h, e) * kvAt(k, s, j, g, e) + qAt(q, s, i, h, e) * kvAt(tk, s, j, g, e);
        tS[j] = s.scale * d;
      }
      let c = 0;
      for (let j = 0; j < s.Tk; j++) c += P[h][i][j] * tS[j];
      for (let e = 0; e < s.headDim; e++) {
        let a = 0;
        for (let j = 0; j < s.Tk; j++) a += P[h][i][j] * (tS[j] - c) * kvAt(v, s, j, g, e) + P[h][i][j] * kvAt(tv, s, j, g, e);
        tout[(i * s.nHeads + h) * s.headDim + e] = a;
      }
    }
  }
  return tout;
}
