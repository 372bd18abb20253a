// Reserved security identities (Cilium's numbering) and the skb->mark identity
// stamp, mirroring bpf/lib/identity.h.

export const IDENTITY_UNKNOWN = 0;
export const IDENTITY_HOST = 1;
export const IDENTITY_WORLD = 2;
export const IDENTITY_UNMANAGED = 3;
export const IDENTITY_HEALTH = 4;
export const IDENTITY_INIT = 5;
export const IDENTITY_REMOTE_NODE = 6;
export const IDENTITY_KUBE_APISERVER = 7;
export const IDENTITY_INGRESS = 8;

/** First identity allocated from labels (cluster id 0). */
export const MIN_GLOBAL_IDENTITY = 256;
/** Last identity of cluster id 0; identities are 24 bits (16-bit local part + 8-bit cluster id). */
export const MAX_GLOBAL_IDENTITY = 0xffff;
export const IDENTITY_BITS = 24;

export const RESERVED_IDENTITIES: Readonly<Record<number, string>> = Object.freeze({
  [IDENTITY_UNKNOWN]: 'unknown',
  [IDENTITY_HOST]: 'host',
  [IDENTITY_WORLD]: 'world',
  [IDENTITY_UNMANAGED]: 'unmanaged',
  [IDENTITY_HEALTH]: 'health',
  [IDENTITY_INIT]: 'init',
  [IDENTITY_REMOTE_NODE]: 'remote-node',
  [IDENTITY_KUBE_APISERVER]: 'kube-apiserver',
  [IDENTITY_INGRESS]: 'ingress',
});

export function isReservedIdentity(id: number): boolean {
  return id in RESERVED_IDENTITIES;
}

/** "reserved:host" for reserved identities, the number as text otherwise. */
export function identityName(id: number): string {
  const name = RESERVED_IDENTITIES[id];
  return name !== undefined ? `reserved:${name}` : String(id);
}

export const MARK_MAGIC_MASK = 0x0f00;
export const MARK_MAGIC_HOST = 0x0c00;
export const MARK_MAGIC_IDENTITY = 0x0f00;

/** The skb->mark bpf_lxc stamps before handing a packet to the stack. */
export function identityToMark(id: number): number {
  return (MARK_MAGIC_IDENTITY | ((id & 0xffff) << 16) | ((id >>> 16) & 0xff)) >>> 0;
}

/** The identity a mark carries (HOST for MARK_MAGIC_HOST), or undefined. */
export function identityFromMark(mark: number): number | undefined {
  switch (mark & MARK_MAGIC_MASK) {
    case MARK_MAGIC_IDENTITY: return ((mark >>> 16) & 0xffff) | ((mark & 0xff) << 16);
    case MARK_MAGIC_HOST: return IDENTITY_HOST;
    default: return undefined;
  }
}
