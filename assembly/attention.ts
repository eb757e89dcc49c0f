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
// Numerics: dot products over hd in f32, one f32x4 chain per key, computed four keys at a time
// (dot4Hd) with the same per-key order as the single-key remainder (dotHd), so every score is
// the same whichever path computed it; softmax denominators and rowsums in f64; exp is Mathf.exp
// (musl expf, < 1 ulp). Products by P / dS (weightedRows) accumulate over keys in order in
// registers. Every loop runs in an order that depends only on the shapes: results are
// reproducible, and the rows of a KV-cache call (Tq < Tk) equal the matching rows of the full
// Tq = Tk call bit for bit.
// Cost: O(Tq * Tk * hd) per head for each kernel, masked pairs skipped. Measured (hd 128, 16/8
// heads, one core, relaxed build): 20-27 GFLOP/s; forward / VJP / JVP 0.18 / 0.31 / 0.32 ms at
// T = 32, 2.8 / 5.4 / 5.3 ms at T = 128. Rows of k, v sit nKv * hd floats apart, so long
// sequences stream them from L2; scores take 4 keys per pass, P v takes 32 columns per pass.
import { madd } from "./fma";

// sum_i a[i] * b[i] over n f32 values: one f32x4 accumulator, lanes reduced as (x0 + x2) + (x1 + x3),
// plus the scalar tail summed in order. dot4Hd computes each of its lanes in exactly this order.
// @ts-ignore: decorator
@inline
function dotHd(a: usize, b: usize, n: i32): f32 {
  let acc = f32x4.splat(0);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    acc = madd(v128.load(a + o), v128.load(b + o), acc);
  }
  const r = (f32x4.extract_lane(acc, 0) + f32x4.extract_lane(acc, 2)) + (f32x4.extract_lane(acc, 1) + f32x4.extract_lane(acc, 3));
  if (i == n) return r;
  let t: f32 = 0;
  for (; i < n; i++) {
    const o = <usize>i << 2;
    t += load<f32>(a + o) * load<f32>(b + o);
  }
  return r + t;
}

// Four dot products at once: lane r = sum_i a[i] * b_r[i], b_r = b + r * bStride (bytes), over n
// f32 values; each lane bit-identical to dotHd(a, b_r, n).
// @ts-ignore: decorator
@inline
function dot4Hd(a: usize, b: usize, bStride: usize, n: i32): v128 {
  const b1 = b + bStride;
  const b2 = b1 + bStride;
  const b3 = b2 + bStride;
  let a0 = f32x4.splat(0);
  let a1 = f32x4.splat(0);
  let a2 = f32x4.splat(0);
  let a3 = f32x4.splat(0);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    const x = v128.load(a + o);
    a0 = madd(x, v128.load(b + o), a0);
    a1 = madd(x, v128.load(b1 + o), a1);
    a2 = madd(x, v128.load(b2 + o), a2);
    a3 = madd(x, v128.load(b3 + o), a3);
  }
  let r = reduce4(a0, a1, a2, a3);
  if (i < n) {
    let t0: f32 = 0, t1: f32 = 0, t2: f32 = 0, t3: f32 = 0;
    for (; i < n; i++) {
      const o = <usize>i << 2;
      const x = load<f32>(a + o);
      t0 += x * load<f32>(b + o);
      t1 += x * load<f32>(b1 + o);
      t2 += x * load<f32>(b2 + o);
      t3 += x * load<f32>(b3 + o);
    }
    r = f32x4.add(r, lanes(t0, t1, t2, t3));
  }
  return r;
}

// sum_i a[i] * b[i] + c[i] * d[i] over n f32 values, ordered as dotHd (a*b then c*d into one chain).
// @ts-ignore: decorator
@inline
function dot2Hd(a: usize, b: usize, c: usize, d: usize, n: i32): f32 {
  let acc = f32x4.splat(0);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    acc = madd(v128.load(c + o), v128.load(d + o), madd(v128.load(a + o), v128.load(b + o), acc));
  }
  const r = (f32x4.extract_lane(acc, 0) + f32x4.extract_lane(acc, 2)) + (f32x4.extract_lane(acc, 1) + f32x4.extract_lane(acc, 3));
  if (i == n) return r;
  let t: f32 = 0;
  for (; i < n; i++) {
    const o = <usize>i << 2;
    t += load<f32>(a + o) * load<f32>(b + o) + load<f32>(c + o) * load<f32>(d + o);
  }
  return r + t;
}

