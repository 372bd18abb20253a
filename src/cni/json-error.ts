// Where a JSON text stops being valid, and whether its nesting is bounded.
// Node 20's JSON.parse names a position for some mistakes only ("Unexpected
// token '}', ... is not valid JSON" has none), and it accepts any depth, so
// CNI's decode errors (code 6) come from this small validator instead: it
// walks the text once with RFC 8259 grammar and reports the first bad byte.
//
// It runs before JSON.parse on every network config the agent reads, so it
// must stay cheap: one pass over char codes, no regular expressions or
// slices per token (about 5 ms per MiB here), and iterative, so deep
// nesting cannot overflow the stack. The C shim (cni/membrane-cni.c)
// implements the same grammar, reasons and positions for the configs it
// refuses by itself; test/unit/cni-shim.test.ts holds the two to each other.

/**
 * The deepest nesting of objects and arrays a network config may have. A
 * real one nests about 5 deep (`args.cni.labels[i]`, `prevResult.ips[i]`);
 * 64 leaves room for any plugin's own keys, and keeps every recursive
 * consumer of the parsed value (JSON.stringify of a prevResult, V8's own
 * parser) far from its stack limit. The shim refuses the same depth.
 */
export const MAX_JSON_DEPTH = 64;

export interface JsonErrorPosition {
  /** Offset in bytes of the text's UTF-8 encoding (what stdin held). */
  offset: number;
  /** The same position as a JS string index (UTF-16 code units). */
  index: number;
  line: number;
  /** Column in characters (code points), from 1. */
  column: number;
  reason: string;
}

/** Line, column (code points) and UTF-8 byte offset of string index `at`. */
function position(text: string, at: number, reason: string): JsonErrorPosition {
  let line = 1;
  let column = 1;
  let offset = 0;
  const end = Math.min(at, text.length);
  for (let k = 0; k < end; k++) {
    const c = text.charCodeAt(k);
    if (c === 0x0a) { line++; column = 1; offset++; continue; }
    if (c >= 0xd800 && c < 0xdc00 && k + 1 < end && (text.charCodeAt(k + 1) & 0xfc00) === 0xdc00) {
      k++; // a surrogate pair: one character, four bytes
      offset += 4;
    } else {
      offset += c < 0x80 ? 1 : c < 0x800 ? 2 : 3; // a lone surrogate is written as U+FFFD, 3 bytes
    }
    column++;
  }
  return { offset, index: at, line, column, reason };
}

// The scanners below take the text and an index and return the index after
// what they read, or the bitwise NOT of the index of the first bad character
// (a negative number) with the reason in `failure`. Plain functions over
// arguments, not closures over a shared index: V8 keeps the index in a
// register then, which makes the scan several times faster.
let failure = '';

const isDigit = (c: number) => c >= 0x30 && c <= 0x39;
const isHex = (c: number) => isDigit(c) || ((c | 0x20) >= 0x61 && (c | 0x20) <= 0x66);

function ws(t: string, i: number): number {
  for (const n = t.length; i < n; i++) {
    const c = t.charCodeAt(i);
    if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) break;
  }
  return i;
}

/** "unexpected <the character at i, as JSON>" or "unexpected end of input". */
function what(t: string, i: number): string {
  return i >= t.length ? 'unexpected end of input' : `unexpected ${JSON.stringify(String.fromCodePoint(t.codePointAt(i)!))}`;
}

function bad(i: number, reason: string): number {
  failure = reason;
  return ~i;
}

/** A string literal; i is at its opening quote. */
function scanString(t: string, i: number): number {
  const n = t.length;
  for (i++; i < n;) {
    const c = t.charCodeAt(i);
    if (c === 0x22) return i + 1;
    if (c < 0x20) return bad(i, 'control character in string');
    if (c !== 0x5c) { i++; continue; }
    if (i + 1 >= n) return bad(i, 'unexpected end of input in string');
    const e = t.charCodeAt(i + 1);
    if (e === 0x75) { // \u: four hex digits
      if (!isHex(t.charCodeAt(i + 2)) || !isHex(t.charCodeAt(i + 3)) || !isHex(t.charCodeAt(i + 4)) || !isHex(t.charCodeAt(i + 5))) return bad(i, 'bad \\u escape');
      i += 6;
    } else if (e === 0x22 || e === 0x5c || e === 0x2f || e === 0x62 || e === 0x66 || e === 0x6e || e === 0x72 || e === 0x74) {
      i += 2;
    } else if (e < 0x20) {
      return bad(i + 1, 'control character in string'); // named as such, so the message stays one line
    } else {
      return bad(i, `bad escape \\${String.fromCodePoint(t.codePointAt(i + 1)!)}`);
    }
  }
  return bad(i, 'unterminated string');
}

function scanDigits(t: string, i: number): number {
  if (!isDigit(t.charCodeAt(i))) return bad(i, `${what(t, i)}, expected a digit`);
  while (isDigit(t.charCodeAt(i))) i++;
  return i;
}

