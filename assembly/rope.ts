// Rotary position embedding, rotate-half form (transformers' apply_rotary_pos_emb):
//   x = [x1 | x2] per head (halves of length half = headDim / 2), angle table [T, half]
//   y1 = x1 * cos - x2 * sin
//   y2 = x2 * cos + x1 * sin
// Legend: T = tokens, nHeads = heads in the buffer (query or key/value heads), headDim even.
// Layouts: x, y [T, nHeads * headDim]; cos, sin [T, headDim / 2] (src/kernels/rope.ts ropeTables).
//
// Products and sums are separate roundings (no fused multiply-add), as torch evaluates
// q * cos + rotate_half(q) * sin, so both builds agree with torch float32 bit for bit given the
// same tables.
//
// Derivatives: RoPE is linear in x, so its JVP is ropeForward applied to the tangent, and its VJP
// is the transpose, a rotation by the opposite angle (ropeVjp).

// One head: rotation by +angle, or by -angle when negate (sin negated).
// @ts-ignore: decorator
@inline
function rotateHead(x: usize, y: usize, cos: usize, sin: usize, half: i32, negate: bool): void {
  const halfBytes = <usize>half << 2;
  let j = 0;
  for (; j + 4 <= half; j += 4) {
    const o = <usize>j << 2;
    const c = v128.load(cos + o);
    let s = v128.load(sin + o);
    if (negate) s = f32x4.neg(s);
    const x1 = v128.load(x + o);
    const x2 = v128.load(x + halfBytes + o);
    v128.store(y + o, f32x4.sub(f32x4.mul(x1, c), f32x4.mul(x2, s)));
    v128.store(y + halfBytes + o, f32x4.add(f32x4.mul(x2, c), f32x4.mul(x1, s)));
  }
  for (; j < half; j++) {
    const o = <usize>j << 2;
    const c = load<f32>(cos + o);
    let s = load<f32>(sin + o);
    if (negate) s = -s;
    const x1 = load<f32>(x + o);
    const x2 = load<f32>(x + halfBytes + o);
    store<f32>(y + o, x1 * c - x2 * s);
    store<f32>(y + halfBytes + o, x2 * c + x1 * s);
  }
}

// x: [T, nHeads * headDim], cos, sin: [T, headDim / 2] -> y: [T, nHeads * headDim].
// y may alias x. Also the JVP: ty = ropeForward(tx).
export function ropeForward(x: usize, y: usize, cos: usize, sin: usize, T: i32, nHeads: i32, headDim: i32): void {
  const half = headDim >> 1;
  const headBytes = <usize>headDim << 2;
  const tableRowBytes = <usize>half << 2;
  for (let t = 0; t < T; t++) {
    const c = cos + <usize>t * tableRowBytes;
    const s = sin + <usize>t * tableRowBytes;
    const row = <usize>t * <usize>nHeads * headBytes;
    for (let h = 0; h < nHeads; h++) {
      const o = row + <usize>h * headBytes;
      rotateHead(x + o, y + o, c, s, half, false);
    }
  }
}

// gy: [T, nHeads * headDim], cos, sin: [T, headDim / 2] -> gx: [T, nHeads * headDim].
// gx = R^T gy (rotation by -angle):  gx1 = gy1 * cos + gy2 * sin,  gx2 = gy2 * cos - gy1 * sin.
// gx may alias gy.
export function ropeVjp(gy: usize, gx: usize, cos: usize, sin: usize, T: i32, nHeads: i32, headDim: i32): void {
  const half = headDim >> 1;
  const headBytes = <usize>headDim << 2;
  const tableRowBytes = <usize>half << 2;
  for (let t = 0; t < T; t++) {
    const c = cos + <usize>t * tableRowBytes;
    const s = sin + <usize>t * tableRowBytes;
    const row = <usize>t * <usize>nHeads * headBytes;
    for (let h = 0; h < nHeads; h++) {
      const o = row + <usize>h * headBytes;
      rotateHead(gy + o, gx + o, c, s, half, true);
    }
  }
}
