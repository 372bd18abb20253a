// An error from a libbpf call, carrying the lines libbpf printed while it ran
// (libbpf explains most of its own refusals only through its print callback).
import { KernelError, type ErrorCode } from '../shared/errors.ts';

export class LibbpfError extends KernelError {
  /** Everything libbpf printed (warnings/info) during the failed call. */
  readonly libbpfLog: string[];

  /** `fn` is the libbpf function, `rc` its negative errno, `lines` from libbpfLinesSince(). */
  constructor(fn: string, rc: number, lines: string[] = [], opts: { code?: ErrorCode; hint?: string } = {}) {
    super(fn, rc, undefined, opts);
    this.libbpfLog = lines;
    const tail = meaningful(lines).slice(-3);
    if (tail.length) this.message += ` (libbpf: ${tail.join('; ')})`;
  }
}

// Drops the verifier log dumps libbpf echoes (they are reported separately).
function meaningful(lines: string[]): string[] {
  const out: string[] = [];
  let inLog = false;
  for (const l of lines) {
    if (l.includes('-- BEGIN PROG LOAD LOG --')) { inLog = true; continue; }
    if (l.includes('-- END PROG LOAD LOG --')) { inLog = false; continue; }
    if (!inLog) out.push(l.trim());
  }
  return out;
}
