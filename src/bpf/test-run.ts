// BPF_PROG_TEST_RUN: runs a loaded program on a synthetic packet in the
// kernel (no device, no attach), so datapath programs can be tested from TS.
// For tc (SCHED_CLS) programs `data` is a whole Ethernet frame (>= 14 bytes)
// and `ctx` an optional struct __sk_buff (192 bytes) for mark, ifindex, etc.
import { KernelError } from '../shared/errors.ts';
import { addressOf, bpf } from './native/libbpf.ts';
import { decodeTestRunOpts, encodeTestRunOpts } from './native/structs.ts';

export interface TestRunOptions {
  /** Runs this many times; durationNs is the average (default 1). */
  repeat?: number;
  /** Input context (struct __sk_buff for tc programs). */
  ctx?: Buffer;
  /** Capacity for the output packet (default input length + 512, room for encapsulation). */
  dataOutSize?: number;
  /** Capacity for the output context (default ctx length, 0 without ctx). */
  ctxOutSize?: number;
  flags?: number;
  cpu?: number;
}

export interface TestRunResult {
  /** The program's return value (for tc: TC_ACT_*; TC_ACT_REDIRECT = 7). */
  retval: number;
  /** The packet after the program ran (it may have been rewritten or resized). */
  dataOut: Buffer;
  ctxOut?: Buffer;
  durationNs: number;
}

/**
 * Runs the program behind `progFd` (caller keeps ownership) on `data`.
 * Throws KernelError (EINVAL for a too-short packet or a program type that
 * cannot be test-run, ENOSPC if the output does not fit dataOutSize).
 */
export function progTestRun(progFd: number, data: Buffer, opts: TestRunOptions = {}): TestRunResult {
  const dataIn = Buffer.from(data); // the kernel only reads it, but keep the caller's buffer untouched
  const dataOut = Buffer.alloc(opts.dataOutSize ?? data.length + 512);
  const ctxIn = opts.ctx ? Buffer.from(opts.ctx) : undefined;
  const ctxOut = ctxIn ? Buffer.alloc(opts.ctxOutSize ?? ctxIn.length) : undefined;
  const o = encodeTestRunOpts({
    dataIn: addressOf(dataIn), dataSizeIn: dataIn.length,
    dataOut: addressOf(dataOut), dataSizeOut: dataOut.length,
    ctxIn: ctxIn ? addressOf(ctxIn) : 0n, ctxSizeIn: ctxIn?.length ?? 0,
    ctxOut: ctxOut ? addressOf(ctxOut) : 0n, ctxSizeOut: ctxOut?.length ?? 0,
    repeat: opts.repeat ?? 1, flags: opts.flags, cpu: opts.cpu,
  });
  const rc = bpf.prog_test_run_opts(progFd, o);
  if (rc < 0) throw new KernelError(`test run program fd ${progFd}`, rc);
  const r = decodeTestRunOpts(o);
  // Keep the input buffers alive until here: the kernel read them through raw addresses.
  void dataIn.length; void ctxIn?.length;
  return {
    retval: r.retval | 0,
    dataOut: dataOut.subarray(0, r.dataSizeOut),
    ...(ctxOut ? { ctxOut: ctxOut.subarray(0, r.ctxSizeOut) } : {}),
    durationNs: r.duration,
  };
}
