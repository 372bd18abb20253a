// Attaching a loaded program to a device hook: tcx first (links pinned in the
// node's bpffs so programs outlive the agent), legacy tc clsact as fallback
// on kernels without tcx (Cilium's attachSKBProgram).
import { attachTcx, attachTcLegacy, detachTcLegacy, detachTcx, type BpfProgram } from '../bpf/index.ts';
import { findCause, UnsupportedFeatureError, wrap } from '../shared/errors.ts';
import type { Rollback } from './rollback.ts';

export type Hook = 'ingress' | 'egress';

export interface AttachResult {
  mode: 'tcx' | 'tc';
  linkId?: number;
  /** An existing pinned link was swapped to the new program in place. */
  updated: boolean;
}

/**
 * Attaches `prog` on `ifindex`/`hook`. With tcx the link is pinned at
 * `linkPin` (an existing pin is updated in place, so traffic never sees a
 * gap) and stale legacy filters on that hook are removed; without tcx a
 * clsact direct-action filter (handle 1, prio 1) is replaced.
 */
export function attachProgram(o: { prog: BpfProgram; ifindex: number; ifname: string; hook: Hook; linkPin: string; legacyTc?: boolean; rb?: Rollback }): AttachResult {
  const what = `attach ${o.prog.name} to ${o.ifname} ${o.hook}`;
  // legacyTc (the node config's forceLegacyTc) takes the fallback on a kernel that has tcx, for its tests.
  if (!o.legacyTc) {
    try {
      const r = attachTcx({ progFd: o.prog.fd, ifindex: o.ifindex, direction: o.hook, pinPath: o.linkPin });
      if (!r.updated) o.rb?.push(what, () => detachTcx(o.linkPin));
      detachTcLegacy({ ifindex: o.ifindex, direction: o.hook });
      return { mode: 'tcx', linkId: r.linkId, updated: r.updated };
    } catch (e) {
      if (!findCause(e, UnsupportedFeatureError)) throw wrap(what, e);
    }
  }
  try {
    attachTcLegacy({ progFd: o.prog.fd, ifindex: o.ifindex, direction: o.hook });
  } catch (e) {
    throw wrap(`${what} (legacy tc)`, e);
  }
  o.rb?.push(`${what} (legacy tc)`, () => detachTcLegacy({ ifindex: o.ifindex, direction: o.hook }));
  return { mode: 'tc', updated: false };
}
