// Which node (and which bpffs) a network namespace belongs to, kept by the
// kernel as the alias of cilium_host: it lives and dies with the netns, so
// `membrane datapath explain` and the bpf listings need no config file and
// nothing is left behind on disk when a node's netns is deleted.
import { linkGet, linkSet, NetlinkHandle } from '../netlink/index.ts';
import { MembraneError } from '../shared/errors.ts';
import { HOST_DEVICE } from './constants.ts';

export interface NodeMarker {
  nodeName: string;
  bpffsRoot: string;
  /** The agent's API socket, when an agent runs this node. */
  apiSocket?: string;
}

export function formatMarker(m: NodeMarker): string {
  return `membrane node=${m.nodeName} bpffs=${m.bpffsRoot}${m.apiSocket ? ` api=${m.apiSocket}` : ''}`;
}

export function parseMarker(alias: string | undefined): NodeMarker | undefined {
  const m = /^membrane node=(\S+) bpffs=(\S+)(?: api=(\S+))?$/.exec(alias ?? '');
  return m ? { nodeName: m[1], bpffsRoot: m[2], ...(m[3] ? { apiSocket: m[3] } : {}) } : undefined;
}

export function writeMarker(h: NetlinkHandle, hostIndex: number, m: NodeMarker): void {
  const want = formatMarker(m);
  if (linkGet(h, hostIndex)?.alias !== want) linkSet(h, hostIndex, { alias: want });
}

/** The node this netns was initialised as; throws E_NOT_INITIALIZED with a hint otherwise. */
export function readMarker(h: NetlinkHandle): NodeMarker {
  const host = linkGet(h, HOST_DEVICE);
  const m = parseMarker(host?.alias);
  if (!m) {
    throw new MembraneError('find this node', {
      code: 'E_NOT_INITIALIZED',
      cause: host ? `${HOST_DEVICE} carries no membrane node marker` : `no ${HOST_DEVICE} in this network namespace`,
      hint: 'run `membrane datapath init --config FILE` in the node\'s netns first (ip netns exec NODE membrane ...)',
    });
  }
  return m;
}

/** The node of this process's netns (readMarker on a handle of its own). */
export function currentNode(): NodeMarker {
  const h = NetlinkHandle.open();
  try {
    return readMarker(h);
  } finally {
    h.close();
  }
}

/** The pin directory of a node, from its marker (the same <bpffsRoot>/<nodeName> the node config derives). */
export function markerPinDir(m: NodeMarker): string {
  return `${m.bpffsRoot}/${m.nodeName}`;
}
