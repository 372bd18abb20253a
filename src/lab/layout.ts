// Where a lab keeps everything, and how its pieces are named and addressed.
// One place decides this, so `lab up` creates, `lab down` sweeps and the
// connectivity test finds the same names, also after a crash of `lab up`.
//
//   /run/membrane/labs/<lab>/lab.json                 the record (see record.ts)
//   /run/membrane/labs/<lab>/cluster.db               sqlite store (default)
//   /run/membrane/labs/<lab>/etcd/                    etcd data dir (--store etcd)
//   /run/membrane/labs/<lab>/nodes/<node>/            config.yaml, agent.log, state/ (agent.sock)
//   /run/membrane/bpffs/labs/<lab>/<node>/            the node's pins (per-lab bpffsRoot)
//   netns <lab>-underlay, <lab>-node-<i>, <lab>-pod-<i>-<j>, <lab>-external
import { fileURLToPath } from 'node:url';
import { defaults } from '../shared/defaults.ts';
import { MembraneError } from '../shared/errors.ts';

export const LABS_ROOT = `${defaults.runDir}/labs`;
/** Labs pin below the default bpffs (mountBpffs mounts it), one directory each. */
export const LAB_PINS_ROOT = `${defaults.bpffsRoot}/labs`;

export const REPO = fileURLToPath(new URL('../../', import.meta.url));
export const MEMBRANE_BIN = `${REPO}bin/membrane`;
export const CNI_PLUGIN = `${REPO}cni/membrane-cni`;

/** Underlay: one bridge in the underlay netns; its address is where the lab's etcd listens. */
export const UNDERLAY_BRIDGE = 'br0';
export const UNDERLAY_PREFIX = '10.13.0';
export const UNDERLAY_GATEWAY = `${UNDERLAY_PREFIX}.1`;
export const UNDERLAY_PREFIX_LEN = 24;
/**
 * The external host: a netns on the underlay outside the cluster (no route to
 * any pod CIDR), the "world" pods reach only through masquerade.
 */
export const EXTERNAL_HOST_IP = `${UNDERLAY_PREFIX}.254`;
export const EXTERNAL_HOST_NAME = 'external';
/** Its port on the underlay bridge. */
export const EXTERNAL_HOST_PORT = 'ext';
export const ETCD_CLIENT_PORT = 2379;
export const ETCD_PEER_PORT = 2380;
/** Node indexes run 1..MAX_NODES (node IP 10.13.0.<10+i>, pod CIDR 10.244.<i>.0/24). */
export const MAX_NODES = 200;
export const MAX_PODS_PER_NODE = 100;

export const DEFAULT_LAB = 'lab';

/** Lab names: short DNS-label style, so every derived netns, path and socket stays short and unambiguous. */
export function checkLabName(name: string): string {
  if (!/^[a-z][a-z0-9-]{0,23}$/.test(name) || name.endsWith('-')) {
    throw new MembraneError(`lab name ${JSON.stringify(name)}`, {
      code: 'E_USAGE', cause: 'must be 1-24 characters: lowercase letters, digits and "-", starting with a letter, not ending in "-"',
    });
  }
  return name;
}

export const labDir = (lab: string): string => `${LABS_ROOT}/${lab}`;
export const labFile = (lab: string): string => `${labDir(lab)}/lab.json`;
export const labPinRoot = (lab: string): string => `${LAB_PINS_ROOT}/${lab}`;
export const nodeDirOf = (lab: string, node: string): string => `${labDir(lab)}/nodes/${node}`;

export const underlayNetns = (lab: string): string => `${lab}-underlay`;
export const nodeNetns = (lab: string, i: number): string => `${lab}-node-${i}`;
export const podNetns = (lab: string, i: number, j: number): string => `${lab}-pod-${i}-${j}`;
export const externalNetns = (lab: string): string => `${lab}-external`;

/** Every netns name a lab can have: what `lab down` sweeps when lab.json is missing or incomplete. */
export function isLabNetns(lab: string, ns: string): boolean {
  if (!ns.startsWith(`${lab}-`)) return false;
  return /^(underlay|external|node-\d+|pod-\d+-\d+)$/.test(ns.slice(lab.length + 1));
}

export const nodeName = (i: number): string => `node-${i}`;
export const podName = (i: number, j: number): string => `pod-${i}-${j}`;

export interface NodeAddressing {
  nodeIP: string;
  podCIDR: string;
  routerIP: string;
}

export function nodeAddressing(i: number): NodeAddressing {
  if (!Number.isInteger(i) || i < 1 || i > MAX_NODES) throw new MembraneError(`node index ${i}`, { code: 'E_USAGE', cause: `must be 1..${MAX_NODES}` });
  return { nodeIP: `${UNDERLAY_PREFIX}.${10 + i}`, podCIDR: `10.244.${i}.0/24`, routerIP: `10.244.${i}.1` };
}

/** The host end of node i's underlay veth, inside the underlay netns (never in the root netns). */
export const underlayPort = (i: number): string => `n${i}`;
