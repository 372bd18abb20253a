// tcx attachment (Linux >= 6.6): a BPF link on a device's ingress/egress
// hook, pinned in bpffs so it survives the agent. Mirrors cilium's
// pkg/datapath/loader/tcx.go: an existing pin is updated in place (atomic
// program swap, same link id, no packet sees "no program"); a defunct link
// (its device was deleted) is unpinned and a new one created.
import { KernelError, MembraneError, UnsupportedFeatureError } from '../../shared/errors.ts';
import { withNetns } from '../../shared/netns.ts';
import { haveTcx } from '../features.ts';
import { linkInfoByFd } from '../info.ts';
import { bpf, closeFd } from '../native/libbpf.ts';
import { ATTACH_TCX_EGRESS, ATTACH_TCX_INGRESS, LINK_TYPE_TCX } from '../native/structs.ts';
import { pinExists, pinFd, unpin } from '../pin.ts';

export type TcDirection = 'ingress' | 'egress';

export interface AttachTcxOptions {
  progFd: number;
  /** Device index in `netns` (or in the caller's netns when `netns` is omitted). */
  ifindex: number;
  direction: TcDirection;
  /** Pin of the link in bpffs, e.g. BPFFS/devices/cilium_host/links/cil_to_host. */
  pinPath: string;
  /** Name under /run/netns or a path; the ifindex is resolved there. */
  netns?: string;
}

const EINVAL = 22;
const ENOENT = 2;
const ENOLINK = 67;
const EOPNOTSUPP = 95;
const ENOTSUPP = 524;

export function tcxAttachType(direction: TcDirection): number {
  return direction === 'ingress' ? ATTACH_TCX_INGRESS : ATTACH_TCX_EGRESS;
}

/**
 * Attaches `progFd` to the device's tcx hook through the link pinned at
 * `pinPath`: updates the pinned link in place if there is one (updated:
 * true, same linkId), otherwise creates a link (appended after existing tcx
 * programs) and pins it. The pin owns the link: the program stays attached
 * after the process exits until detachTcx() or the device goes away. The
 * caller keeps owning `progFd`.
 * Throws UnsupportedFeatureError (E_NOT_SUPPORTED) on kernels without tcx,
 * MembraneError E_BPF_PIN_MISMATCH if the pin holds something else or a link
 * on another hook, KernelError otherwise.
 */
export function attachTcx(o: AttachTcxOptions): { linkId: number; updated: boolean } {
  const attachType = tcxAttachType(o.direction);
  const what = `attach tcx ${o.direction} program to ifindex ${o.ifindex}${o.netns ? ` in netns ${o.netns}` : ''}`;
  return withNetns(o.netns, () => {
    if (pinExists(o.pinPath)) {
      const updated = updatePinnedLink(o, attachType, what);
      if (updated !== undefined) return { linkId: updated, updated: true };
    }
    return pinNewLink(bpf.link_create(o.progFd, o.ifindex, attachType, null), o.pinPath, what);
  });
}

/** Checks bpf_link_create's result and pins the new link; the pin then owns it. */
function pinNewLink(link: number, pinPath: string, what: string): { linkId: number; updated: false } {
  if (link < 0) {
    const err = new KernelError(`${what}: bpf_link_create`, link);
    if ((link === -EINVAL || link === -EOPNOTSUPP || link === -ENOTSUPP) && !haveTcx()) {
      throw new UnsupportedFeatureError('tcx link', '6.6', err);
    }
    throw err;
  }
  try {
    const linkId = linkInfoByFd(link).id;
    pinFd(link, pinPath, 'tcx link');
    return { linkId, updated: false };
  } finally {
    // Without a pin, closing the last fd detaches: a failed pin leaves nothing behind.
    closeFd(link);
  }
}

/**
 * attachTcx for the calling process's own netns, with the kernel's part run
 * on a worker thread. Creating (and detaching) a tcx link waits for an RCU
 * grace period in bpf_mprog_commit: 5-30 ms on a small VM, during which the
 * event loop stays free. Updating an existing link in place does not wait.
 * Same ownership and errors as attachTcx.
 */
