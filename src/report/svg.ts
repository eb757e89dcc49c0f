// Small, safe building blocks for SVG and HTML text: escaping, coordinates, text width estimates.
// Labels come from files (paths, metadata, dataset names), so every piece of text goes through
// `escapeXml`; coordinates go through `coord`, which refuses NaN and infinities instead of writing
// them into the picture (a browser silently drops such an element).

/** Escape text for HTML/SVG content and attribute values; drops characters XML does not allow. */
export function escapeXml(s: string): string {
  return String(s)
    // C0 controls other than tab/newline/CR, and lone surrogates/non-characters, are not valid in XML.
    .replace(/[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F\uFFFE\uFFFF]/g, "")
    .replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, "\uFFFD")
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&#39;");
}

/** A coordinate or length for an SVG attribute: at most 2 decimals; NaN or infinity is a bug here. */
export function coord(x: number): string {
  if (!Number.isFinite(x)) throw new Error(`report: non-finite coordinate ${x}`);
  const r = Math.round(x * 100) / 100;
  return String(Object.is(r, -0) ? 0 : r);
}

/** Attributes from an object; undefined values are left out; values are escaped. */
export function attrs(a: Record<string, string | number | undefined>): string {
  return Object.entries(a)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => ` ${k}="${typeof v === "number" ? coord(v) : escapeXml(v as string)}"`)
    .join("");
}

export function el(tag: string, a: Record<string, string | number | undefined>, children = ""): string {
  return children === "" ? `<${tag}${attrs(a)}/>` : `<${tag}${attrs(a)}>${children}</${tag}>`;
}

/** Average advance width of a character, in ems, used to lay out text without a font engine.
 * 0.6 is DejaVu Sans' average for mixed text, the widest of the usual sans-serif fonts, so
 * estimates err on the side of more room. */
export const CHAR_EM = 0.6;

export function textWidth(s: string, fontSize: number): number {
  let w = 0;
  for (const ch of s) w += /[ilj.,:;'|!()[\]1]/.test(ch) ? 0.35 : /[mwMW@%]/.test(ch) ? 0.9 : /[A-Z0-9]/.test(ch) ? 0.68 : CHAR_EM;
  return w * fontSize;
}

/** Shorten `s` to fit `maxWidth` pixels, keeping its end (file names end in what tells them apart). */
export function fitText(s: string, fontSize: number, maxWidth: number): string {
  if (textWidth(s, fontSize) <= maxWidth) return s;
  const chars = [...s];
  let lo = 0;
  while (lo < chars.length && textWidth("…" + chars.slice(lo).join(""), fontSize) > maxWidth) lo++;
  return "…" + chars.slice(lo).join("");
}

/**
 * SVG <text>: escaped, with a <title> carrying the full text when it was shortened, so nothing a
 * file said is lost (hovering shows it).
 */
export function text(
  x: number,
  y: number,
  content: string,
  opts: { size?: number; anchor?: "start" | "middle" | "end"; weight?: string; fill?: string; baseline?: "middle" | "auto"; rotate?: number; maxWidth?: number; cls?: string } = {},
): string {
  const size = opts.size ?? 13;
  const shown = opts.maxWidth ? fitText(content, size, opts.maxWidth) : content;
  const title = shown !== content ? `<title>${escapeXml(content)}</title>` : "";
  return el(
    "text",
    {
      x,
      y,
      "font-size": size,
      "text-anchor": opts.anchor,
      "font-weight": opts.weight,
      fill: opts.fill,
      "dominant-baseline": opts.baseline === "middle" ? "central" : undefined,
      transform: opts.rotate ? `rotate(${coord(opts.rotate)} ${coord(x)} ${coord(y)})` : undefined,
      class: opts.cls,
    },
    title + escapeXml(shown),
  );
}
