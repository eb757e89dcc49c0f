// A minimal PNG decoder (and encoder, to test it) for checking Chromium screenshots: 8-bit RGB or RGBA,
// greyscale(+alpha) too, non-interlaced, with the five row filters of the PNG specification (ISO/IEC
// 15948, section 9). Anything else is refused, not guessed at.
import { deflateSync, inflateSync } from "node:zlib";

export interface Image {
  width: number;
  height: number;
  /** RGBA, 4 bytes per pixel, row-major */
  data: Uint8Array;
}

const SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];
const CHANNELS: Record<number, number> = { 0: 1, 2: 3, 4: 2, 6: 4 };

function paeth(a: number, b: number, c: number): number {
  const p = a + b - c;
  const pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

export function decodePng(buf: Uint8Array): Image {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  SIGNATURE.forEach((b, i) => {
    if (buf[i] !== b) throw new Error("not a PNG file (bad signature)");
  });
  let pos = 8;
  let width = 0, height = 0, colorType = -1, interlace = 0, bitDepth = 0;
  const idat: Uint8Array[] = [];
  while (pos + 8 <= buf.length) {
    const len = view.getUint32(pos);
    const type = String.fromCharCode(...buf.subarray(pos + 4, pos + 8));
    const body = buf.subarray(pos + 8, pos + 8 + len);
    if (type === "IHDR") {
      width = view.getUint32(pos + 8);
      height = view.getUint32(pos + 12);
      bitDepth = body[8];
      colorType = body[9];
      interlace = body[12];
    } else if (type === "IDAT") idat.push(body);
    else if (type === "IEND") break;
    pos += 12 + len; // length, type, body, CRC
  }
  if (bitDepth !== 8) throw new Error(`PNG bit depth ${bitDepth}: only 8 is supported`);
  if (!(colorType in CHANNELS)) throw new Error(`PNG colour type ${colorType} (palette?) is not supported`);
  if (interlace !== 0) throw new Error("interlaced PNG is not supported");
  const channels = CHANNELS[colorType];
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  if (raw.length < height * (stride + 1)) throw new Error(`PNG data too short: ${raw.length} bytes for ${width}x${height}`);
  const px = new Uint8Array(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const src = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const row = px.subarray(y * stride, (y + 1) * stride);
    const prev = y > 0 ? px.subarray((y - 1) * stride, y * stride) : new Uint8Array(stride);
    for (let i = 0; i < stride; i++) {
      const a = i >= channels ? row[i - channels] : 0, b = prev[i], c = i >= channels ? prev[i - channels] : 0;
      let v: number;
      switch (filter) {
        case 0: v = src[i]; break;
        case 1: v = src[i] + a; break;
        case 2: v = src[i] + b; break;
        case 3: v = src[i] + ((a + b) >> 1); break;
        case 4: v = src[i] + paeth(a, b, c); break;
        default: throw new Error(`PNG row ${y}: unknown filter ${filter}`);
      }
      row[i] = v & 255;
    }
  }
  const data = new Uint8Array(width * height * 4);
  for (let p = 0; p < width * height; p++) {
    const s = p * channels;
    if (channels >= 3) {
      data[p * 4] = px[s];
      data[p * 4 + 1] = px[s + 1];
      data[p * 4 + 2] = px[s + 2];
    } else data[p * 4] = data[p * 4 + 1] = data[p * 4 + 2] = px[s];
    data[p * 4 + 3] = channels === 4 ? px[s + 3] : channels === 2 ? px[s + 1] : 255;
  }
  return { width, height, data };
}

// --- encoder, only for testing the decoder -----------------------------------------------------

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 255] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + body.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, body.length);
  out.set([...type].map((c) => c.charCodeAt(0)), 4);
  out.set(body, 8);
  v.setUint32(8 + body.length, crc32(out.subarray(4, 8 + body.length)));
  return out;
}

/** Encode RGB (channels 3) or RGBA (4) pixels; row y uses filter `filters[y % filters.length]`. */
export function encodePng(width: number, height: number, pixels: Uint8Array, channels: 3 | 4, filters: number[] = [0]): Uint8Array {
  const stride = width * channels;
  const raw = new Uint8Array(height * (stride + 1));
  for (let y = 0; y < height; y++) {
    const f = filters[y % filters.length];
    raw[y * (stride + 1)] = f;
    const row = pixels.subarray(y * stride, (y + 1) * stride);
    const prev = y > 0 ? pixels.subarray((y - 1) * stride, y * stride) : new Uint8Array(stride);
    for (let i = 0; i < stride; i++) {
      // Predictors straight from the specification's definitions (on the original bytes).
      const a = i >= channels ? row[i - channels] : 0, b = prev[i], c = i >= channels ? prev[i - channels] : 0;
      const predictor = [0, a, b, Math.floor((a + b) / 2), paethSpec(a, b, c)][f];
      raw[y * (stride + 1) + 1 + i] = (row[i] - predictor + 256) % 256;
    }
  }
  const ihdr = new Uint8Array(13);
  const v = new DataView(ihdr.buffer);
  v.setUint32(0, width);
  v.setUint32(4, height);
  ihdr.set([8, channels === 4 ? 6 : 2, 0, 0, 0], 8);
  const parts = [Uint8Array.from(SIGNATURE), chunk("IHDR", ihdr), chunk("IDAT", deflateSync(raw)), chunk("IEND", new Uint8Array(0))];
  return Buffer.concat(parts);
}

/** The Paeth predictor as the specification writes it (section 9.4), independent of `paeth` above. */
function paethSpec(a: number, b: number, c: number): number {
  const p = a + b - c;
  const pa = Math.abs(p - a);
  const pb = Math.abs(p - b);
  const pc = Math.abs(p - c);
  if (pa <= pb && pa <= pc) return a;
  if (pb <= pc) return b;
  return c;
}

/** Pixels within `tol` (per channel) of a colour, counted inside an optional rectangle. */
export function countColor(img: Image, hex: string, tol = 6, rect?: { x: number; y: number; w: number; h: number }): number {
  const n = parseInt(hex.slice(1), 16);
  const r = (n >> 16) & 255, g = (n >> 8) & 255, b = n & 255;
  const x0 = Math.max(0, Math.floor(rect?.x ?? 0)), y0 = Math.max(0, Math.floor(rect?.y ?? 0));
  const x1 = Math.min(img.width, Math.ceil(rect ? rect.x + rect.w : img.width)), y1 = Math.min(img.height, Math.ceil(rect ? rect.y + rect.h : img.height));
  let count = 0;
  for (let y = y0; y < y1; y++) {
    for (let x = x0; x < x1; x++) {
      const p = (y * img.width + x) * 4;
      if (Math.abs(img.data[p] - r) <= tol && Math.abs(img.data[p + 1] - g) <= tol && Math.abs(img.data[p + 2] - b) <= tol) count++;
    }
  }
  return count;
}

export function pixel(img: Image, x: number, y: number): [number, number, number] {
  const p = (Math.round(y) * img.width + Math.round(x)) * 4;
  return [img.data[p], img.data[p + 1], img.data[p + 2]];
}
