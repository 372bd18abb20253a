// The policy and conntrack datapath from TypeScript, on a real node: a node
// netns set up by `membrane datapath init` (no agent), pods made by the
// datapath's endpoint functions in their own netns, real pings between them. Covers the policy map's
// lifecycle with its endpoint (made and installed before the program and the
// cilium_lxc entry, removed on delete and by rollback, made by restore for
// an endpoint that has none, swept), policy changes without a gap under
// traffic, the host firewall on and off, and conntrack GC deleting only
// expired entries. Then two nodes joined by an underlay veth, with and
// without endpoint routes: the receiving node enforces the pod's ingress
// policy against the VNI's identity (with endpoint routes in
// cil_to_container, which the overlay's redirect passes through), and
// replies of an allowed connection pass a denied direction.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { test, type TestContext } from 'node:test';
import { BpfMap, pinExists, unpin } from '../../src/bpf/index.ts';
import { gcConntrack, listConntrack } from '../../src/datapath/conntrack.ts';
import { createEndpointDatapath, deleteEndpointDatapath, type CreateEndpointOptions, type EndpointSpec } from '../../src/datapath/endpoint.ts';
import { checkEndpoint, restoreEndpoint, sweepEndpoints, type EndpointRecord } from '../../src/datapath/endpoint-restore.ts';
import * as ct from '../../src/datapath/maps/conntrack.ts';
import { ALLOW_ALL, allowAll, type PolicyMapEntry } from '../../src/datapath/maps/policy.ts';
import { listMetrics, withNodeMap } from '../../src/datapath/node-maps.ts';
import { globalsDir } from '../../src/datapath/paths.ts';
import {
  deleteEndpointPolicyMap, endpointPolicyMapInstalled, listEndpointPolicy, listHostPolicy, policyMapPin, setHostPolicy, syncEndpointPolicy,
} from '../../src/datapath/policy-maps.ts';
import { reconcileRemotes, type RemoteNodeEntry, type RemotePodEntry } from '../../src/datapath/remote-nodes.ts';
import { Rollback } from '../../src/datapath/rollback.ts';
import { linkGet, NetlinkHandle } from '../../src/netlink/index.ts';
import { validateNodeConfig, type NodeConfig } from '../../src/shared/config.ts';
import { withNetns } from '../../src/shared/netns.ts';
import { buildOnce, membraneOk, testNode, writeConfig } from '../helpers/membrane.ts';
import { makeNetns, tempDir, uniqueName } from '../helpers/netns.ts';
import { ping } from '../helpers/pods.ts';
import { rootOnly } from '../helpers/skip.ts';

const skip = rootOnly('requires root (netns, bpf)');

const ROUTER = '10.244.77.1';
const ICMP = 1;
const TCP = 6;
const allow = (identity: number, egress: boolean, protocol = 0): PolicyMapEntry => ({ identity, egress, protocol, port: 0, portPrefixLen: 0, deny: false });

/**
 * A node set up by `membrane datapath init` in its netns (as a user does), and
 * the datapath functions the agent's NodeDatapath wraps, called from here:
 * netlink through a handle opened in the node's netns, and whatever reads
 * /proc/sys/net or resolves an ifindex run in it (withNetns).
 */
interface Node {
  ns: string;
  cfg: NodeConfig;
  h: NetlinkHandle;
  dir: string;
  /** Runs fn in the node's netns. */
  in<T>(fn: () => T): T;
  /** `membrane datapath init` again, same config. */
  reinit(): void;
}

interface NodeSpec {
  routerIP: string;
  podCIDR: string;
  nodeIP: string;
  ns?: string;
  enableEndpointRoutes?: boolean;
  remoteNodes?: RemoteNodeEntry[];
}

/** `membrane datapath init` (again) in the node's netns. */
function init(t: TestContext, ns: string, raw: Record<string, unknown>): void {
  membraneOk(ns, ['datapath', 'init', '--config', writeConfig(t, raw)]);
}

