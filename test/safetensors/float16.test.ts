import { describe, expect, it } from "vitest";
import {
  bf16BitsToF32,
  decodeBf16,
  decodeF16,
  encodeBf16,
  encodeF16,
  f16BitsToF32,
  f32ToBf16Bits,
  f32ToF16Bits,
  roundToBf16,
  roundToF16,
} from "../../src/safetensors/float16.js";
import { bf16ValueRef, f16ValueRef, f32FromBitsRef, roundBf16Ref, roundF16Ref } from "./float-reference.js";
import { rng } from "../helpers/random.js";

/** f32 test values: every exponent, random mantissas, exact ties, and the special classes. */
function testValues(): number[] {
  const r = rng(7);
  const out: number[] = [];
  for (let i = 0; i < 200_000; i++) out.push(f32FromBitsRef(Math.floor(r() * 2 ** 32)));
  for (let e = 0; e < 256; e++) {
    for (const m of [0, 1, 0x7fffff, 0x400000, 0x8000, 0x18000, 0x7fff, 0x1000, 0x3000, 0x2000, 0x1fff, 0x3fff]) {
      for (const s of [0, 1]) out.push(f32FromBitsRef(((s << 31) | (e << 23) | m) >>> 0));
    }
  }
  return out.filter((x) => !Number.isNaN(x));
}

describe("bfloat16", () => {
  it("rounds f32 to nearest, ties to even, like an independent float64 reference", () => {
    let bad = 0;
    for (const x of testValues()) {
      if (!Object.is(roundToBf16(x), roundBf16Ref(x))) {
        if (bad++ < 5) console.error(x, roundToBf16(x), roundBf16Ref(x));
      }
    }
    expect(bad).toBe(0);
  });

  it("decodes every pattern exactly and round-trips every non-NaN pattern", () => {
    for (let h = 0; h < 65536; h++) {
      const v = bf16BitsToF32(h);
      const ref = bf16ValueRef(h);
      if (Number.isNaN(ref)) {
        expect(Number.isNaN(v)).toBe(true);
        continue;
      }
      expect(Object.is(v, ref)).toBe(true);
      expect(f32ToBf16Bits(v)).toBe(h);
    }
  });

  it("handles ties, overflow, infinities, NaN and signed zero", () => {
    expect(f32ToBf16Bits(f32FromBitsRef(0x3f808000))).toBe(0x3f80); // tie, even below
    expect(f32ToBf16Bits(f32FromBitsRef(0x3f818000))).toBe(0x3f82); // tie, even above
    expect(f32ToBf16Bits(f32FromBitsRef(0x3f808001))).toBe(0x3f81); // just above the tie
    expect(f32ToBf16Bits(f32FromBitsRef(0x7f7fffff))).toBe(0x7f80); // max f32 rounds to +Inf
    expect(f32ToBf16Bits(Infinity)).toBe(0x7f80);
    expect(f32ToBf16Bits(-Infinity)).toBe(0xff80);
    expect(f32ToBf16Bits(-0)).toBe(0x8000);
    const nan = f32ToBf16Bits(NaN);
    expect(nan & 0x7f80).toBe(0x7f80);
    expect(nan & 0x7f).not.toBe(0);
    // A NaN whose payload sits only in the low 16 bits must stay NaN (not become Inf).
    const lowNaN = new Float32Array(new Uint32Array([0x7f800001]).buffer)[0]!;
    expect(Number.isNaN(bf16BitsToF32(f32ToBf16Bits(lowNaN)))).toBe(true);
    expect(f32ToBf16Bits(f32FromBitsRef(0x00000001))).toBe(0x0000); // tiny subnormal rounds to 0
    expect(f32ToBf16Bits(f32FromBitsRef(0x00008000))).toBe(0x0000); // tie, even (0)
    expect(f32ToBf16Bits(f32FromBitsRef(0x00018000))).toBe(0x0002); // tie, even (2)
  });

  it("array encode/decode agree with the scalar functions", () => {
    const xs = new Float32Array(testValues().slice(0, 50_000));
    const h = new Uint16Array(xs.length);
    encodeBf16(xs, h);
    const back = new Float32Array(xs.length);
    decodeBf16(h, back);
    let bad = 0;
    for (let i = 0; i < xs.length; i++) {
      if (h[i] !== f32ToBf16Bits(xs[i]!) || !Object.is(back[i], bf16BitsToF32(h[i]!))) bad++;
    }
    expect(bad).toBe(0);
  });
});

