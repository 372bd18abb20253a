// Rendering for listings: aligned text tables or JSON (every listing takes -o json).

/** Renders rows as a left-aligned table with a header; empty cells print as '-'. */
export function table(headers: string[], rows: (string | number | undefined)[][]): string {
  const cells = rows.map((r) => r.map((c) => (c === undefined || c === '' ? '-' : String(c))));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('   ').trimEnd();
  return [line(headers), ...cells.map(line)].join('\n') + '\n';
}

export function json(v: unknown): string {
  return JSON.stringify(v, null, 2) + '\n';
}