function node(t: TestContext, spec: NodeSpec = { routerIP: ROUTER, podCIDR: '10.244.77.0/24', nodeIP: '192.168.77.1' }): Node {
  buildOnce();
  const ns = spec.ns ?? makeNetns(t, 'pn');
  const { nodeName } = testNode(t, 'pol');
  const raw = {
    nodeName, routerIP: spec.routerIP, podCIDR: spec.podCIDR, nodeIP: spec.nodeIP, enableEndpointRoutes: spec.enableEndpointRoutes ?? false,
    remoteNodes: spec.remoteNodes ?? [], stateDir: tempDir(t, `/tmp/${uniqueName('st')}`),
  };
  init(t, ns, raw);
  const cfg = validateNodeConfig(raw);
  const h = NetlinkHandle.open(`/run/netns/${ns}`);
  t.after(() => h.close());
  const inNs = <T>(fn: () => T): T => withNetns(ns, fn as () => never) as T;
  return { ns, cfg, h, dir: cfg.paths.pinDir, in: inNs, reinit: () => init(t, ns, raw) };
}

interface Pod extends EndpointRecord {
  podNs: string;
}

function pod(t: TestContext, n: Node, id: number, identity: number, opts: CreateEndpointOptions = {}): Pod {
  const podNs = makeNetns(t, 'pp');
  const prefix = n.cfg.podCIDR.split('.').slice(0, 3).join('.');
  const spec: EndpointSpec = { id, containerID: `policy-test-${uniqueName('c')}`, ifname: 'eth0', netns: `/run/netns/${podNs}`, ip: `${prefix}.${id}`, identity };
  const made = n.in(() => Rollback.guard((rb) => createEndpointDatapath(n.cfg, n.h, spec, rb, undefined, opts)));
  made.upgrade?.cancel(); // stays on its legacy tc filter: enough here
  const { upgrade: _u, ...devices } = made;
  return { ...spec, ...devices, podNs };
}

const deletePod = (n: Node, p: Pod) => n.in(() => deleteEndpointDatapath(n.cfg, n.h, p));
const restorePod = (n: Node, p: Pod, reload = false) => n.in(() => restoreEndpoint(n.cfg, p, reload));

/** The cluster sync's part: routes and ipcache entries for the other nodes and their pods. */
function remotes(n: Node, nodes: RemoteNodeEntry[], pods: RemotePodEntry[]): void {
  const host = linkGet(n.h, 'cilium_host');
  assert.ok(host);
  n.in(() => Rollback.guard((rb) => reconcileRemotes(n.h, host.index, n.cfg, nodes, pods, rb)));
}

/** The ids of the maps in cilium_policy_maps slot `id` and at the endpoint's pin. */
function slotAndPin(n: Node, id: number): { slot?: number; pin?: number } {
  const key = Buffer.alloc(4);
  key.writeUInt32LE(id);
  const slot = withNodeMap(n.dir, 'cilium_policy_maps', (m) => m.innerMapId(key));
  const path = policyMapPin(n.dir, id);
  let pin: number | undefined;
  if (pinExists(path)) {
    const m = BpfMap.openPinned(path);
    pin = m.id;
    m.close();
  }
  return { slot, pin };
}

const drops = (n: Node, reason: number) => listMetrics(n.dir).filter((r) => r.reason === reason).reduce((s, r) => s + r.packets, 0);