// Four at once: lane r = sum_i a[i] * b_r[i] + c[i] * d_r[i], b_r = b + r * stride,
// d_r = d + r * stride (bytes); each lane bit-identical to dot2Hd(a, b_r, c, d_r, n).
// @ts-ignore: decorator
@inline
function dot2x4Hd(a: usize, b: usize, c: usize, d: usize, stride: usize, n: i32): v128 {
  const b1 = b + stride;
  const b2 = b1 + stride;
  const b3 = b2 + stride;
  const d1 = d + stride;
  const d2 = d1 + stride;
  const d3 = d2 + stride;
  let a0 = f32x4.splat(0);
  let a1 = f32x4.splat(0);
  let a2 = f32x4.splat(0);
  let a3 = f32x4.splat(0);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    const x = v128.load(a + o);
    const y = v128.load(c + o);
    a0 = madd(y, v128.load(d + o), madd(x, v128.load(b + o), a0));
    a1 = madd(y, v128.load(d1 + o), madd(x, v128.load(b1 + o), a1));
    a2 = madd(y, v128.load(d2 + o), madd(x, v128.load(b2 + o), a2));
    a3 = madd(y, v128.load(d3 + o), madd(x, v128.load(b3 + o), a3));
  }
  let r = reduce4(a0, a1, a2, a3);
  if (i < n) {
    let t0: f32 = 0, t1: f32 = 0, t2: f32 = 0, t3: f32 = 0;
    for (; i < n; i++) {
      const o = <usize>i << 2;
      const x = load<f32>(a + o);
      const y = load<f32>(c + o);
      t0 += x * load<f32>(b + o) + y * load<f32>(d + o);
      t1 += x * load<f32>(b1 + o) + y * load<f32>(d1 + o);
      t2 += x * load<f32>(b2 + o) + y * load<f32>(d2 + o);
      t3 += x * load<f32>(b3 + o) + y * load<f32>(d3 + o);
    }
    r = f32x4.add(r, lanes(t0, t1, t2, t3));
  }
  return r;
}

// [sum a0, sum a1, sum a2, sum a3], each lane sum ordered (x0 + x2) + (x1 + x3).
// @ts-ignore: decorator
@inline
function reduce4(a0: v128, a1: v128, a2: v128, a3: v128): v128 {
  const u01 = f32x4.add(i32x4.shuffle(a0, a1, 0, 1, 4, 5), i32x4.shuffle(a0, a1, 2, 3, 6, 7));
  const u23 = f32x4.add(i32x4.shuffle(a2, a3, 0, 1, 4, 5), i32x4.shuffle(a2, a3, 2, 3, 6, 7));
  return f32x4.add(i32x4.shuffle(u01, u23, 0, 2, 4, 6), i32x4.shuffle(u01, u23, 1, 3, 5, 7));
}

// @ts-ignore: decorator
@inline
function lanes(t0: f32, t1: f32, t2: f32, t3: f32): v128 {
  return f32x4.replace_lane(f32x4.replace_lane(f32x4.replace_lane(f32x4.splat(t0), 1, t1), 2, t2), 3, t3);
}

// out = alpha * acc, or out += alpha * acc.
// @ts-ignore: decorator
@inline
function finish(op: usize, acc: v128, al: v128, accumulate: bool): void {
  v128.store(op, accumulate ? madd(al, acc, v128.load(op)) : f32x4.mul(al, acc));
}

