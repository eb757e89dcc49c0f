// Causal grouped-query attention, as transformers' Qwen3 eager attention (repeat_kv, causal mask,
// softmax in f32 after subtracting the row max), with its VJP and JVP.
//
// Legend: Tq = query rows, Tk = key/value rows (Tq <= Tk), nHeads = query heads, nKv = key/value
// heads (nHeads a multiple of nKv), hd = headDim, group = nHeads / nKv. Query head h reads kv head
// h / group. Queries are the LAST Tq of Tk positions: query i sits at absolute position
// off + i (off = Tk - Tq) and attends to keys s <= off + i. Tq == Tk is the usual case.
// Layouts (row-major, byte-offset pointers to f32):
//   q, out, gq, tq, tout, gout : [Tq, nHeads * hd]
//   k, v, gk, gv, tk, tv       : [Tk, nKv * hd]
//   probs                      : [nHeads, Tq, Tk]  (softmax P; masked entries are 0)
//
// Per head, with S = scale q k^T + mask and P = softmax(S):
//   forward: out = P v
//   VJP:     dP = gout v^T;  dS = P * (dP - rowsum(P * dP));
//            gq = scale dS k;  gk = scale dS^T q;  gv = P^T gout  (gk, gv summed over the group)
//   JVP:     tS = scale (tq k^T + q tk^T);  tP = P * (tS - rowsum(P * tS));  tout = tP v + P tv
// Both derivative kernels are linear in their cotangent / tangent and reuse the saved P.
//
// Numerics: dot products over hd in f32 (four f32x4 accumulators, fixed reduction order);
// softmax sums and rowsums in f64; exp is Mathf.exp (musl expf, < 1 ulp). Every loop runs in a
// fixed order that depends only on the shapes, so results are reproducible run to run.
// Cost: O(Tq * Tk * hd) per head for each kernel, masked pairs skipped.
import { madd } from "./fma";

// sum_i a[i] * b[i] over n f32 values.
// @ts-ignore: decorator
@inline
function dotHd(a: usize, b: usize, n: i32): f32 {
  let a0 = f32x4.splat(0);
  let a1 = f32x4.splat(0);
  let a2 = f32x4.splat(0);
  let a3 = f32x4.splat(0);
  let i = 0;
  for (; i + 16 <= n; i += 16) {
    const o = <usize>i << 2;
    a0 = madd(v128.load(a + o), v128.load(b + o), a0);
    a1 = madd(v128.load(a + o, 16), v128.load(b + o, 16), a1);
    a2 = madd(v128.load(a + o, 32), v128.load(b + o, 32), a2);
    a3 = madd(v128.load(a + o, 48), v128.load(b + o, 48), a3);
  }
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    a0 = madd(v128.load(a + o), v128.load(b + o), a0);
  }
  const s = f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3));
  let r = (f32x4.extract_lane(s, 0) + f32x4.extract_lane(s, 1)) + (f32x4.extract_lane(s, 2) + f32x4.extract_lane(s, 3));
  for (; i < n; i++) {
    const o = <usize>i << 2;
    r += load<f32>(a + o) * load<f32>(b + o);
  }
  return r;
}

// sum_i a[i] * b[i] + c[i] * d[i] over n f32 values.
// @ts-ignore: decorator
@inline
function dot2Hd(a: usize, b: usize, c: usize, d: usize, n: i32): f32 {
  let a0 = f32x4.splat(0);
  let a1 = f32x4.splat(0);
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const o = <usize>i << 2;
    a0 = madd(v128.load(a + o), v128.load(b + o), a0);
    a1 = madd(v128.load(a + o, 16), v128.load(b + o, 16), a1);
    a0 = madd(v128.load(c + o), v128.load(d + o), a0);
    a1 = madd(v128.load(c + o, 16), v128.load(d + o, 16), a1);
  }
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    a0 = madd(v128.load(a + o), v128.load(b + o), a0);
    a0 = madd(v128.load(c + o), v128.load(d + o), a0);
  }
  const s = f32x4.add(a0, a1);
  let r = (f32x4.extract_lane(s, 0) + f32x4.extract_lane(s, 1)) + (f32x4.extract_lane(s, 2) + f32x4.extract_lane(s, 3));
  for (; i < n; i++) {
    const o = <usize>i << 2;
    r += load<f32>(a + o) * load<f32>(b + o) + load<f32>(c + o) * load<f32>(d + o);
  }
  return r;
}

