// Two node namespaces joined by an underlay veth (eth0 on each side), each
// initialised with `membrane datapath init` and the other as a static peer.
import type { TestContext } from 'node:test';
import { execFileSync } from 'node:child_process';
import { makeNetns } from './netns.ts';
import { membraneOk, testNode, writeConfig } from './membrane.ts';

export interface TestNode {
  ns: string;
  nodeName: string;
  pinDir: string;
  nodeIP: string;
  routerIP: string;
  podCIDR: string;
}

export function twoNodes(t: TestContext, opts: { deviceMTU?: number; extraInit?: string[] } = {}): [TestNode, TestNode] {
  const spec = [
    { nodeIP: '10.13.1.5', routerIP: '10.244.1.1', podCIDR: '10.244.1.0/24' },
    { nodeIP: '10.13.1.6', routerIP: '10.244.2.1', podCIDR: '10.244.2.0/24' },
  ];
  const nodes = spec.map((s, i) => ({ ...s, ns: makeNetns(t, `n${i}`), ...testNode(t, `n${i}`) }));
  execFileSync('ip', ['-n', nodes[0].ns, 'link', 'add', 'eth0', 'mtu', String(opts.deviceMTU ?? 1500), 'type', 'veth', 'peer', 'name', 'eth0', 'netns', nodes[1].ns]);
  execFileSync('ip', ['-n', nodes[1].ns, 'link', 'set', 'eth0', 'mtu', String(opts.deviceMTU ?? 1500)]);
  for (const n of nodes) {
    execFileSync('ip', ['-n', n.ns, 'addr', 'add', `${n.nodeIP}/24`, 'dev', 'eth0']);
    execFileSync('ip', ['-n', n.ns, 'link', 'set', 'eth0', 'up']);
  }
  nodes.forEach((n, i) => {
    const peer = nodes[1 - i];
    const cfg = writeConfig(t, {
      nodeName: n.nodeName, routerIP: n.routerIP, podCIDR: n.podCIDR, nodeIP: n.nodeIP, deviceMTU: opts.deviceMTU ?? 1500,
      remoteNodes: [{ podCIDR: peer.podCIDR, nodeIP: peer.nodeIP, routerIP: peer.routerIP }],
    });
    membraneOk(n.ns, ['datapath', 'init', '--config', cfg, ...(opts.extraInit ?? [])]);
  });
  return nodes as [TestNode, TestNode];
}