/** A number; i is at its '-' or first digit. */
function scanNumber(t: string, i: number): number {
  if (t.charCodeAt(i) === 0x2d) i++;
  if (t.charCodeAt(i) === 0x30) i++;
  else if ((i = scanDigits(t, i)) < 0) return i;
  if (t.charCodeAt(i) === 0x2e && (i = scanDigits(t, i + 1)) < 0) return i;
  if ((t.charCodeAt(i) | 0x20) === 0x65) {
    i++;
    if (t.charCodeAt(i) === 0x2b || t.charCodeAt(i) === 0x2d) i++;
    if ((i = scanDigits(t, i)) < 0) return i;
  }
  return i;
}

/** After '{' or ',' in an object: "name" ':' (the value follows). */
function scanMember(t: string, i: number): number {
  i = ws(t, i);
  if (t.charCodeAt(i) !== 0x22) return bad(i, `${what(t, i)}, expected a property name`);
  if ((i = scanString(t, i)) < 0) return i;
  i = ws(t, i);
  if (t.charCodeAt(i) !== 0x3a) return bad(i, `${what(t, i)}, expected ':' after property name`);
  return i + 1;
}

/** Returns where `text` is not valid JSON, or nested deeper than `maxDepth`; undefined if it is fine. */
export function locateJsonError(text: string, maxDepth = Number.POSITIVE_INFINITY): JsonErrorPosition | undefined {
  const t = text;
  const n = t.length;
  let i = 0;
  // The open containers: 0x7b '{' or 0x5b '['. Their closers are 2 more: '}' and ']'.
  const stack: number[] = [];
  for (;;) {
    // Expect a value.
    i = ws(t, i);
    if (i >= n) return position(t, i, 'unexpected end of input, expected a value');
    const c = t.charCodeAt(i);
    if (c === 0x7b || c === 0x5b) {
      if (stack.length >= maxDepth) return position(t, i, `nesting deeper than ${maxDepth} levels`);
      stack.push(c);
      i = ws(t, i + 1);
      if (t.charCodeAt(i) !== c + 2) {
        if (c === 0x7b && (i = scanMember(t, i)) < 0) return position(t, ~i, failure);
        continue;
      }
      i++;
      stack.pop();
    } else if (c === 0x22) {
      if ((i = scanString(t, i)) < 0) return position(t, ~i, failure);
    } else if (c === 0x2d || isDigit(c)) {
      if ((i = scanNumber(t, i)) < 0) return position(t, ~i, failure);
    } else if (t.startsWith('true', i)) i += 4;
    else if (t.startsWith('false', i)) i += 5;
    else if (t.startsWith('null', i)) i += 4;
    else return position(t, i, `${what(t, i)}, expected a value`);
    // After a complete value: ',' or the container's closer, or the end of the text.
    for (;;) {
      i = ws(t, i);
      if (stack.length === 0) return i < n ? position(t, i, `${what(t, i)} after the JSON value`) : undefined;
      const top = stack[stack.length - 1]!;
      const d = t.charCodeAt(i);
      if (d === top + 2) { i++; stack.pop(); continue; }
      if (d !== 0x2c) return position(t, i, `${what(t, i)}, expected ',' or '${String.fromCharCode(top + 2)}'`);
      i++;
      if (top === 0x7b && (i = scanMember(t, i)) < 0) return position(t, ~i, failure);
      break;
    }
  }
}

/**
 * The byte offset of the first byte in `buf` that is not part of valid UTF-8
 * (RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF), or -1.
 */
export function firstInvalidUtf8(buf: Uint8Array): number {
  const n = buf.length;
  for (let i = 0; i < n;) {
    const b = buf[i]!;
    if (b < 0x80) { i++; continue; }
    let len: number;
    let min: number;
    if ((b & 0xe0) === 0xc0) { len = 2; min = 0x80; } else if ((b & 0xf0) === 0xe0) { len = 3; min = 0x800; } else if ((b & 0xf8) === 0xf0) { len = 4; min = 0x10000; } else return i;
    if (i + len > n) return i;
    let cp = b & (0xff >> (len + 1));
    for (let k = 1; k < len; k++) {
      const cb = buf[i + k]!;
      if ((cb & 0xc0) !== 0x80) return i;
      cp = (cp << 6) | (cb & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp < 0xe000)) return i;
    i += len;
  }
  return -1;
}

/** Where `buf` stops being UTF-8, as a position like locateJsonError's; undefined if it is valid. */
export function locateUtf8Error(buf: Uint8Array): JsonErrorPosition | undefined {
  const at = firstInvalidUtf8(buf);
  if (at < 0) return undefined;
  const before = Buffer.from(buf.buffer, buf.byteOffset, at).toString('utf8');
  return { ...position(before, before.length, 'invalid UTF-8'), offset: at };
}