// out[0:n] (=, or += when accumulate) alpha * sum_{j < count} w[j] * x[j, 0:n], where
// w[j] = load(w + j * wStride) and x[j, :] starts at x + j * xStride (strides in bytes).
// The sum runs over j in order in registers, 16 columns at a time.
function weightedRows(w: usize, wStride: usize, x: usize, xStride: usize, count: i32, n: i32, out: usize, alpha: f32, accumulate: bool): void {
  const al = f32x4.splat(alpha);
  let c = 0;
  for (; c + 16 <= n; c += 16) {
    let a0 = f32x4.splat(0);
    let a1 = f32x4.splat(0);
    let a2 = f32x4.splat(0);
    let a3 = f32x4.splat(0);
    let wp = w;
    let xp = x + (<usize>c << 2);
    for (let j = 0; j < count; j++) {
      const s = v128.load32_splat(wp);
      a0 = madd(s, v128.load(xp), a0);
      a1 = madd(s, v128.load(xp, 16), a1);
      a2 = madd(s, v128.load(xp, 32), a2);
      a3 = madd(s, v128.load(xp, 48), a3);
      wp += wStride;
      xp += xStride;
    }
    const op = out + (<usize>c << 2);
    if (accumulate) {
      v128.store(op, madd(al, a0, v128.load(op)));
      v128.store(op, madd(al, a1, v128.load(op, 16)), 16);
      v128.store(op, madd(al, a2, v128.load(op, 32)), 32);
      v128.store(op, madd(al, a3, v128.load(op, 48)), 48);
    } else {
      v128.store(op, f32x4.mul(al, a0));
      v128.store(op, f32x4.mul(al, a1), 16);
      v128.store(op, f32x4.mul(al, a2), 32);
      v128.store(op, f32x4.mul(al, a3), 48);
    }
  }
  for (; c + 4 <= n; c += 4) {
    let a0 = f32x4.splat(0);
    let wp = w;
    let xp = x + (<usize>c << 2);
    for (let j = 0; j < count; j++) {
      a0 = madd(v128.load32_splat(wp), v128.load(xp), a0);
      wp += wStride;
      xp += xStride;
    }
    const op = out + (<usize>c << 2);
    v128.store(op, accumulate ? madd(al, a0, v128.load(op)) : f32x4.mul(al, a0));
  }
  for (; c < n; c++) {
    let a: f32 = 0;
    let wp = w;
    let xp = x + (<usize>c << 2);
    for (let j = 0; j < count; j++) {
      a += load<f32>(wp) * load<f32>(xp);
      wp += wStride;
      xp += xStride;
    }
    const op = out + (<usize>c << 2);
    store<f32>(op, accumulate ? alpha * a + load<f32>(op) : alpha * a);
  }
}

// out[0:n] = sum_{j < count} (w1[j] * x1[j, 0:n] + w2[j] * x2[j, 0:n]); w1, w2 contiguous,
// x1 and x2 rows xStride bytes apart. The JVP's tout = tP v + P tv for one row.
function weightedRows2(w1: usize, x1: usize, w2: usize, x2: usize, xStride: usize, count: i32, n: i32, out: usize): void {
  let c = 0;
  for (; c + 16 <= n; c += 16) {
    let a0 = f32x4.splat(0);
    let a1 = f32x4.splat(0);
    let a2 = f32x4.splat(0);
    let a3 = f32x4.splat(0);
    const co = <usize>c << 2;
    let xp = x1 + co;
    let yp = x2 + co;
    for (let j = 0; j < count; j++) {
      const jo = <usize>j << 2;
      const s = v128.load32_splat(w1 + jo);
      const t = v128.load32_splat(w2 + jo);
      a0 = madd(t, v128.load(yp), madd(s, v128.load(xp), a0));
      a1 = madd(t, v128.load(yp, 16), madd(s, v128.load(xp, 16), a1));
      a2 = madd(t, v128.load(yp, 32), madd(s, v128.load(xp, 32), a2));
      a3 = madd(t, v128.load(yp, 48), madd(s, v128.load(xp, 48), a3));
      xp += xStride;
      yp += xStride;
    }
    const op = out + co;
    v128.store(op, a0);
    v128.store(op, a1, 16);
    v128.store(op, a2, 32);
    v128.store(op, a3, 48);
  }
  for (; c + 4 <= n; c += 4) {
    let a0 = f32x4.splat(0);
    const co = <usize>c << 2;
    let xp = x1 + co;
    let yp = x2 + co;
    for (let j = 0; j < count; j++) {
      const jo = <usize>j << 2;
      a0 = madd(v128.load32_splat(w2 + jo), v128.load(yp), madd(v128.load32_splat(w1 + jo), v128.load(xp), a0));
      xp += xStride;
      yp += xStride;
    }
    v128.store(out + co, a0);
  }
  for (; c < n; c++) {
    let a: f32 = 0;
    const co = <usize>c << 2;
    let xp = x1 + co;
    let yp = x2 + co;
    for (let j = 0; j < count; j++) {
      const jo = <usize>j << 2;
      a += load<f32>(w1 + jo) * load<f32>(xp);
      a += load<f32>(w2 + jo) * load<f32>(yp);
      xp += xStride;
      yp += xStride;
    }
    store<f32>(out + co, a);
  }
}

