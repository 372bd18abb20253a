// What is attached to tc hooks, as `bpftool net show` (7.5) reports it for
// tcx and clsact: per device, tcx ingress/egress via bpf_prog_query_opts
// (which also returns the link ids) and the legacy cls_bpf filter at
// handle 1 / priority 1 via bpf_tc_query.
//
// Device list: ifindex→name comes from libc if_nameindex() called inside the
// target netns (glibc asks the kernel over a netlink socket created in the
// calling thread's netns). /sys/class/net is not usable: sysfs shows the
// netns of whoever mounted it, not the thread's current one. Callers that
// already know their devices can pass them and skip the lookup.
import { KernelError, MembraneError } from '../shared/errors.ts';
import { withNetns } from '../shared/netns.ts';
import { queryTcLegacy } from './attach/attach-tc-legacy.ts';
import { progNameById } from './info.ts';
import { addressOf, bpf, c, errno, readNative, decodeCString } from './native/libbpf.ts';
import { ATTACH_TCX_EGRESS, ATTACH_TCX_INGRESS, decodeProgQueryOpts, encodeProgQueryOpts } from './native/structs.ts';

export type TcHook = 'tcx/ingress' | 'tcx/egress' | 'clsact/ingress' | 'clsact/egress';

export interface Attachment {
  ifname: string;
  ifindex: number;
  hook: TcHook;
  progName: string;
  progId: number;
  /** tcx only. */
  linkId?: number;
}

export interface NetDevice {
  ifindex: number;
  ifname: string;
}

const EINVAL = 22;
const ENOSPC = 28;

/** Devices of the calling thread's netns (use inside withNetns), sorted by ifindex. Throws KernelError. */
export function interfaces(): NetDevice[] {
  const list = c.if_nameindex();
  if (!list) throw new KernelError('list network interfaces: if_nameindex', -errno());
  try {
    const out: NetDevice[] = [];
    // struct if_nameindex { unsigned int if_index; char *if_name; } = 16 bytes, ends with {0, NULL}
    for (let p = list; ; p += 16n) {
      const e = readNative(p, 16);
      const ifindex = e.readUInt32LE(0);
      const name = e.readBigUInt64LE(8);
      if (ifindex === 0 && name === 0n) break;
      out.push({ ifindex, ifname: decodeCString(name) });
    }
    return out.sort((a, b) => a.ifindex - b.ifindex);
  } finally {
    c.if_freenameindex(list);
  }
}

/** Programs and links on one device's tcx hook (empty if none or the kernel has no tcx). */
export function queryTcx(ifindex: number, attachType: number): { progIds: number[]; linkIds: number[] } {
  for (let cap = 64; ; cap *= 4) {
    const progs = Buffer.alloc(4 * cap);
    const links = Buffer.alloc(4 * cap);
    const opts = encodeProgQueryOpts({ progIds: addressOf(progs), linkIds: addressOf(links), count: cap });
    const rc = bpf.prog_query_opts(ifindex, attachType, opts);
    if (rc === -EINVAL) return { progIds: [], linkIds: [] }; // no tcx support
    if (rc === -ENOSPC && cap < 65536) continue;
    if (rc < 0) throw new KernelError(`query tcx programs on ifindex ${ifindex}`, rc);
    const { count } = decodeProgQueryOpts(opts);
    const progIds: number[] = [];
    const linkIds: number[] = [];
    for (let i = 0; i < count; i++) {
      progIds.push(progs.readUInt32LE(4 * i));
      linkIds.push(links.readUInt32LE(4 * i));
    }
    return { progIds, linkIds };
  }
}

/**
 * tc attachments (tcx and clsact handle 1 prio 1) on every device of `netns`
 * (or of the caller's netns), ordered by ifindex, then tcx ingress, tcx
 * egress, clsact ingress, clsact egress (tcx runs before clsact). Pass
 * `devices` to skip the device lookup or to limit the listing.
 */
export function listAttachments(netns?: string, devices?: NetDevice[]): Attachment[] {
  try {
    return withNetns(netns, () => {
      const out: Attachment[] = [];
      for (const dev of devices ?? interfaces()) {
        for (const [hook, type] of [['tcx/ingress', ATTACH_TCX_INGRESS], ['tcx/egress', ATTACH_TCX_EGRESS]] as const) {
          const { progIds, linkIds } = queryTcx(dev.ifindex, type);
          progIds.forEach((progId, i) => {
            out.push({ ...dev, hook, progId, progName: progNameById(progId) ?? '', ...(linkIds[i] ? { linkId: linkIds[i] } : {}) });
          });
        }
        for (const direction of ['ingress', 'egress'] as const) {
          const progId = queryTcLegacy({ ifindex: dev.ifindex, direction });
          if (progId) out.push({ ...dev, hook: `clsact/${direction}`, progId, progName: progNameById(progId) ?? '' });
        }
      }
      return out;
    });
  } catch (err) {
    throw new MembraneError(`list tc attachments${netns ? ` in netns ${netns}` : ''}`, { cause: err });
  }
}
