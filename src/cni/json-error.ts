// Where a JSON text stops being valid. Node 20's JSON.parse names a position
// for some mistakes only ("Unexpected token '}', ... is not valid JSON" has
// none), so CNI's decode errors (code 6) use this small validator instead:
// it walks the text with RFC 8259 grammar and reports the first bad byte.

export interface JsonErrorPosition {
  /** Offset in UTF-16 code units (the JS string index). */
  offset: number;
  line: number;
  column: number;
  reason: string;
}

/** Returns where `text` is not valid JSON, or undefined if it is. Iterative: deep nesting cannot overflow the stack. */
export function locateJsonError(text: string): JsonErrorPosition | undefined {
  let i = 0;
  const n = text.length;
  const fail = (reason: string, at = i): JsonErrorPosition => {
    let line = 1;
    let col = 1;
    for (let k = 0; k < at && k < n; k++) {
      if (text.charCodeAt(k) === 10) { line++; col = 1; } else col++;
    }
    return { offset: at, line, column: col, reason };
  };
  const ws = () => { while (i < n && ' \t\n\r'.includes(text[i]!)) i++; };
  const what = () => (i >= n ? 'unexpected end of input' : `unexpected ${JSON.stringify(text[i])}`);

  const string = (): JsonErrorPosition | undefined => {
    i++; // opening quote
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 0x22) { i++; return undefined; }
      if (c < 0x20) return fail('control character in string');
      if (c === 0x5c) {
        const e = text[i + 1];
        if (e === undefined) { i++; return fail('unexpected end of input in string'); }
        if (e === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) return fail('bad \\u escape');
          i += 6;
        } else if ('"\\/bfnrt'.includes(e)) i += 2;
        else return fail(`bad escape \\${e}`);
      } else i++;
    }
    return fail('unterminated string');
  };
  const scalar = (): JsonErrorPosition | undefined => {
    for (const lit of ['true', 'false', 'null']) {
      if (text.startsWith(lit, i)) { i += lit.length; return undefined; }
    }
    const m = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i, i + 400));
    if (!m || m[0] === '' || m[0] === '-') return fail(`${what()}, expected a value`);
    i += m[0].length;
    return undefined;
  };

  // Stack of open containers: '{' or '['.
  const stack: string[] = [];
  ws();
  for (;;) {
    // Expect a value.
    ws();
    if (i >= n) return fail('unexpected end of input, expected a value');
    const c = text[i]!;
    let closed = false;
    if (c === '{' || c === '[') {
      stack.push(c);
      i++;
      ws();
      if (text[i] === (c === '{' ? '}' : ']')) { i++; stack.pop(); closed = true; }
      else if (c === '{') {
        if (text[i] !== '"') return fail(`${what()}, expected a property name`);
        const e = string(); if (e) return e;
        ws();
        if (text[i] !== ':') return fail(`${what()}, expected ':' after property name`);
        i++;
        continue;
      } else continue;
    } else if (c === '"') {
      const e = string(); if (e) return e;
      closed = true;
    } else {
      const e = scalar(); if (e) return e;
      closed = true;
    }
    // After a complete value: ',' / closers, or the end.
    while (closed) {
      ws();
      const top = stack[stack.length - 1];
      if (top === undefined) {
        return i < n ? fail(`${what()} after the JSON value`) : undefined;
      }
      const close = top === '{' ? '}' : ']';
      if (text[i] === close) { i++; stack.pop(); continue; }
      if (text[i] !== ',') return fail(`${what()}, expected ',' or '${close}'`);
      i++;
      ws();
      if (top === '{') {
        if (text[i] !== '"') return fail(`${what()}, expected a property name`);
        const e = string(); if (e) return e;
        ws();
        if (text[i] !== ':') return fail(`${what()}, expected ':' after property name`);
        i++;
      }
      closed = false;
    }
  }
}