// Keys visible to query row i: min(Tk, max(0, Tk - Tq + i + 1)).
// @ts-ignore: decorator
@inline
function visibleKeys(i: i32, Tq: i32, Tk: i32): i32 {
  const n = Tk - Tq + i + 1;
  return n < 0 ? 0 : n > Tk ? Tk : n;
}

// Floats of scratch that attentionVjp and attentionJvp need: one [Tq, Tk] buffer (dS of one head)
// for the VJP; the JVP uses its first Tk floats.
export function attentionScratchFloats(Tq: i32, Tk: i32, nHeads: i32, nKv: i32, headDim: i32): i32 {
  const n = Tq * Tk;
  return n > Tk ? n : Tk;
}

// q: [Tq, nHeads*hd], k, v: [Tk, nKv*hd] -> out: [Tq, nHeads*hd], probs: [nHeads, Tq, Tk] (saved).
// out = softmax(scale q k^T + causal mask) v per head; masked entries of probs are written as 0.
export function attentionForward(
  q: usize, k: usize, v: usize, out: usize, probs: usize,
  Tq: i32, Tk: i32, nHeads: i32, nKv: i32, headDim: i32, scale: f32,
): void {
  const group = nHeads / nKv;
  const hdBytes = <usize>headDim << 2;
  const qStride = <usize>nHeads * hdBytes;
  const kvStride = <usize>nKv * hdBytes;
  const pRowBytes = <usize>Tk << 2;
  for (let h = 0; h < nHeads; h++) {
    const kvOff = <usize>(h / group) * hdBytes;
    const kh = k + kvOff;
    const vh = v + kvOff;
    for (let i = 0; i < Tq; i++) {
      const n = visibleKeys(i, Tq, Tk);
      const qi = q + <usize>i * qStride + <usize>h * hdBytes;
      const pr = probs + (<usize>h * <usize>Tq + <usize>i) * pRowBytes;
      let m: f32 = <f32>(-Infinity);
      for (let j = 0; j < n; j++) {
        const s = scale * dotHd(qi, kh + <usize>j * kvStride, headDim);
        store<f32>(pr + (<usize>j << 2), s);
        m = max(m, s);
      }
      let sum: f64 = 0;
      for (let j = 0; j < n; j++) {
        const p = pr + (<usize>j << 2);
        const e = Mathf.exp(load<f32>(p) - m);
        store<f32>(p, e);
        sum += <f64>e;
      }
      const sf = <f32>sum;
      for (let j = 0; j < n; j++) {
        const p = pr + (<usize>j << 2);
        store<f32>(p, load<f32>(p) / sf);
      }
      if (n < Tk) memory.fill(pr + (<usize>n << 2), 0, <usize>(Tk - n) << 2);
      weightedRows(pr, 4, vh, kvStride, n, headDim, out + <usize>i * qStride + <usize>h * hdBytes, 1, false);
    }
  }
}

