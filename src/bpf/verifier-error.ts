// A program the kernel refused to load. The message names the operation and
// program, then quotes the verifier's last meaningful lines (normally the
// failing instruction and the reason), e.g.
//   load program bad_deref from bad.o: permission denied (EACCES):
//   verifier: 7: (79) r1 = *(u64 *)(r0 +0) | R0 invalid mem access 'map_value_or_null'
//   (at bad.c:27: return *v == 42;) (12 lines omitted)
// `.log` keeps every line for --verbose and the API.
import { errnoName, strerror } from '../shared/errno.ts';
import { MembraneError } from '../shared/errors.ts';

/** Lines that carry no diagnosis: verifier statistics and libbpf's log framing. */
const NOISE = [
  /^processed \d+ insns/,
  /^verification time \d+/,
  /^stack depth /,
  /^-- (BEGIN|END) PROG LOAD LOG --/,
  /^\s*$/,
];

/**
 * The last `keep` meaningful lines of a verifier log (normally the failing
 * instruction and the reason), the C source line the verifier annotated last
 * before them (from BTF line info: "; return *v == 42; @ bad.c:27"), and how
 * many lines were left out.
 */
export function summarizeVerifierLog(log: string[], keep = 2): { lines: string[]; source?: string; omitted: number } {
  const meaningful: number[] = [];
  for (let i = log.length - 1; i >= 0 && meaningful.length < keep; i--) {
    if (!NOISE.some((re) => re.test(log[i]!)) && !log[i]!.startsWith(';')) meaningful.unshift(i);
  }
  const lines = meaningful.map((i) => log[i]!.trim());
  let source: string | undefined;
  for (let i = (meaningful[0] ?? log.length) - 1; i >= 0; i--) {
    const m = /^; (.*?)\s*@ (\S+:\d+)$/.exec(log[i]!);
    if (m && m[1]!.trim() !== '') { source = `${m[2]}: ${m[1]!.trim()}`; break; }
  }
  const total = log.filter((l) => l.trim() !== '').length;
  return { lines, source, omitted: Math.max(0, total - lines.length - (source ? 1 : 0)) };
}

export class VerifierError extends MembraneError {
  /** Program (function) name as in the ELF. */
  readonly program: string;
  readonly errno: number;
  readonly errnoName: string;
  /** The complete verifier log, one line per entry. */
  readonly log: string[];
  /** libbpf's own messages around the failure. */
  readonly libbpfLog: string[];

  constructor(op: string, program: string, errno: number, log: string[], libbpfLog: string[] = []) {
    const e = Math.abs(errno);
    const { lines, source, omitted } = summarizeVerifierLog(log);
    const at = source ? ` (at ${source})` : '';
    const detail = lines.length ? `: verifier: ${lines.join(' | ')}${at}${omitted ? ` (${omitted} lines omitted)` : ''}` : ': no verifier log';
    super(`${op}: ${strerror(e)} (${errnoName(e)})${detail}`, { code: 'E_BPF_VERIFIER' });
    this.program = program;
    this.errno = e;
    this.errnoName = errnoName(e);
    this.log = log;
    this.libbpfLog = libbpfLog;
  }
}
