// Error types shared by every layer. Messages read "operation subject: cause",
// each layer adding its own step through `cause`, so a rendered chain reads
// like a path: "datapath init: attach cil_to_host to cilium_host: bpf_link_create: operation not supported (EOPNOTSUPP)".
//
// Every code is in the catalogue (./error-codes.ts), which also says what each
// surface (CNI, HTTP API, CLI exit) answers for it.
import { errnoName, strerror } from './errno.ts';
import { errorCodeOf, type ErrorCode } from './error-codes.ts';

export type { ErrorCode } from './error-codes.ts';

export interface MembraneErrorOptions {
  code?: ErrorCode;
  cause?: unknown;
  hint?: string;
}

/** Base class: a stable `code` for scripts and the API, an optional hint for the user. */
export class MembraneError extends Error {
  readonly code: ErrorCode;
  readonly hint?: string;

  constructor(message: string, opts: MembraneErrorOptions = {}) {
    const causeMsg = opts.cause instanceof Error ? opts.cause.message : opts.cause !== undefined ? String(opts.cause) : '';
    super(causeMsg ? `${message}: ${causeMsg}` : message, opts.cause !== undefined ? { cause: opts.cause } : undefined);
    this.name = new.target.name;
    // No code given: the cause's (along its chain), so wrapping never loses it.
    this.code = opts.code ?? errorCodeOf(opts.cause);
    this.hint = opts.hint ?? (opts.cause instanceof MembraneError ? opts.cause.hint : undefined);
  }
}

/** A syscall or netlink request the kernel refused. Keeps the errno and the extended-ack text. */
export class KernelError extends MembraneError {
  readonly op: string;
  readonly errno: number;
  readonly errnoName: string;
  readonly extAck?: string;

  constructor(op: string, errno: number, extAck?: string, opts: { code?: ErrorCode; hint?: string } = {}) {
    const e = Math.abs(errno);
    const ack = extAck ? ` (kernel: ${extAck})` : '';
    super(`${op}: ${strerror(e)} (${errnoName(e)})${ack}`, { code: opts.code ?? 'E_KERNEL', hint: opts.hint });
    this.op = op;
    this.errno = e;
    this.errnoName = errnoName(e);
    this.extAck = extAck;
  }
}

/** Invalid configuration: lists every problem, one per line, each naming its field. */
export class ConfigError extends MembraneError {
  readonly problems: string[];
  constructor(what: string, problems: string[]) {
    super(problems.length === 1 ? `${what}: ${problems[0]}` : `${what}: ${problems.length} problems: ${problems.join('; ')}`, { code: 'E_CONFIG' });
    this.problems = problems;
  }
}

/** The running kernel lacks a feature (e.g. tcx links before 6.6). Lets callers fall back with one check. */
export class UnsupportedFeatureError extends MembraneError {
  readonly feature: string;
  constructor(feature: string, minKernel: string, cause?: unknown) {
    super(`${feature} not supported (requires Linux >= ${minKernel})`, { code: 'E_NOT_SUPPORTED', cause });
    this.feature = feature;
  }
}

/** Wraps any error with the operation that failed; keeps the cause's code unless one is given. */
export function wrap(op: string, err: unknown, code?: ErrorCode): MembraneError {
  return new MembraneError(op, { cause: err, code });
}

/** Walks the cause chain (like Go's errors.Is) looking for a KernelError with this errno name. */
export function hasErrno(err: unknown, name: string): boolean {
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    if (e instanceof KernelError && e.errnoName === name) return true;
  }
  return false;
}

/** Finds the first error of a class in the cause chain. */
export function findCause<T extends Error>(err: unknown, cls: abstract new (...a: any[]) => T): T | undefined {
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    if (e instanceof cls) return e;
  }
  return undefined;
}

/** The cause chain, outermost first, one line each (for --verbose). */
export function causeChain(err: unknown): string[] {
  const out: string[] = [];
  for (let e: unknown = err; e !== undefined; e = e instanceof Error ? e.cause : undefined) {
    out.push(e instanceof Error ? `${e.name}${(e as MembraneError).code ? ` [${(e as MembraneError).code}]` : ''}: ${e.message}` : String(e));
    if (!(e instanceof Error)) break;
  }
  return out;
}
