// Legacy tc attachment: a clsact qdisc plus a direct-action cls_bpf filter
// (libbpf bpf_tc_*, netlink in the calling thread's netns). The fallback for
// kernels without tcx. The qdisc owns the filter, so the program stays
// attached after the process exits with no pin; it must be detached explicitly.
//
// Interplay with tcx (seen on 6.18): a tcx program returning TCX_PASS (0) or
// TCX_DROP ends processing of the hook, so legacy filters on it no longer
// run; only TCX_NEXT (-1) falls through to them. Callers therefore remove
// the legacy filter after a successful tcx attach (detachTcLegacy).
import { KernelError } from '../../shared/errors.ts';
import { withNetns } from '../../shared/netns.ts';
import { bpf } from '../native/libbpf.ts';
import { decodeTcOpts, encodeTcHook, encodeTcOpts, TC_EGRESS, TC_F_REPLACE, TC_INGRESS } from '../native/structs.ts';
import type { TcDirection } from './attach-tcx.ts';

export interface TcLegacyTarget {
  ifindex: number;
  direction: TcDirection;
  /** Name under /run/netns or a path; ifindex is resolved there. */
  netns?: string;
  /** Filter handle (default 1) and priority (default 1), as Cilium uses. */
  handle?: number;
  priority?: number;
}

const EEXIST = 17;
const ENOENT = 2;
const EINVAL = 22;

function hookFor(t: TcLegacyTarget): Buffer {
  return encodeTcHook(t.ifindex, t.direction === 'ingress' ? TC_INGRESS : TC_EGRESS);
}

function describe(t: TcLegacyTarget): string {
  return `tc ${t.direction} filter on ifindex ${t.ifindex}${t.netns ? ` in netns ${t.netns}` : ''}`;
}

/**
 * Creates the clsact qdisc if missing and attaches `progFd` as a
 * direct-action cls_bpf filter (protocol all), replacing a filter with the
 * same handle/priority. Returns the attached program id. The caller keeps
 * owning `progFd`; the filter holds its own reference.
 * Throws KernelError.
 */
export function attachTcLegacy(t: TcLegacyTarget & { progFd: number }): { progId: number } {
  return withNetns(t.netns, () => {
    const clsact = encodeTcHook(t.ifindex, TC_INGRESS | TC_EGRESS);
    const hrc = bpf.tc_hook_create(clsact);
    if (hrc < 0 && hrc !== -EEXIST) throw new KernelError(`attach ${describe(t)}: create clsact qdisc`, hrc);
    const opts = encodeTcOpts({ progFd: t.progFd, flags: TC_F_REPLACE, handle: t.handle ?? 1, priority: t.priority ?? 1 });
    const rc = bpf.tc_attach(hookFor(t), opts);
    if (rc < 0) throw new KernelError(`attach ${describe(t)}`, rc);
    return { progId: decodeTcOpts(opts).progId };
  });
}

/**
 * Removes the filter at handle/priority. Returns false (does not throw) when
 * there is none or no clsact qdisc at all. Leaves the qdisc in place.
 */
export function detachTcLegacy(t: TcLegacyTarget): boolean {
  return withNetns(t.netns, () => {
    const rc = bpf.tc_detach(hookFor(t), encodeTcOpts({ handle: t.handle ?? 1, priority: t.priority ?? 1 }));
    if (rc === -ENOENT || rc === -EINVAL) return false; // no filter / no clsact qdisc
    if (rc < 0) throw new KernelError(`detach ${describe(t)}`, rc);
    return true;
  });
}

/** Program id of the filter at handle/priority, or undefined if none (or no clsact). */
export function queryTcLegacy(t: TcLegacyTarget): number | undefined {
  return withNetns(t.netns, () => {
    const opts = encodeTcOpts({ handle: t.handle ?? 1, priority: t.priority ?? 1 });
    const rc = bpf.tc_query(hookFor(t), opts);
    if (rc === -ENOENT || rc === -EINVAL) return undefined;
    if (rc < 0) throw new KernelError(`query ${describe(t)}`, rc);
    return decodeTcOpts(opts).progId || undefined;
  });
}

/** Deletes the clsact qdisc and with it every tc filter on both directions. False if there was none. */
export function destroyClsact(o: { ifindex: number; netns?: string }): boolean {
  return withNetns(o.netns, () => {
    const rc = bpf.tc_hook_destroy(encodeTcHook(o.ifindex, TC_INGRESS | TC_EGRESS));
    if (rc === -ENOENT || rc === -EINVAL) return false;
    if (rc < 0) throw new KernelError(`delete clsact qdisc on ifindex ${o.ifindex}`, rc);
    return true;
  });
}
