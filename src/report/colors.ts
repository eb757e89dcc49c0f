// Colours that survive colour-blindness and grey-scale printing.
// - Series: the Okabe-Ito palette (Okabe & Ito 2008, "Color Universal Design"), without its yellow,
//   which is unreadable on white; markers also differ in shape so colour is never the only cue.
// - Sequential (|cos|): viridis (perceptually uniform, monotone in lightness).
// - Diverging (signed cos): ColorBrewer RdBu, blue for negative, white at 0, red for positive.

export const SERIES_COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"] as const;
export const MARKERS = ["circle", "square", "triangle", "diamond", "triangle-down", "cross"] as const;
export type Marker = (typeof MARKERS)[number];
/** Dash patterns cycle once the colours run out (8th series onwards). */
export const DASHES = [undefined, "6 4", "2 3", "8 3 2 3"] as const;

export function seriesStyle(i: number): { color: string; marker: Marker; dash?: string } {
  return {
    color: SERIES_COLORS[i % SERIES_COLORS.length],
    marker: MARKERS[i % MARKERS.length],
    dash: DASHES[Math.floor(i / SERIES_COLORS.length) % DASHES.length],
  };
}

type RGB = [number, number, number];

export function hexToRgb(hex: string): RGB {
  const m = /^#([0-9a-f]{6})$/i.exec(hex);
  if (!m) throw new Error(`hexToRgb: ${hex}`);
  const n = parseInt(m[1], 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}

export function rgbToHex([r, g, b]: RGB): string {
  const h = (x: number) => Math.max(0, Math.min(255, Math.round(x))).toString(16).padStart(2, "0");
  return `#${h(r)}${h(g)}${h(b)}`;
}

// viridis at 0, 1/8, ..., 1 (matplotlib's table).
const VIRIDIS = ["#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c", "#28ae80", "#5ec962", "#addc30", "#fde725"].map(hexToRgb);
// RdBu reversed (ColorBrewer, 11 classes): -1 blue ... 0 white-ish ... +1 red.
const RDBU = ["#053061", "#2166ac", "#4393c3", "#92c5de", "#d1e5f0", "#f7f7f7", "#fddbc7", "#f4a582", "#d6604d", "#b2182b", "#67001f"].map(hexToRgb);

function interpolate(stops: RGB[], t: number): string {
  if (!Number.isFinite(t)) throw new Error(`colour scale: non-finite value ${t}`);
  const u = Math.max(0, Math.min(1, t)) * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(u));
  const f = u - i;
  return rgbToHex([0, 1, 2].map((c) => stops[i][c] + f * (stops[i + 1][c] - stops[i][c])) as RGB);
}

/** t in [0, 1] -> viridis. */
export const sequential = (t: number) => interpolate(VIRIDIS, t);
/** t in [-1, 1] -> blue-white-red. */
export const diverging = (t: number) => interpolate(RDBU, (t + 1) / 2);

/** WCAG relative luminance of an sRGB colour. */
export function luminance(hex: string): number {
  const lin = hexToRgb(hex).map((c) => {
    const s = c / 255;
    return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2];
}

/** Black or white, whichever contrasts more with the background. */
export function textColorOn(bg: string): string {
  const L = luminance(bg);
  return (L + 0.05) / 0.05 > 1.05 / (L + 0.05) ? "#000000" : "#ffffff";
}
