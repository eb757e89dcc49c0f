// Bit-for-bit comparison of two vector files' numbers (the browser tests compare the page's download
// with the command line's file this way).
import { expect } from "vitest";
import type { VectorSet } from "../../src/io/vector-file.js";

/** Hex of the numbers as float32 (the vectors' dtype) or float64. */
export function bits(xs: ArrayLike<number>, f64 = false): string {
  const a = f64 ? new Float64Array(Array.from(xs)) : Float32Array.from(xs);
  return Buffer.from(a.buffer).toString("hex");
}

/** The same vectors, singular values and residuals, bit for bit. */
export function expectBitwiseEqual(got: VectorSet, want: VectorSet): void {
  expect(got.vectors.length).toBe(want.vectors.length);
  got.vectors.forEach((v, i) => expect(bits(v), `vector ${i}`).toBe(bits(want.vectors[i]!)));
  expect(bits(got.singularValues!, true)).toBe(bits(want.singularValues!, true));
  expect(bits(got.residuals!, true)).toBe(bits(want.residuals!, true));
}