export async function attachTcxAsync(o: Omit<AttachTcxOptions, 'netns'>): Promise<{ linkId: number; updated: boolean }> {
  const attachType = tcxAttachType(o.direction);
  const what = `attach tcx ${o.direction} program to ifindex ${o.ifindex}`;
  if (pinExists(o.pinPath)) {
    const updated = updatePinnedLink(o, attachType, what);
    if (updated !== undefined) return { linkId: updated, updated: true };
  }
  const link = await new Promise<number>((resolve, reject) => {
    // Worker threads share the process's netns: that is where ifindex is resolved.
    bpf.link_create_async.async(o.progFd, o.ifindex, attachType, null, (err, rc) => (err ? reject(err) : resolve(rc)));
  });
  return pinNewLink(link, o.pinPath, what);
}

/** Returns the link id after an in-place update, or undefined if the pinned link was defunct and has been unpinned. */
function updatePinnedLink(o: AttachTcxOptions, attachType: number, what: string): number | undefined {
  const fd = bpf.obj_get(o.pinPath);
  if (fd === -ENOENT) return undefined; // removed meanwhile
  if (fd < 0) throw new KernelError(`${what}: open pinned link ${o.pinPath}`, fd);
  try {
    let info;
    try {
      info = linkInfoByFd(fd);
    } catch {
      throw new MembraneError(`${what}: pin ${o.pinPath}`, { code: 'E_BPF_PIN_MISMATCH', cause: 'pinned object is not a link', hint: `remove ${o.pinPath}` });
    }
    if (info.type !== LINK_TYPE_TCX) {
      throw new MembraneError(`${what}: pin ${o.pinPath}`, { code: 'E_BPF_PIN_MISMATCH', cause: `pinned link is of type ${info.type}, not tcx` });
    }
    const defunct = info.tcxIfindex === 0;
    if (!defunct && (info.tcxIfindex !== o.ifindex || info.tcxAttachType !== attachType)) {
      throw new MembraneError(`${what}: pin ${o.pinPath}`, {
        code: 'E_BPF_PIN_MISMATCH',
        cause: `pinned link is on ifindex ${info.tcxIfindex} ${info.tcxAttachType === ATTACH_TCX_INGRESS ? 'ingress' : 'egress'}`,
        hint: `detach it first (detachTcx ${o.pinPath})`,
      });
    }
    if (!defunct) {
      const rc = bpf.link_update(fd, o.progFd, null);
      if (rc === 0) return info.id;
      if (rc !== -ENOLINK) throw new KernelError(`${what}: update pinned link ${o.pinPath}`, rc);
    }
    // The device this link was on is gone (re-created devices get new links).
    unpin(o.pinPath);
    return undefined;
  } finally {
    closeFd(fd);
  }
}

/**
 * Detaches the tcx link pinned at `pinPath` and removes the pin. Returns
 * false if nothing was pinned there. A defunct link (device gone) is just
 * unpinned. Throws KernelError for other failures.
 */
export function detachTcx(pinPath: string): boolean {
  const fd = bpf.obj_get(pinPath);
  if (fd === -ENOENT) return false;
  if (fd < 0) throw new KernelError(`detach tcx link ${pinPath}: open pin`, fd);
  try {
    const rc = bpf.link_detach(fd);
    if (rc < 0 && rc !== -ENOLINK) throw new KernelError(`detach tcx link ${pinPath}`, rc);
  } finally {
    closeFd(fd);
  }
  unpin(pinPath);
  return true;
}

/** Link id and program id of the tcx link pinned at `pinPath`, if any (ifindex 0 = defunct). */
export function pinnedTcxLink(pinPath: string): { linkId: number; progId: number; ifindex: number; direction: TcDirection } | undefined {
  const fd = bpf.obj_get(pinPath);
  if (fd < 0) return undefined;
  try {
    const info = linkInfoByFd(fd);
    if (info.type !== LINK_TYPE_TCX) return undefined;
    return { linkId: info.id, progId: info.progId, ifindex: info.tcxIfindex, direction: info.tcxAttachType === ATTACH_TCX_INGRESS ? 'ingress' : 'egress' };
  } finally {
    closeFd(fd);
  }
}
