// A small deterministic PRNG for sampling, so `--seed N` reproduces a generation on any platform.
// xoshiro128** (Blackman & Vigna) seeded through splitmix32: 32-bit integer ops only (Math.imul),
// identical in every JavaScript engine, period 2^128 - 1.

function splitmix32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
}

/** Uniform doubles in [0, 1) with 53 random bits, from an integer seed (any safe integer). */
export function createRng(seed: number): () => number {
  if (!Number.isSafeInteger(seed)) throw new RangeError(`seed ${seed} is not a safe integer`);
  // Fold the high bits in too, so seeds above 2^32 give different streams.
  const mix = splitmix32((seed >>> 0) ^ Math.imul(Math.floor(seed / 2 ** 32) >>> 0, 0x27d4eb2d));
  let a = mix(), b = mix(), c = mix(), d = mix();
  if ((a | b | c | d) === 0) a = 1; // the all-zero state is a fixed point
  const next = (): number => {
    const result = Math.imul(rotl(Math.imul(b, 5), 7), 9) >>> 0;
    const t = b << 9;
    c ^= a;
    d ^= b;
    b ^= c;
    a ^= d;
    c ^= t;
    d = rotl(d, 11);
    return result;
  };
  return () => ((next() >>> 5) * 67108864 + (next() >>> 6)) / 9007199254740992;
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}