// q, gout: [Tq, nHeads*hd], k, v: [Tk, nKv*hd], probs: [nHeads, Tq, Tk] (from attentionForward),
// scratch: attentionScratchFloats(...) floats -> gq: [Tq, nHeads*hd], gk, gv: [Tk, nKv*hd] (overwritten).
// Outputs must not alias inputs.
export function attentionVjp(
  q: usize, k: usize, v: usize, probs: usize, gout: usize, gq: usize, gk: usize, gv: usize,
  Tq: i32, Tk: i32, nHeads: i32, nKv: i32, headDim: i32, scale: f32, scratch: usize,
): void {
  const group = nHeads / nKv;
  const hdBytes = <usize>headDim << 2;
  const qStride = <usize>nHeads * hdBytes;
  const kvStride = <usize>nKv * hdBytes;
  const pRowBytes = <usize>Tk << 2;
  const off = Tk - Tq;
  memory.fill(gk, 0, <usize>Tk * kvStride);
  memory.fill(gv, 0, <usize>Tk * kvStride);
  for (let h = 0; h < nHeads; h++) {
    const kvOff = <usize>(h / group) * hdBytes;
    const hOff = <usize>h * hdBytes;
    const ph = probs + <usize>h * <usize>Tq * pRowBytes;
    // Rows: dS into scratch, and gq = scale dS k.
    for (let i = 0; i < Tq; i++) {
      const n = visibleKeys(i, Tq, Tk);
      const pr = ph + <usize>i * pRowBytes;
      const dr = scratch + <usize>i * pRowBytes;
      const gi = gout + <usize>i * qStride + hOff;
      let c: f64 = 0;
      for (let j = 0; j < n; j++) {
        const jo = <usize>j << 2;
        const d = dotHd(gi, v + <usize>j * kvStride + kvOff, headDim);
        store<f32>(dr + jo, d);
        c += <f64>(load<f32>(pr + jo) * d);
      }
      const cf = <f32>c;
      for (let j = 0; j < n; j++) {
        const jo = <usize>j << 2;
        store<f32>(dr + jo, load<f32>(pr + jo) * (load<f32>(dr + jo) - cf));
      }
      weightedRows(dr, 4, k + kvOff, kvStride, n, headDim, gq + <usize>i * qStride + hOff, scale, false);
    }
    // Columns: gk_j += scale sum_i dS_ij q_i, gv_j += sum_i P_ij gout_i over the rows that see key j.
    for (let j = 0; j < Tk; j++) {
      const i0 = j - off > 0 ? j - off : 0;
      const cnt = Tq - i0;
      if (cnt <= 0) continue;
      const cell = <usize>i0 * pRowBytes + (<usize>j << 2);
      const rows = <usize>i0 * qStride + hOff;
      const kvRow = <usize>j * kvStride + kvOff;
      weightedRows(scratch + cell, pRowBytes, q + rows, qStride, cnt, headDim, gk + kvRow, scale, true);
      weightedRows(ph + cell, pRowBytes, gout + rows, qStride, cnt, headDim, gv + kvRow, 1, true);
    }
  }
}

// q, tq: [Tq, nHeads*hd], k, v, tk, tv: [Tk, nKv*hd], probs: [nHeads, Tq, Tk] (from attentionForward),
// scratch: attentionScratchFloats(...) floats (Tk used) -> tout: [Tq, nHeads*hd] (overwritten).
// tout must not alias the inputs.
export function attentionJvp(
  q: usize, k: usize, v: usize, probs: usize, tq: usize, tk: usize, tv: usize, tout: usize,
  Tq: i32, Tk: i32, nHeads: i32, nKv: i32, headDim: i32, scale: f32, scratch: usize,
): void {
  const group = nHeads / nKv;
  const hdBytes = <usize>headDim << 2;
  const qStride = <usize>nHeads * hdBytes;
  const kvStride = <usize>nKv * hdBytes;
  const pRowBytes = <usize>Tk << 2;
  for (let h = 0; h < nHeads; h++) {
    const kvOff = <usize>(h / group) * hdBytes;
    const hOff = <usize>h * hdBytes;
    for (let i = 0; i < Tq; i++) {
      const n = visibleKeys(i, Tq, Tk);
      const pr = probs + (<usize>h * <usize>Tq + <usize>i) * pRowBytes;
      const rowOff = <usize>i * qStride + hOff;
      const qi = q + rowOff;
      const tqi = tq + rowOff;
      let c: f64 = 0;
      for (let j = 0; j < n; j++) {
        const jo = <usize>j << 2;
        const kvRow = <usize>j * kvStride + kvOff;
        const ts = scale * dot2Hd(tqi, k + kvRow, qi, tk + kvRow, headDim);
        store<f32>(scratch + jo, ts);
        c += <f64>(load<f32>(pr + jo) * ts);
      }
      const cf = <f32>c;
      for (let j = 0; j < n; j++) {
        const jo = <usize>j << 2;
        store<f32>(scratch + jo, load<f32>(pr + jo) * (load<f32>(scratch + jo) - cf));
      }
      weightedRows2(scratch, v + kvOff, pr, tv + kvOff, kvStride, n, headDim, tout + rowOff);
    }
  }
}