test('policy datapath on a real node', { skip }, async (t) => {
  const n = node(t);
  const a = pod(t, n, 10, 1000);
  const b = pod(t, n, 11, 1001);

  await t.test('a new endpoint has its policy map pinned and in its slot, allowing everything both ways', () => {
    for (const p of [a, b]) {
      const s = slotAndPin(n, p.id);
      assert.ok(s.pin, `endpoint ${p.id}: pinned`);
      assert.equal(s.slot, s.pin, `endpoint ${p.id}: slot ${p.id} holds the pinned map`);
      assert.deepEqual(listEndpointPolicy(n.dir, p.id), [...ALLOW_ALL]);
    }
    assert.deepEqual(ping(a.podNs, b.ip, { count: 2, interval: 0.05 }), { transmitted: 2, received: 2 });
  });

  await t.test('the policy map is made and installed before the program is loaded and the cilium_lxc entry written', () => {
    // Each step registers its undo right after it succeeded: the order of the registrations is the order of the steps.
    class Recorder extends Rollback {
      readonly names: string[] = [];
      override push(what: string, undo: () => void): void {
        this.names.push(what);
        super.push(what, undo);
      }
    }
    const podNs = makeNetns(t, 'pp');
    const spec: EndpointSpec = { id: 20, containerID: `policy-test-${uniqueName('c')}`, ifname: 'eth0', netns: `/run/netns/${podNs}`, ip: '10.244.77.20', identity: 1000 };
    const rb = new Recorder();
    const h = n.in(() => NetlinkHandle.open());
    try {
      const made = n.in(() => createEndpointDatapath(n.cfg, h, spec, rb));
      made.upgrade?.cancel();
      const at = (prefix: string) => {
        const i = rb.names.findIndex((s) => s.startsWith(prefix));
        assert.ok(i >= 0, `step "${prefix}" in ${rb.names.join(' | ')}`);
        return i;
      };
      assert.ok(at('policy map of endpoint 20') < at('calls map'), 'policy map before the program');
      assert.ok(at('policy map of endpoint 20') < at('cilium_lxc 10.244.77.20'), 'policy map before cilium_lxc');
      assert.equal(slotAndPin(n, 20).slot, slotAndPin(n, 20).pin);

      // A failure later in an ADD undoes it all, the policy map included.
      n.in(() => rb.run());
      assert.deepEqual(rb.undoErrors, []);
      assert.deepEqual(slotAndPin(n, 20), { slot: undefined, pin: undefined });
    } finally {
      h.close();
    }
  });

  await t.test('an endpoint created with a policy starts with it', () => {
    const c = pod(t, n, 12, 1002, { policy: [allowAll(true), allow(1000, false, ICMP)] });
    assert.deepEqual(listEndpointPolicy(n.dir, c.id).map((e) => `${e.egress ? 'out' : 'in'} ${e.identity} ${e.protocol}`), ['in 1000 1', 'out 0 0']);
    assert.equal(ping(a.podNs, c.ip).received, 1, 'identity 1000 may ping it');
    assert.equal(ping(b.podNs, c.ip).received, 0, 'identity 1001 may not');
    deletePod(n, c);
  });

  await t.test('enforced end to end: a denied ping is dropped and counted as "Policy denied"', () => {
    const before = drops(n, 133);
    const r = syncEndpointPolicy(n.dir, b.id, [allowAll(true), allow(4242, false)]);
    assert.deepEqual(r, { written: 1, deleted: 1, unchanged: 1 });
    assert.equal(ping(a.podNs, b.ip, { count: 2, interval: 0.05 }).received, 0);
    assert.ok(drops(n, 133) >= before + 2, 'two more policy drops');
    syncEndpointPolicy(n.dir, b.id, ALLOW_ALL);
    assert.equal(ping(a.podNs, b.ip).received, 1);
  });

  await t.test('policy changes reach established traffic without a gap: new and changed entries first, stale ones after', async () => {
    // Two policies that both allow A's ping through different entries: deleting first would open a window with neither.
    const p1 = [allowAll(true), allow(1000, false, ICMP), allow(999, false, TCP)];
    const p2 = [allowAll(true), allow(1000, false)];
    syncEndpointPolicy(n.dir, b.id, p1);
    const count = 1500;
    const child = spawn('ip', ['netns', 'exec', a.podNs, 'ping', '-n', '-q', '-i', '0.002', '-c', String(count), '-W', '1', b.ip], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c) => { out += c; });
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    await new Promise((r) => setTimeout(r, 300));
    let changes = 0;
    const until = Date.now() + 2000;
    while (Date.now() < until) {
      const r = syncEndpointPolicy(n.dir, b.id, changes % 2 ? p1 : p2);
      assert.ok(r.written >= 1 && r.deleted >= 1, 'each change writes and deletes');
      changes++;
    }
    await exited;
    const m = /(\d+) packets transmitted, (\d+) received/.exec(out);
    assert.ok(m, `ping summary: ${out}`);
    assert.equal(Number(m[2]), Number(m[1]), `every ping answered across ${changes} policy changes (${out.trim().split('\n').pop()})`);
    assert.ok(changes > 50, `${changes} changes`);
    syncEndpointPolicy(n.dir, b.id, ALLOW_ALL);
  });

  await t.test('deleting an endpoint empties its slot and removes its pin', () => {
    const c = pod(t, n, 13, 1003);
    assert.ok(slotAndPin(n, 13).pin);
    deletePod(n, c);
    assert.deepEqual(slotAndPin(n, 13), { slot: undefined, pin: undefined });
    assert.throws(() => listEndpointPolicy(n.dir, 13), { code: 'E_POLICY_MAP' });
    assert.throws(() => syncEndpointPolicy(n.dir, 13, ALLOW_ALL), { code: 'E_POLICY_MAP' });
  });

  await t.test('restore makes a policy map for an endpoint that has none (an older agent\'s), keeps an existing one', () => {
    syncEndpointPolicy(n.dir, a.id, [allowAll(true), allow(1001, false)]);
    restorePod(n, a); // reloads its program: these pods never moved to tcx
    assert.deepEqual(listEndpointPolicy(n.dir, a.id).map((e) => e.identity), [1001, 0], 'existing entries kept');

    deleteEndpointPolicyMap(n.dir, b.id);
    assert.equal(ping(a.podNs, b.ip).received, 0, 'an endpoint without a policy map is not reached');
    assert.throws(() => n.in(() => checkEndpoint(n.cfg, n.h, b, 'check')), /policy map is not installed/);
    restorePod(n, b);
    assert.ok(endpointPolicyMapInstalled(n.dir, b.id));
    assert.deepEqual(listEndpointPolicy(n.dir, b.id), [...ALLOW_ALL]);
    n.in(() => checkEndpoint(n.cfg, n.h, b, 'check'));
    assert.equal(ping(a.podNs, b.ip).received, 1);
    syncEndpointPolicy(n.dir, a.id, ALLOW_ALL);
  });

  await t.test('the host firewall: off by default, on with a host policy, off again', () => {
    assert.equal(listHostPolicy(n.dir), undefined);
    assert.equal(ping(a.podNs, ROUTER).received, 1, 'off: the router IP answers');
    const on = setHostPolicy(n.dir, [allowAll(true), allow(1001, false, ICMP)]);
    assert.deepEqual(on, { enabled: true, written: 2, deleted: 0, unchanged: 0 });
    assert.equal(slotAndPin(n, 1).slot, slotAndPin(n, 1).pin);
    assert.equal(ping(a.podNs, ROUTER).received, 0, 'on: identity 1000 is not allowed in');
    assert.equal(ping(b.podNs, ROUTER).received, 1, 'on: identity 1001 is');
    assert.deepEqual(setHostPolicy(n.dir, [allowAll(true), allow(1000, false, ICMP)]), { enabled: true, written: 1, deleted: 1, unchanged: 1 });
    assert.equal(ping(a.podNs, ROUTER).received, 1, 'changed in place');
    assert.equal(setHostPolicy(n.dir, undefined).enabled, false);
    assert.deepEqual(slotAndPin(n, 1), { slot: undefined, pin: undefined });
    assert.equal(ping(b.podNs, ROUTER).received, 1, 'off again');
  });

  await t.test('conntrack: the pings left entries; GC deletes only the expired ones', () => {
    const rows = listConntrack(n.dir);
    assert.ok(rows.some((r) => r.proto === ICMP && r.saddr === a.ip && r.daddr === b.ip && r.dir === 'out' && r.srcSecId === 1000), 'A -> B made at A\'s egress');
    assert.ok(rows.some((r) => r.proto === ICMP && r.saddr === a.ip && r.daddr === b.ip && r.dir === 'in'), 'A -> B made at B\'s ingress');
    assert.ok(rows.some((r) => r.daddr === ROUTER && r.srcSecId === 1000), 'pod -> host tracked');
    assert.ok(rows.every((r) => r.expiresIn > 0 && r.expiresIn <= ct.CT_LIFETIME.nonTcp + 1));

    const now = ct.monotonicSeconds();
    const planted = (i: number, expiresIn: number) => ({ saddr: '10.9.0.1', daddr: '10.9.0.2', sport: 1000 + i, dport: 80, proto: TCP, dir: 'out' as const, expiresIn });
    const plant = [...Array.from({ length: 30 }, (_, i) => planted(i, -1 - i)), ...Array.from({ length: 20 }, (_, i) => planted(100 + i, 5 + i)), planted(200, 0)];
    withNodeMap(n.dir, ct.CT_TCP_MAP_NAME, (m) => {
      for (const p of plant) m.update(ct.encodeKey(p), ct.encodeValue({ lifetime: now + p.expiresIn, created: now - 100 }));
    });
    const before = listConntrack(n.dir, now);
    const r = gcConntrack(n.dir, now);
    assert.equal(r.deleted, 31, 'the 30 expired and the one expiring now');
    assert.equal(r.scanned, before.length);
    assert.equal(r.alive, before.length - 31);
    assert.ok(r.durationMs >= 0 && r.durationMs < 1000, `${r.durationMs} ms`);
    const after = listConntrack(n.dir, now);
    assert.equal(after.length, before.length - 31);
    assert.ok(after.every((e) => e.expiresIn > 0), 'nothing expired is left');
    assert.equal(after.filter((e) => e.saddr === '10.9.0.1').length, 20, 'the live planted entries stay');
    assert.equal(gcConntrack(n.dir, now).deleted, 0, 'a second run finds nothing');
  });

  await t.test('sweep removes the policy maps of endpoints nobody recorded, never the host\'s', () => {
    setHostPolicy(n.dir, [allowAll(true), allowAll(false)]);
    const c = pod(t, n, 14, 1004);
    const removed = n.in(() => sweepEndpoints(n.cfg, n.h, [a, b]));
    assert.ok(removed >= 2, `${removed} removed`);
    assert.deepEqual(slotAndPin(n, c.id), { slot: undefined, pin: undefined });
    assert.ok(slotAndPin(n, 1).pin, 'the host policy stays');
    assert.ok(endpointPolicyMapInstalled(n.dir, a.id) && endpointPolicyMapInstalled(n.dir, b.id));
    setHostPolicy(n.dir, undefined);
  });
});

