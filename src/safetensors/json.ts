// A strict JSON parser (RFC 8259, as strict as serde_json) for safetensors headers.
//
// Why not JSON.parse: it silently keeps the last of duplicate keys, so a header naming a tensor twice
// would load whichever entry came last. This parser rejects duplicate keys in every object, keeps
// numbers as their source text (offsets must be exact integers, which a double cannot promise above
// 2^53), and reports positions in errors.

/** A parsed JSON value. Objects are Maps in source order; numbers keep their source text. */
export type JsonValue = null | boolean | string | JsonNumber | JsonValue[] | Map<string, JsonValue>;

export class JsonNumber {
  constructor(readonly raw: string) {}
}

/** Thrown with a message that says what is wrong and at which character offset. */
export class JsonSyntaxError extends Error {
  /** Character offset of the problem. */
  readonly at: number;
  /** For a duplicate key: the key, and the nesting depth of its object (1 = the top-level object). */
  readonly duplicateKey: string | undefined;
  readonly depth: number | undefined;
  /** Keys of the objects enclosing the problem, outermost first. */
  readonly path: readonly string[];

  constructor(message: string, at: number, path: readonly string[], duplicate?: { key: string; depth: number }) {
    super(`${message} at character ${at}`);
    this.path = path;
    this.name = "JsonSyntaxError";
    this.at = at;
    this.duplicateKey = duplicate?.key;
    this.depth = duplicate?.depth;
  }
}

const MAX_DEPTH = 128; // serde_json's recursion limit

/** Parse `text` as one JSON value with optional surrounding whitespace. */
export function parseJsonStrict(text: string): JsonValue {
  const p = new Parser(text);
  p.ws();
  const v = p.value(0);
  p.ws();
  if (p.i < text.length) p.fail(`unexpected ${p.describe()} after the JSON value`);
  return v;
}

class Parser {
  i = 0;
  readonly keys: string[] = [];
  constructor(readonly s: string) {}

  fail(msg: string): never {
    throw new JsonSyntaxError(msg, this.i, this.keys.slice());
  }

  describe(): string {
    if (this.i >= this.s.length) return "end of input";
    return `character ${JSON.stringify(this.s[this.i])}`;
  }

  ws(): void {
    const s = this.s;
    let i = this.i;
    for (;;) {
      const c = s.charCodeAt(i);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) i++;
      else break;
    }
    this.i = i;
  }

  value(depth: number): JsonValue {
    const c = this.s.charCodeAt(this.i);
    switch (c) {
      case 0x7b: // {
        return this.object(depth + 1);
      case 0x5b: // [
        return this.array(depth + 1);
      case 0x22: // "
        return this.string();
      case 0x74: // t
        return this.literal("true", true);
      case 0x66: // f
        return this.literal("false", false);
      case 0x6e: // n
        return this.literal("null", null);
      default:
        if (c === 0x2d || (c >= 0x30 && c <= 0x39)) return this.number();
        return this.fail(`expected a JSON value, found ${this.describe()}`);
    }
  }

  literal<T>(word: string, v: T): T {
    if (this.s.startsWith(word, this.i)) {
      this.i += word.length;
      return v;
    }
    return this.fail(`invalid literal`);
  }

  object(depth: number): Map<string, JsonValue> {
    if (depth > MAX_DEPTH) this.fail(`nesting deeper than ${MAX_DEPTH}`);
    this.i++; // {
    const out = new Map<string, JsonValue>();
    this.ws();
    if (this.s.charCodeAt(this.i) === 0x7d) {
      this.i++;
      return out;
    }
    for (;;) {
      if (this.s.charCodeAt(this.i) !== 0x22) this.fail(`expected a string key, found ${this.describe()}`);
      const keyAt = this.i;
      const key = this.string();
      if (out.has(key)) {
        throw new JsonSyntaxError(`duplicate key ${JSON.stringify(key)}`, keyAt, this.keys.slice(), { key, depth });
      }
      this.ws();
      if (this.s.charCodeAt(this.i) !== 0x3a) this.fail(`expected ':', found ${this.describe()}`);
      this.i++;
      this.ws();
      this.keys.push(key);
      out.set(key, this.value(depth));
      this.keys.pop();
      this.ws();
      const c = this.s.charCodeAt(this.i);
      if (c === 0x2c) {
        this.i++;
        this.ws();
      } else if (c === 0x7d) {
        this.i++;
        return out;
      } else {
        this.fail(`expected ',' or '}', found ${this.describe()}`);
      }
    }
  }

  array(depth: number): JsonValue[] {
    if (depth > MAX_DEPTH) this.fail(`nesting deeper than ${MAX_DEPTH}`);
    this.i++; // [
    const out: JsonValue[] = [];
    this.ws();
    if (this.s.charCodeAt(this.i) === 0x5d) {
      this.i++;
      return out;
    }
    for (;;) {
      out.push(this.value(depth));
      this.ws();
      const c = this.s.charCodeAt(this.i);
      if (c === 0x2c) {
        this.i++;
        this.ws();
      } else if (c === 0x5d) {
        this.i++;
        return out;
      } else {
        this.fail(`expected ',' or ']', found ${this.describe()}`);
      }
    }
  }

  string(): string {
    const s = this.s;
    this.i++; // opening quote
    let out = "";
    let run = this.i; // start of the current run of plain characters
    for (;;) {
      if (this.i >= s.length) this.fail("unterminated string");
      const c = s.charCodeAt(this.i);
      if (c === 0x22) {
        out += s.slice(run, this.i);
        this.i++;
        return out;
      }
      if (c < 0x20) this.fail("control character in string");
      if (c !== 0x5c) {
        this.i++;
        continue;
      }
      out += s.slice(run, this.i);
      this.i++; // backslash
      const e = s[this.i];
      this.i++;
      switch (e) {
        case '"':
          out += '"';
          break;
        case "\\":
          out += "\\";
          break;
        case "/":
          out += "/";
          break;
        case "b":
          out += "\b";
          break;
        case "f":
          out += "\f";
          break;
        case "n":
          out += "\n";
          break;
        case "r":
          out += "\r";
          break;
        case "t":
          out += "\t";
          break;
        case "u": {
          const hi = this.hex4();
          if (hi >= 0xdc00 && hi <= 0xdfff) this.fail("lone trailing surrogate in \\u escape");
          if (hi >= 0xd800 && hi <= 0xdbff) {
            if (s[this.i] !== "\\" || s[this.i + 1] !== "u") this.fail("lone leading surrogate in \\u escape");
            this.i += 2;
            const lo = this.hex4();
            if (lo < 0xdc00 || lo > 0xdfff) this.fail("invalid low surrogate in \\u escape");
            out += String.fromCharCode(hi, lo);
          } else {
            out += String.fromCharCode(hi);
          }
          break;
        }
        default:
          this.i--;
          this.fail("invalid escape");
      }
      run = this.i;
    }
  }

  hex4(): number {
    const h = this.s.slice(this.i, this.i + 4);
    if (!/^[0-9a-fA-F]{4}$/.test(h)) this.fail("invalid \\u escape");
    this.i += 4;
    return parseInt(h, 16);
  }

  number(): JsonNumber {
    const m = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
    m.lastIndex = this.i;
    const r = m.exec(this.s);
    if (!r) this.fail("invalid number");
    this.i += r[0].length;
    const next = this.s.charCodeAt(this.i);
    if ((next >= 0x30 && next <= 0x39) || next === 0x2e) this.fail("invalid number"); // e.g. 01, 1.
    return new JsonNumber(r[0]);
  }
}
