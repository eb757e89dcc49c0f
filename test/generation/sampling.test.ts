// Token choice, the PRNG, scale lists and incremental text, against direct computations.
import { describe, expect, it } from "vitest";
import { applyTopP, argmax, chooseToken, softmaxWithTemperature } from "../../src/generation/sampling.js";
import { createRng } from "../../src/generation/prng.js";
import { parseScaleList, TextStream } from "../../src/generation/generate.js";

describe("argmax", () => {
  it("takes the first maximum and skips NaN", () => {
    expect(argmax([1, 3, 3, 2])).toBe(1);
    expect(argmax([NaN, -1, NaN, 0.5])).toBe(3);
    expect(argmax([-Infinity, -Infinity])).toBe(0);
    expect(() => argmax([NaN])).toThrow();
  });
});

describe("temperature sampling", () => {
  it("draws tokens with the frequencies of softmax(logits / T)", () => {
    const logits = [0.3, -1.2, 2.0, 0.0, 1.1];
    const T = 0.8;
    const expected = logits.map((l) => Math.exp(l / T));
    const z = expected.reduce((a, b) => a + b);
    const uniform = createRng(7);
    const counts = new Array(logits.length).fill(0);
    const N = 40000;
    for (let i = 0; i < N; i++) counts[chooseToken(logits, { temperature: T, topP: 1 }, uniform)]++;
    counts.forEach((c, i) => {
      const p = expected[i] / z;
      // 5 standard deviations of a binomial count
      expect(Math.abs(c / N - p)).toBeLessThan(5 * Math.sqrt((p * (1 - p)) / N) + 1e-9);
    });
  });

  it("top-p keeps the smallest most likely set reaching p (transformers' TopPLogitsWarper)", () => {
    const p = () => Float64Array.from([0.15, 0.5, 0.05, 0.3]);
    const kept = (topP: number) => {
      const q = p();
      applyTopP(q, topP);
      return Array.from(q.keys()).filter((i) => q[i] > 0);
    };
    expect(kept(1)).toEqual([0, 1, 2, 3]);
    expect(kept(0.5)).toEqual([1]);
    expect(kept(0.7)).toEqual([1, 3]);
    expect(kept(0.9)).toEqual([0, 1, 3]);
    expect(kept(0.96)).toEqual([0, 1, 2, 3]);
    expect(kept(0.01)).toEqual([1]);
    // sampling never leaves the nucleus, and is renormalised within it
    const uniform = createRng(3);
    const logits = Array.from(p()).map(Math.log);
    const counts = [0, 0, 0, 0];
    for (let i = 0; i < 20000; i++) counts[chooseToken(logits, { temperature: 1, topP: 0.7 }, uniform)]++;
    expect(counts[0] + counts[2]).toBe(0);
    expect(Math.abs(counts[1] / 20000 - 0.5 / 0.8)).toBeLessThan(0.02);
  });

  it("softmax is normalised and temperature 0 is greedy", () => {
    const p = softmaxWithTemperature([1000, 999, -5], 1);
    expect(p.reduce((a, b) => a + b)).toBeCloseTo(1, 12);
    expect(p[0] / p[1]).toBeCloseTo(Math.E, 9);
    expect(chooseToken([0, 5, 1], { temperature: 0, topP: 0.1 }, () => 0.99)).toBe(1);
  });
});

describe("createRng", () => {
  it("is reproducible per seed, differs between seeds, and is uniform on [0, 1)", () => {
    const a = createRng(1), b = createRng(1), c = createRng(2), big = createRng(2 ** 40 + 1);
    const xs = Array.from({ length: 20000 }, () => a());
    expect(Array.from({ length: 20000 }, () => b())).toEqual(xs);
    expect(Array.from({ length: 5 }, () => c())).not.toEqual(xs.slice(0, 5));
    expect(Array.from({ length: 5 }, () => big())).not.toEqual(xs.slice(0, 5));
    expect(Math.min(...xs)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...xs)).toBeLessThan(1);
    const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
    const varc = xs.reduce((s, x) => s + (x - mean) ** 2, 0) / xs.length;
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.01);
    expect(Math.abs(varc - 1 / 12)).toBeLessThan(0.003);
    // deciles roughly equal
    const dec = new Array(10).fill(0);
    xs.forEach((x) => dec[Math.floor(x * 10)]++);
    dec.forEach((n) => expect(Math.abs(n / xs.length - 0.1)).toBeLessThan(0.012));
  });
});

describe("parseScaleList", () => {
  it("accepts comma-separated finite numbers only", () => {
    expect(parseScaleList("-10,-5,0,5,10")).toEqual([-10, -5, 0, 5, 10]);
    expect(parseScaleList(" 1.5 , 2e1")).toEqual([1.5, 20]);
    for (const bad of ["", "1,,2", "a", "1,inf", "NaN", "1,"]) expect(parseScaleList(bad), bad).toBeNull();
  });
});

describe("TextStream", () => {
  it("emits a byte-level sequence piece by piece, holding back split UTF-8 characters", () => {
    const text = "héllo → wörld ✓";
    const bytes = Array.from(new TextEncoder().encode(text));
    const decode = (ids: readonly number[]) => new TextDecoder().decode(Uint8Array.from(ids));
    const s = new TextStream(decode);
    const pieces = bytes.map((b) => s.push(b));
    pieces.push(s.flush());
    expect(pieces.join("")).toBe(text);
    expect(pieces.some((p) => p.includes("\uFFFD"))).toBe(false);
    // a dangling partial character comes out at flush
    const t = new TextStream(decode);
    expect(t.push(0xc3)).toBe("");
    expect(t.flush()).toBe("\uFFFD");
  });
});