for (const endpointRoutes of [false, true]) {
  test(`across two nodes${endpointRoutes ? ', endpoint routes on' : ''}: ingress policy on the receiving node, against the VNI's identity`, { skip }, async (t) => {
    const ns = [makeNetns(t, 'pn'), makeNetns(t, 'pn')];
    const specs = [
      { nodeIP: '10.13.78.5', routerIP: '10.244.78.1', podCIDR: '10.244.78.0/24' },
      { nodeIP: '10.13.78.6', routerIP: '10.244.79.1', podCIDR: '10.244.79.0/24' },
    ];
    execFileSync('ip', ['-n', ns[0], 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns[1]]);
    ns.forEach((x, i) => {
      execFileSync('ip', ['-n', x, 'addr', 'add', `${specs[i].nodeIP}/24`, 'dev', 'eth0']);
      execFileSync('ip', ['-n', x, 'link', 'set', 'eth0', 'up']);
    });
    const [n1, n2] = specs.map((s, i) => node(t, { ...s, ns: ns[i], enableEndpointRoutes: endpointRoutes, remoteNodes: [specs[1 - i]] }));
    const a = pod(t, n1, 10, 2000);
    const b = pod(t, n2, 10, 2001);
    // The cluster sync's part: each node learns the other's pod and its identity.
    remotes(n1, [specs[1]], [{ ip: b.ip, identity: b.identity, hostIP: specs[1].nodeIP }]);
    remotes(n2, [specs[0]], [{ ip: a.ip, identity: a.identity, hostIP: specs[0].nodeIP }]);
    assert.equal(ping(a.podNs, b.ip, { count: 2, interval: 0.05 }).received, 2, 'allow-all both sides');

    syncEndpointPolicy(n2.dir, b.id, [allowAll(true), allow(4242, false)]);
    const before = drops(n2, 133);
    assert.equal(ping(a.podNs, b.ip, { count: 2, interval: 0.05 }).received, 0, "B's ingress does not allow A's identity");
    assert.ok(drops(n2, 133) >= before + 2, 'dropped on the receiving node as "Policy denied"');

    syncEndpointPolicy(n2.dir, b.id, [allowAll(true), allow(a.identity, false, ICMP)]);
    assert.equal(ping(a.podNs, b.ip).received, 1, "B's ingress allows A's identity (from the VNI)");

    // Replies of an allowed connection pass directions that deny everything: B's egress, A's ingress.
    syncEndpointPolicy(n2.dir, b.id, [allow(a.identity, false, ICMP)]);
    syncEndpointPolicy(n1.dir, a.id, [allowAll(true)]);
    assert.equal(ping(a.podNs, b.ip, { count: 2, interval: 0.05 }).received, 2, 'replies pass as conntrack replies');
    assert.equal(ping(b.podNs, a.ip).received, 0, 'but B may not open anything itself');
  });
}

