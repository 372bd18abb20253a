// Kernel feature probes, run lazily and cached once conclusive (cilium/ebpf
// internal/feature style). A failed attach runs the matching probe before
// reporting, so callers get UnsupportedFeatureError instead of a bare EINVAL
// and can fall back with one check.
import { KernelError, UnsupportedFeatureError } from '../shared/errors.ts';
import { bpf, closeFd } from './native/libbpf.ts';
import { ATTACH_TCX_INGRESS, PROG_TYPE_SCHED_CLS } from './native/structs.ts';

const ENODEV = 19;
const EINVAL = 22;
const EOPNOTSUPP = 95;
const ENOTSUPP = 524;

// r0 = 0; exit
const RETURN_ZERO = Buffer.from('b700000000000000' + '9500000000000000', 'hex');

let tcx: boolean | undefined;

/**
 * Whether the kernel has tcx links (Linux >= 6.6). Probe without side
 * effects: a trivial SCHED_CLS program is linked to ifindex 0 — a kernel with
 * tcx looks the device up and answers ENODEV; one without rejects the attach
 * type with EINVAL. Throws KernelError if the probe itself cannot run (e.g. EPERM).
 */
export function haveTcx(): boolean {
  if (tcx !== undefined) return tcx;
  const prog = bpf.prog_load(PROG_TYPE_SCHED_CLS, 'membrane_probe', 'GPL', RETURN_ZERO, 2, null);
  if (prog < 0) throw new KernelError('probe tcx: load probe program', prog);
  try {
    const rc = bpf.link_create(prog, 0, ATTACH_TCX_INGRESS, null);
    if (rc >= 0) {
      closeFd(rc); // cannot happen for ifindex 0, but never leak a link
      tcx = true;
    } else if (rc === -ENODEV) {
      tcx = true;
    } else if (rc === -EINVAL || rc === -EOPNOTSUPP || rc === -ENOTSUPP) {
      tcx = false;
    } else {
      throw new KernelError('probe tcx: bpf_link_create', rc);
    }
    return tcx;
  } finally {
    closeFd(prog);
  }
}

/** Throws UnsupportedFeatureError('tcx link', '6.6') if the kernel lacks tcx. */
export function requireTcx(cause?: unknown): void {
  if (!haveTcx()) throw new UnsupportedFeatureError('tcx link', '6.6', cause);
}

/** Test hook: forget cached probe results. */
export function resetFeatureCache(): void {
  tcx = undefined;
}
