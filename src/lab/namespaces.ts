// Named network namespaces (as `ip netns` makes them: a bind mount under
// /run/netns) and the lab's underlay: one bridge in <lab>-underlay, and per
// node a veth whose node end is eth0 in the node's netns. Devices are
// created directly inside the lab's namespaces (the veth peer is born in the
// node netns), so nothing ever appears in the root netns, and no namespace
// gets a route out of the machine.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { addrAdd, linkAddBridge, linkAddVeth, linkGet, linkSetMaster, linkSetUp, NetlinkHandle } from '../netlink/index.ts';
import { MembraneError, wrap } from '../shared/errors.ts';
import { EXTERNAL_HOST_PORT, UNDERLAY_BRIDGE, UNDERLAY_GATEWAY, UNDERLAY_PREFIX_LEN, underlayPort } from './layout.ts';

const NETNS_DIR = '/run/netns';

export function netnsExists(name: string): boolean {
  return existsSync(`${NETNS_DIR}/${name}`);
}

export function listNetns(): string[] {
  try {
    return readdirSync(NETNS_DIR);
  } catch {
    return [];
  }
}

/** `ip netns add NAME` and loopback up. Throws E_LAB_EXISTS if the name is taken. */
export function createNetns(name: string): void {
  if (netnsExists(name)) throw new MembraneError(`create netns ${name}`, { code: 'E_LAB_EXISTS', cause: 'it already exists', hint: 'a lab of this name is left over: membrane lab down --name LAB' });
  try {
    execFileSync('ip', ['netns', 'add', name], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    throw wrap(`create netns ${name}`, stderrOf(e), 'E_LAB');
  }
  withHandle(name, (h) => linkSetUp(h, 1));
}

/** `ip netns del NAME`; true if it existed. Its devices (and their veth peers elsewhere) go with it. */
export function deleteNetns(name: string): boolean {
  if (!netnsExists(name)) return false;
  try {
    execFileSync('ip', ['netns', 'del', name], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    throw wrap(`delete netns ${name}`, stderrOf(e), 'E_LAB');
  }
  return true;
}

function stderrOf(e: unknown): Error {
  const s = (e as { stderr?: Buffer }).stderr?.toString().trim();
  return new Error(s || (e as Error).message);
}

export function withHandle<T>(netns: string, fn: (h: NetlinkHandle) => T): T {
  const h = NetlinkHandle.open(netns);
  try {
    return fn(h);
  } finally {
    h.close();
  }
}

/** The underlay's bridge, up, with the gateway address (where the lab's etcd listens). */
export function setupUnderlay(netns: string, mtu: number): void {
  withHandle(netns, (h) => {
    linkAddBridge(h, { name: UNDERLAY_BRIDGE, mtu });
    const br = linkGet(h, UNDERLAY_BRIDGE)!;
    addrAdd(h, { index: br.index, address: UNDERLAY_GATEWAY, prefixLen: UNDERLAY_PREFIX_LEN });
    linkSetUp(h, br.index);
  });
}

/** Joins node `i` (netns `nodeNs`) to the underlay: eth0 with `nodeIP/24` in the node, port n<i> on the bridge. */
export function attachNodeToUnderlay(underlayNs: string, nodeNs: string, i: number, nodeIP: string, mtu: number): void {
  const port = underlayPort(i);
  withHandle(underlayNs, (h) => {
    linkAddVeth(h, { name: port, peerName: 'eth0', peerNetns: nodeNs, mtu });
    const p = linkGet(h, port)!;
    linkSetMaster(h, p.index, linkGet(h, UNDERLAY_BRIDGE)!.index);
    linkSetUp(h, p.index);
  });
  withHandle(nodeNs, (h) => {
    const eth0 = linkGet(h, 'eth0')!;
    addrAdd(h, { index: eth0.index, address: nodeIP, prefixLen: UNDERLAY_PREFIX_LEN });
    linkSetUp(h, eth0.index);
  });
}

/**
 * The external host (netns `extNs`) on the underlay: eth0 with `ip/24`, port
 * ext on the bridge, and no other route: it can answer the nodes' IPs but
 * not a pod's, so pod traffic reaches it with replies only when masqueraded.
 */
export function attachExternalHost(underlayNs: string, extNs: string, ip: string, mtu: number): void {
  withHandle(underlayNs, (h) => {
    linkAddVeth(h, { name: EXTERNAL_HOST_PORT, peerName: 'eth0', peerNetns: extNs, mtu });
    const p = linkGet(h, EXTERNAL_HOST_PORT)!;
    linkSetMaster(h, p.index, linkGet(h, UNDERLAY_BRIDGE)!.index);
    linkSetUp(h, p.index);
  });
  withHandle(extNs, (h) => {
    const eth0 = linkGet(h, 'eth0')!;
    addrAdd(h, { index: eth0.index, address: ip, prefixLen: UNDERLAY_PREFIX_LEN });
    linkSetUp(h, eth0.index);
  });
}