test('an upgrade from an agent without policy: init makes the known pods\' policy maps before it attaches the new programs', { skip }, (t) => {
  const n = node(t, { routerIP: '10.244.80.1', podCIDR: '10.244.80.0/24', nodeIP: '192.168.80.1' });
  const a = pod(t, n, 10, 3000);
  // What an older agent leaves: no policy maps, no array, no revisions (its programs use none).
  deleteEndpointPolicyMap(n.dir, a.id);
  for (const m of ['cilium_policy_maps', 'cilium_policy_rev']) assert.ok(unpin(`${globalsDir(n.dir)}/${m}`), m);

  n.reinit();
  const s = slotAndPin(n, a.id);
  assert.ok(s.pin && s.slot === s.pin, 'the pod\'s map is pinned and installed in the new array');
  assert.deepEqual(listEndpointPolicy(n.dir, a.id), [...ALLOW_ALL]);
  // The new bpf_host uses that array: the host's echo request reaches the pod before the agent
  // restored it, no drop 203. (The reply goes through the pod's own program, which here, unlike after
  // a real upgrade, still holds the array this test unpinned: only the request is counted.)
  const inEchos = () => {
    const [names, values] = execFileSync('ip', ['netns', 'exec', a.podNs, 'cat', '/proc/net/snmp'], { encoding: 'utf8' })
      .split('\n').filter((l) => l.startsWith('Icmp:')).map((l) => l.split(/\s+/));
    return Number(values[names.indexOf('InEchos')]);
  };
  const before = inEchos();
  ping(n.ns, a.ip);
  assert.equal(inEchos(), before + 1, 'host -> pod through the new cil_from_host: the pod received the echo request');
  // Restore then reloads the pod's own program (another object): it finds the same map.
  restorePod(n, a, true);
  assert.equal(ping(n.ns, a.ip).received, 1, 'host <-> pod after restore');
  assert.equal(ping(a.podNs, '10.244.80.1').received, 1, 'pod -> router IP through the new bpf_lxc');
});
