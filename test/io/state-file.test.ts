// The state file of --state/--resume: exact round trip of the float64 products, and every kind of
// damage (truncation, a flipped bit, trailing bytes, another file) refused with the file's name.
import { describe, expect, it } from "vitest";
import { decodeStateFile, encodeStateFile, StateFileError, type SolverState } from "../../src/io/state-file.js";
import { fingerprintVectors } from "../../src/solvers/replay.js";

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

const dim = 5;
const block = (seed: number, m: number) => {
  const products = Array.from({ length: m }, (_, i) => Float64Array.from({ length: dim }, (_, j) => Math.sin(seed * 100 + i * 10 + j) * 10 ** (j - 2)));
  return { fingerprint: `v${seed}`, products };
};
const STATE: SolverState = { dim, identity: { seed: "3", tokens: "[[1,2,3]]" }, blocks: [block(1, 3), block(2, 3), block(3, 2)] };

describe("state file", () => {
  it("round-trips the products bit for bit, with the identity", () => {
    const bytes = concat(encodeStateFile(STATE));
    const back = decodeStateFile(bytes, "s.state");
    expect(back.dim).toBe(dim);
    expect(back.identity).toEqual(STATE.identity);
    expect(back.blocks.map((b) => b.fingerprint)).toEqual(["v1", "v2", "v3"]);
    back.blocks.forEach((b, k) => expect(fingerprintVectors(b.products)).toBe(fingerprintVectors(STATE.blocks[k].products)));
    expect(back.blocks[2].products[1]).toEqual(STATE.blocks[2].products[1]);
    // The data starts 8-aligned, after the 16-byte prefix and the padded header.
    const header = Number(new DataView(bytes.buffer).getBigUint64(8, true));
    expect((16 + header) % 8).toBe(0);
    expect(bytes.length).toBe(16 + header + 8 * 8 * dim);
  });

  it("an empty log (a run saved before its first product) is a valid state", () => {
    const back = decodeStateFile(concat(encodeStateFile({ ...STATE, blocks: [] })), "s.state");
    expect(back.blocks).toEqual([]);
  });

  const bytes = concat(encodeStateFile(STATE));
  const refused = (b: Uint8Array, why: RegExp) => {
    let err: unknown;
    try {
      decodeStateFile(b, "dir/s.state");
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(StateFileError);
    expect((err as Error).message).toMatch(/^dir\/s\.state: not a usable jacsteer state file/);
    expect((err as Error).message).toMatch(why);
  };

  it("refuses a truncated file, in the data or in the header", () => {
    refused(bytes.subarray(0, bytes.length - 8), /truncated/);
    refused(bytes.subarray(0, 40), /truncated/);
    refused(bytes.subarray(0, 10), /too short/);
    refused(new Uint8Array(0), /too short/);
  });
  it("refuses a damaged product", () => {
    const bad = Uint8Array.from(bytes);
    bad[bad.length - 3] ^= 0x10;
    refused(bad, /block 3: the data does not match its fingerprint: damaged/);
  });
  it("refuses trailing bytes, another file, a damaged header", () => {
    refused(concat([bytes, new Uint8Array(8)]), /trailing bytes/);
    refused(new TextEncoder().encode("{\"not\": \"a state file\"}"), /wrong magic bytes/);
    const bad = Uint8Array.from(bytes);
    bad[17] = 0x7b; // "{{": not JSON
    refused(bad, /header is not valid JSON/);
  });
});