// out[0:n] (=, or += when accumulate) alpha * sum_{j < count} w[j] * x[j, 0:n], where
// w[j] = load(w + j * wStride) and x[j, :] starts at x + j * xStride (strides in bytes).
// Each column sums over j in order in a register: 32 columns a pass (8 accumulators, what V8
// keeps in registers; each pass streams the x rows once), then 16, 4, and scalar columns.
function weightedRows(w: usize, wStride: usize, x: usize, xStride: usize, count: i32, n: i32, out: usize, alpha: f32, accumulate: bool): void {
  const al = f32x4.splat(alpha);
  let c = 0;
  for (; c + 32 <= n; c += 32) {
    let a0 = f32x4.splat(0);
    let a1 = f32x4.splat(0);
    let a2 = f32x4.splat(0);
    let a3 = f32x4.splat(0);
    let a4 = f32x4.splat(0);
    let a5 = f32x4.splat(0);
    let a6 = f32x4.splat(0);
    let a7 = f32x4.splat(0);
    let wp = w;
    let xp = x + (<usize>c << 2);
    for (let j = 0; j < count; j++) {
      const s = v128.load32_splat(wp);
      a0 = madd(s, v128.load(xp), a0);
      a1 = madd(s, v128.load(xp, 16), a1);
      a2 = madd(s, v128.load(xp, 32), a2);
      a3 = madd(s, v128.load(xp, 48), a3);
      a4 = madd(s, v128.load(xp, 64), a4);
      a5 = madd(s, v128.load(xp, 80), a5);
      a6 = madd(s, v128.load(xp, 96), a6);
      a7 = madd(s, v128.load(xp, 112), a7);
      wp += wStride;
      xp += xStride;
    }
    const op = out + (<usize>c << 2);
    finish(op, a0, al, accumulate);
    finish(op + 16, a1, al, accumulate);
    finish(op + 32, a2, al, accumulate);
    finish(op + 48, a3, al, accumulate);
    finish(op + 64, a4, al, accumulate);
    finish(op + 80, a5, al, accumulate);
    finish(op + 96, a6, al, accumulate);
    finish(op + 112, a7, al, accumulate);
  }
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
    finish(op, a0, al, accumulate);
    finish(op + 16, a1, al, accumulate);
    finish(op + 32, a2, al, accumulate);
    finish(op + 48, a3, al, accumulate);
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
    finish(out + (<usize>c << 2), a0, al, accumulate);
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

// d[j] = p[j] * (d[j] - c) for j < n: the softmax Jacobian applied to a row (c = sum_j p[j] d[j]).
// @ts-ignore: decorator
@inline
function softmaxTangent(p: usize, d: usize, c: f32, n: i32): void {
  const c4 = f32x4.splat(c);
  let j = 0;
  for (; j + 4 <= n; j += 4) {
    const jo = <usize>j << 2;
    v128.store(d + jo, f32x4.mul(v128.load(p + jo), f32x4.sub(v128.load(d + jo), c4)));
  }
  for (; j < n; j++) {
    const jo = <usize>j << 2;
    store<f32>(d + jo, load<f32>(p + jo) * (load<f32>(d + jo) - c));
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
  const sc4 = f32x4.splat(scale);
  for (let h = 0; h < nHeads; h++) {
    const kvOff = <usize>(h / group) * hdBytes;
    const kh = k + kvOff;
    const vh = v + kvOff;
    for (let i = 0; i < Tq; i++) {
      const n = visibleKeys(i, Tq, Tk);
      const qi = q + <usize>i * qStride + <usize>h * hdBytes;
      const pr = probs + (<usize>h * <usize>Tq + <usize>i) * pRowBytes;
      // scores and their max
      let m4 = f32x4.splat(<f32>(-Infinity));
      let j = 0;
      for (; j + 4 <= n; j += 4) {
        const s4 = f32x4.mul(sc4, dot4Hd(qi, kh + <usize>j * kvStride, kvStride, headDim));
        v128.store(pr + (<usize>j << 2), s4);
        m4 = f32x4.max(m4, s4);
      }
      let m = max(max(f32x4.extract_lane(m4, 0), f32x4.extract_lane(m4, 1)), max(f32x4.extract_lane(m4, 2), f32x4.extract_lane(m4, 3)));
      for (; j < n; j++) {
        const s = scale * dotHd(qi, kh + <usize>j * kvStride, headDim);
        store<f32>(pr + (<usize>j << 2), s);
        m = max(m, s);
      }
      // exp(s - max), their sum in f64, then P = e / sum (division as torch's softmax)
      let sum: f64 = 0;
      for (j = 0; j < n; j++) {
        const p = pr + (<usize>j << 2);
        const e = Mathf.exp(load<f32>(p) - m);
        store<f32>(p, e);
        sum += <f64>e;
      }
      const sf = <f32>sum;
      const sf4 = f32x4.splat(sf);
      j = 0;
      for (; j + 4 <= n; j += 4) {
        const p = pr + (<usize>j << 2);
        v128.store(p, f32x4.div(v128.load(p), sf4));
      }
      for (; j < n; j++) {
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
    const vh = v + kvOff;
    const ph = probs + <usize>h * <usize>Tq * pRowBytes;
    // Rows: dS into scratch, and gq = scale dS k.
    for (let i = 0; i < Tq; i++) {
      const n = visibleKeys(i, Tq, Tk);
      const pr = ph + <usize>i * pRowBytes;
      const dr = scratch + <usize>i * pRowBytes;
      const gi = gout + <usize>i * qStride + hOff;
      // dP_ij = gout_i . v_j, and c = sum_j P_ij dP_ij (f32 products summed in f64 in key order)
      let c: f64 = 0;
      let j = 0;
      for (; j + 4 <= n; j += 4) {
        const jo = <usize>j << 2;
        const d4 = dot4Hd(gi, vh + <usize>j * kvStride, kvStride, headDim);
        v128.store(dr + jo, d4);
        const pd = f32x4.mul(v128.load(pr + jo), d4);
        c += <f64>f32x4.extract_lane(pd, 0);
        c += <f64>f32x4.extract_lane(pd, 1);
        c += <f64>f32x4.extract_lane(pd, 2);
        c += <f64>f32x4.extract_lane(pd, 3);
      }
      for (; j < n; j++) {
        const jo = <usize>j << 2;
        const d = dotHd(gi, vh + <usize>j * kvStride, headDim);
        store<f32>(dr + jo, d);
        c += <f64>(load<f32>(pr + jo) * d);
      }
      softmaxTangent(pr, dr, <f32>c, n);
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
  const sc4 = f32x4.splat(scale);
  for (let h = 0; h < nHeads; h++) {
    const kvOff = <usize>(h / group) * hdBytes;
    const hOff = <usize>h * hdBytes;
    const kh = k + kvOff;
    const tkh = tk + kvOff;
    for (let i = 0; i < Tq; i++) {
      const n = visibleKeys(i, Tq, Tk);
      const pr = probs + (<usize>h * <usize>Tq + <usize>i) * pRowBytes;
      const rowOff = <usize>i * qStride + hOff;
      const qi = q + rowOff;
      const tqi = tq + rowOff;
      // tS_ij = scale (tq_i . k_j + q_i . tk_j), and c = sum_j P_ij tS_ij (f64, key order)
      let c: f64 = 0;
      let j = 0;
      for (; j + 4 <= n; j += 4) {
        const jo = <usize>j << 2;
        const kvRow = <usize>j * kvStride;
        const t4 = f32x4.mul(sc4, dot2x4Hd(tqi, kh + kvRow, qi, tkh + kvRow, kvStride, headDim));
        v128.store(scratch + jo, t4);
        const pt = f32x4.mul(v128.load(pr + jo), t4);
        c += <f64>f32x4.extract_lane(pt, 0);
        c += <f64>f32x4.extract_lane(pt, 1);
        c += <f64>f32x4.extract_lane(pt, 2);
        c += <f64>f32x4.extract_lane(pt, 3);
      }
      for (; j < n; j++) {
        const jo = <usize>j << 2;
        const kvRow = <usize>j * kvStride;
        const ts = scale * dot2Hd(tqi, kh + kvRow, qi, tkh + kvRow, headDim);
        store<f32>(scratch + jo, ts);
        c += <f64>(load<f32>(pr + jo) * ts);
      }
      softmaxTangent(pr, scratch, <f32>c, n);
      // tout_i = tP_i v, then += P_i tv (two passes: each keeps 8 accumulators in registers)
      weightedRows(scratch, 4, v + kvOff, kvStride, n, headDim, tout + rowOff, 1, false);
      weightedRows(pr, 4, tv + kvOff, kvStride, n, headDim, tout + rowOff, 1, true);
    }
  }
}