describe("float16", () => {
  it("rounds f32 to nearest, ties to even, like an independent float64 reference", () => {
    let bad = 0;
    for (const x of testValues()) {
      if (!Object.is(roundToF16(x), roundF16Ref(x))) {
        if (bad++ < 5) console.error(x, roundToF16(x), roundF16Ref(x));
      }
    }
    expect(bad).toBe(0);
  });

  it("decodes every pattern exactly and round-trips every non-NaN pattern", () => {
    for (let h = 0; h < 65536; h++) {
      const v = f16BitsToF32(h);
      const ref = f16ValueRef(h);
      if (Number.isNaN(ref)) {
        expect(Number.isNaN(v)).toBe(true);
        expect(f32ToF16Bits(v) & 0x7e00).toBe(0x7e00); // NaN stays a (quiet) NaN
        continue;
      }
      expect(Object.is(v, ref)).toBe(true);
      expect(f32ToF16Bits(v)).toBe(h);
    }
  });

  it("handles subnormals, ties, overflow, infinities, NaN and signed zero", () => {
    expect(f32ToF16Bits(2 ** -24)).toBe(0x0001); // smallest subnormal
    expect(f32ToF16Bits(2 ** -25)).toBe(0x0000); // tie between 0 and 2^-24: even is 0
    expect(f32ToF16Bits(-(2 ** -25))).toBe(0x8000);
    expect(f32ToF16Bits(2 ** -25 * 1.0000001)).toBe(0x0001);
    expect(f32ToF16Bits(3 * 2 ** -25)).toBe(0x0002); // 1.5 ulp: tie, even is 2
    expect(f32ToF16Bits(5 * 2 ** -25)).toBe(0x0002); // 2.5 ulp: tie, even is 2
    expect(f32ToF16Bits(2 ** -14 - 2 ** -26)).toBe(0x0400); // rounds up into the smallest normal
    expect(f32ToF16Bits(65504)).toBe(0x7bff); // max finite
    expect(f32ToF16Bits(65519)).toBe(0x7bff);
    expect(f32ToF16Bits(65520)).toBe(0x7c00); // tie at the top rounds to Inf
    expect(f32ToF16Bits(1e6)).toBe(0x7c00);
    expect(f32ToF16Bits(-Infinity)).toBe(0xfc00);
    expect(f32ToF16Bits(1 + 2 ** -11)).toBe(0x3c00); // tie, even below
    expect(f32ToF16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie, even above
    expect(f32ToF16Bits(-0)).toBe(0x8000);
    expect(f32ToF16Bits(NaN) & 0x7e00).toBe(0x7e00);
    expect(f16BitsToF32(0x0001)).toBe(2 ** -24);
    expect(f16BitsToF32(0x7bff)).toBe(65504);
  });

  it("array encode/decode agree with the scalar functions", () => {
    const xs = new Float32Array(testValues().slice(0, 50_000));
    const h = new Uint16Array(xs.length);
    encodeF16(xs, h);
    const back = new Float32Array(xs.length);
    decodeF16(h, back);
    let bad = 0;
    for (let i = 0; i < xs.length; i++) {
      if (h[i] !== f32ToF16Bits(xs[i]!) || !Object.is(back[i], f16BitsToF32(h[i]!))) bad++;
    }
    expect(bad).toBe(0);
  });
});
