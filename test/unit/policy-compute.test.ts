// Policy map contents (src/policy/compute.ts, ports.ts, cidr.ts): exact and
// wildcard entries, port ranges as prefix blocks, deny precedence, entities,
// CIDR rules with except, default deny per direction, minimal entries. No
// root needed.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { securityLabels } from '../../src/agent/labels.ts';
import {
  PolicyEngine, ReservedIdentity as R, cidrIdentityLabels, cidrPrefixes, computePolicy, formatBlock, identityOfAddress, lookupEntries,
  parsePolicies, rangeToPrefixes, reservedUniverse, type Labels, type PolicyMapEntry, type Subject,
} from '../../src/policy/index.ts';

const WEB = 256;
const DB = 257;
const OTHER_NS = 258;
const CIDR_10 = (1 << 24) + 1;      // 10.0.0.0/8
const CIDR_10_96 = (1 << 24) + 2;   // 10.96.0.0/12
const CIDR_8_8 = (1 << 24) + 3;     // 8.8.8.8/32

function universe(): Map<number, Labels> {
  const u = reservedUniverse();
  u.set(WEB, securityLabels({ app: 'web' }, 'default'));
  u.set(DB, securityLabels({ app: 'db' }, 'default'));
  u.set(OTHER_NS, securityLabels({ app: 'web' }, 'other'));
  u.set(CIDR_10, cidrIdentityLabels('10.0.0.0/8'));
  u.set(CIDR_10_96, cidrIdentityLabels('10.96.0.0/12'));
  u.set(CIDR_8_8, cidrIdentityLabels('8.8.8.8/32'));
  return u;
}

const pod = (id: number): Subject => ({ kind: 'endpoint', labels: universe().get(id)! });

/** Entries of one direction as compact tuples: [identity, protocol, port, prefixLen, deny?]. */
function entries(text: string, subject: Subject = pod(WEB)) {
  const { policies } = parsePolicies(text);
  const r = computePolicy(policies, universe(), subject);
  const t = (e: PolicyMapEntry) => [e.identity, e.protocol, e.port, e.portPrefixLen, ...(e.deny ? ['deny'] : [])];
  return { ingress: r.ingress, egress: r.egress, in: r.entries.filter((e) => !e.egress).map(t), out: r.entries.filter((e) => e.egress).map(t) };
}

const web = (rule: string) => `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web}
spec:
  endpointSelector: {matchLabels: {app: web}}
${rule.replace(/^/gm, '  ')}
`;

describe('default deny per direction', () => {
  it('a subject no rule selects gets one allow-all entry per direction', () => {
    const r = entries(web('ingress: [{}]'), pod(DB));
    assert.deepEqual(r, { ingress: 'allow-all', egress: 'allow-all', in: [[0, 0, 0, 0]], out: [[0, 0, 0, 0]] });
  });

  it('selected in one direction: default deny there only', () => {
    const r = entries(web('ingress:\n- fromEndpoints: [{matchLabels: {app: db}}]'));
    assert.deepEqual(r, { ingress: 'enforced', egress: 'allow-all', in: [[DB, 0, 0, 0]], out: [[0, 0, 0, 0]] });
  });

  it('selected with no matching rule: no entries in that direction (everything drops)', () => {
    assert.deepEqual(entries(web('ingress:\n- fromEndpoints: [{matchLabels: {app: nothing}}]')).in, []);
    assert.deepEqual(entries(web('ingress:\n- fromEndpoints: []')).in, []);
    assert.deepEqual(entries(web('enableDefaultDeny: {egress: true}')).out, []);
  });

  it('a deny section alone puts the subject into default deny (Cilium), unless enableDefaultDeny says no', () => {
    assert.deepEqual(entries(web('ingressDeny: [{fromEntities: [world]}]')).in, [[R.WORLD, 0, 0, 0, 'deny'], [CIDR_10, 0, 0, 0, 'deny'], [CIDR_10_96, 0, 0, 0, 'deny'], [CIDR_8_8, 0, 0, 0, 'deny']]);
    const r = entries(web('enableDefaultDeny: {ingress: false}\ningressDeny: [{fromEntities: [host]}]'));
    assert.equal(r.ingress, 'allow-all');
    assert.deepEqual(r.in, [[0, 0, 0, 0], [R.HOST, 0, 0, 0, 'deny']]);
  });
});

describe('entries', () => {
  it('exact: one identity, one protocol, one port', () => {
    assert.deepEqual(entries(web('ingress:\n- fromEndpoints: [{matchLabels: {app: db}}]\n  toPorts: [{ports: [{port: "5432", protocol: TCP}]}]')).in,
      [[DB, 6, 5432, 16]]);
  });

  it('wildcards: no peer field is identity 0, no toPorts is protocol 0, port 0 is every port, ANY with a port is TCP, UDP and SCTP', () => {
    assert.deepEqual(entries(web('ingress:\n- toPorts: [{ports: [{port: "80", protocol: TCP}]}]')).in, [[0, 6, 80, 16]]);
    assert.deepEqual(entries(web('ingress: [{}]')).in, [[0, 0, 0, 0]]);
    assert.deepEqual(entries(web('ingress:\n- toPorts: [{ports: [{port: "0", protocol: UDP}, {port: 53}, {protocol: ICMP}]}]')).in,
      [[0, 1, 0, 0], [0, 6, 53, 16], [0, 17, 0, 0], [0, 132, 53, 16]]);
  });

  it('ICMP types from icmps are exact entries keyed by type', () => {
    assert.deepEqual(entries(web('ingress:\n- icmps: [{fields: [{type: EchoRequest}, {type: 0}]}]')).in, [[0, 1, 0, 16], [0, 1, 8, 16]]);
  });

  it('splits port ranges into prefix blocks', () => {
    assert.deepEqual(entries(web('egress:\n- toPorts: [{ports: [{port: "80", endPort: 444, protocol: TCP}]}]')).out,
      [[0, 6, 80, 12], [0, 6, 96, 11], [0, 6, 128, 9], [0, 6, 256, 9], [0, 6, 384, 11], [0, 6, 416, 12], [0, 6, 432, 13], [0, 6, 440, 14], [0, 6, 444, 16]]);
    assert.deepEqual(rangeToPrefixes(0, 65535), [{ port: 0, prefixLen: 0 }]);
    assert.deepEqual(rangeToPrefixes(1024, 65535), [1024, 2048, 4096, 8192, 16384, 32768].map((port, i) => ({ port, prefixLen: 6 - i })));
    assert.deepEqual(rangeToPrefixes(8080, 8080), [{ port: 8080, prefixLen: 16 }]);
    assert.deepEqual([{ protocol: 6, port: 80, prefixLen: 12 }, { protocol: 17, port: 0, prefixLen: 0 }, { protocol: 1, port: 8, prefixLen: 16 }, { protocol: 0, port: 0, prefixLen: 0 }, { protocol: 132, port: 5, prefixLen: 16 }].map(formatBlock),
      ['TCP/80-95', 'UDP/*', 'ICMP type 8', '*', 'SCTP/5']);
    // Every port of a range, and no other, falls in its blocks.
    for (const [lo, hi] of [[1, 65535], [79, 81], [1000, 1999], [65535, 65535], [0, 7]] as const) {
      const blocks = rangeToPrefixes(lo, hi);
      let covered = 0;
      for (const b of blocks) {
        assert.equal(b.port & ((1 << (16 - b.prefixLen)) - 1), 0, 'aligned');
        covered += 1 << (16 - b.prefixLen);
        assert.ok(b.port >= lo && b.port + (1 << (16 - b.prefixLen)) - 1 <= hi);
      }
      assert.equal(covered, hi - lo + 1);
    }
  });

  it('deny wins: an allow inside a deny of the same identity is not emitted', () => {
    const r = entries(web(`ingress:
- fromEndpoints: [{matchLabels: {app: db}}]
  toPorts: [{ports: [{port: "80", protocol: TCP}, {port: "53", protocol: UDP}]}]
ingressDeny:
- fromEndpoints: [{matchLabels: {app: db}}]
  toPorts: [{ports: [{port: "0", protocol: TCP}]}]`));
    assert.deepEqual(r.in, [[DB, 6, 0, 0, 'deny'], [DB, 17, 53, 16]]);
  });

  it('deny wins through identity 0: a deny for every peer over an allow for one', () => {
    const r = entries(web(`ingress:
- fromEndpoints: [{matchLabels: {app: db}}]
  toPorts: [{ports: [{port: "80", protocol: TCP}]}]
- toPorts: [{ports: [{port: "80", endPort: 81, protocol: TCP}]}]
ingressDeny:
- toPorts: [{ports: [{port: "80", protocol: TCP}]}]`));
    // The identity-0 allow for 80-81 sits inside no deny of identity 0 (only 80 is denied), so it stays; the
    // datapath's second lookup finds the deny for 80 from every peer.
    assert.deepEqual(r.in, [[0, 6, 80, 15], [0, 6, 80, 16, 'deny']]);
    const { policies } = parsePolicies(web(`ingress:
- fromEndpoints: [{matchLabels: {app: db}}]
  toPorts: [{ports: [{port: "80", endPort: 81, protocol: TCP}]}]
ingressDeny:
- toPorts: [{ports: [{port: "80", protocol: TCP}]}]`));
    const e = computePolicy(policies, universe(), pod(WEB)).entries;
    assert.equal(lookupEntries(e, DB, false, 6, 80).verdict, 'deny');
    assert.equal(lookupEntries(e, DB, false, 6, 81).verdict, 'allow');
  });

  it('a more specific deny under a wider allow stays, and the LPM picks it', () => {
    const r = entries(web(`ingress:
- fromEndpoints: [{matchLabels: {app: db}}]
ingressDeny:
- fromEndpoints: [{matchLabels: {app: db}}]
  toPorts: [{ports: [{port: "22", protocol: TCP}]}]`));
    assert.deepEqual(r.in, [[DB, 0, 0, 0], [DB, 6, 22, 16, 'deny']]);
  });

  it('merges duplicates and drops allows a wider allow of the same identity or of identity 0 covers', () => {
    const r = entries(web(`egress:
- toEndpoints: [{matchLabels: {app: db}}]
  toPorts: [{ports: [{port: "80", protocol: TCP}, {port: "80", protocol: TCP}, {port: "81", protocol: TCP}]}]
- toEndpoints: [{matchLabels: {app: db}}]
  toPorts: [{ports: [{port: "0", protocol: TCP}]}]
- toEndpoints: [{matchLabels: {app: db}}]
  toPorts: [{ports: [{port: "53", protocol: UDP}]}]
- toPorts: [{ports: [{port: "0", protocol: UDP}]}]`));
    assert.deepEqual(r.out, [[0, 17, 0, 0], [DB, 6, 0, 0]]);
  });
});

describe('entities', () => {
  const peers = (entity: string) => entries(web(`ingress:\n- fromEntities: [${entity}]`)).in.map((e) => e[0]);
  it('host, remote-node (with kube-apiserver\'s nodes), world (with every CIDR identity), cluster, all', () => {
    assert.deepEqual(peers('host'), [R.HOST]);
    assert.deepEqual(peers('remote-node'), [R.REMOTE_NODE, R.KUBE_APISERVER]);
    assert.deepEqual(peers('world'), [R.WORLD, CIDR_10, CIDR_10_96, CIDR_8_8]);
    assert.deepEqual(peers('world-ipv4'), [R.WORLD, CIDR_10, CIDR_10_96, CIDR_8_8]);
    assert.deepEqual(peers('cluster'), [R.HOST, 3, 4, 5, R.REMOTE_NODE, R.KUBE_APISERVER, 8, WEB, DB, OTHER_NS]);
    assert.deepEqual(peers('all'), [0]);
    assert.deepEqual(peers('health'), [4]);
    assert.deepEqual(peers('kube-apiserver'), [R.KUBE_APISERVER]);
  });
});

describe('CIDR rules', () => {
  it('select the CIDR identities inside the prefix and outside every except', () => {
    const r = entries(web('egress:\n- toCIDRSet: [{cidr: 10.0.0.0/8, except: [10.96.0.0/12]}]\n- toCIDR: [8.8.0.0/16]'));
    assert.deepEqual(r.out, [[CIDR_10, 0, 0, 0], [CIDR_8_8, 0, 0, 0]]);
  });

  it('only 0.0.0.0/0 selects world itself; CIDR rules never select pods or nodes', () => {
    assert.deepEqual(entries(web('egress:\n- toCIDR: [0.0.0.0/0]')).out.map((e) => e[0]), [R.WORLD, CIDR_10, CIDR_10_96, CIDR_8_8]);
    assert.deepEqual(entries(web('egress:\n- toCIDR: [10.0.0.0/7]')).out.map((e) => e[0]), [CIDR_10, CIDR_10_96]);
  });

  it('cidrPrefixes lists every prefix and except once, canonical, without 0.0.0.0/0', () => {
    const { policies } = parsePolicies(web(`egress:
- toCIDRSet: [{cidr: 10.0.0.0/8, except: [10.96.0.0/12, 10.1.0.0/16]}]
- toCIDR: [192.168.1.7, 10.0.0.0/8, 0.0.0.0/0]
ingress:
- fromCIDR: [172.16.0.0/12]`));
    assert.deepEqual(cidrPrefixes(policies), ['10.0.0.0/8', '10.1.0.0/16', '10.96.0.0/12', '172.16.0.0/12', '192.168.1.7/32']);
  });

  it('an outside address carries the identity of the longest CIDR identity holding it, else world', () => {
    const u = universe();
    assert.equal(identityOfAddress(u, '10.97.1.1'), CIDR_10_96);
    assert.equal(identityOfAddress(u, '10.1.1.1'), CIDR_10);
    assert.equal(identityOfAddress(u, '8.8.8.8'), CIDR_8_8);
    assert.equal(identityOfAddress(u, '1.1.1.1'), R.WORLD);
    assert.throws(() => identityOfAddress(u, '1.1.1'), { code: 'E_INVALID_ADDRESS' });
  });

  it('labels a CIDR identity cidr:<prefix> and reserved:world', () => {
    assert.deepEqual(cidrIdentityLabels('10.0.0.0/8'), { 'cidr:10.0.0.0/8': '', 'reserved:world': '' });
  });
});

describe('the host firewall', () => {
  it('nodeSelector rules make the host\'s map; pods\' rules do not touch it', () => {
    const text = `apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: fw}
spec:
  nodeSelector: {matchLabels: {"kubernetes.io/os": linux}}
  ingress:
  - fromEntities: [remote-node]
  - toPorts: [{ports: [{port: "22", protocol: TCP}]}]
`;
    const host: Subject = { kind: 'host', labels: { 'reserved:host': '', 'k8s:kubernetes.io/os': 'linux' } };
    assert.deepEqual(entries(text, host), {
      ingress: 'enforced', egress: 'allow-all', in: [[0, 6, 22, 16], [R.REMOTE_NODE, 0, 0, 0], [R.KUBE_APISERVER, 0, 0, 0]], out: [[0, 0, 0, 0]],
    });
    assert.deepEqual(entries(text, { kind: 'host', labels: { 'reserved:host': '' } }).ingress, 'allow-all');
    assert.deepEqual(entries(text, pod(WEB)).ingress, 'allow-all');
  });
});

describe('lookupEntries (the datapath\'s decision)', () => {
  const e: PolicyMapEntry[] = [
    { identity: DB, egress: false, protocol: 6, port: 0, portPrefixLen: 0, deny: false },
    { identity: DB, egress: false, protocol: 6, port: 22, portPrefixLen: 16, deny: true },
    { identity: 0, egress: false, protocol: 17, port: 53, portPrefixLen: 16, deny: false },
    { identity: 0, egress: false, protocol: 6, port: 8080, portPrefixLen: 16, deny: true },
  ];
  it('takes the longest prefix per identity and lets a deny in either lookup win', () => {
    assert.equal(lookupEntries(e, DB, false, 6, 80).verdict, 'allow');
    assert.equal(lookupEntries(e, DB, false, 6, 22).verdict, 'deny');
    assert.equal(lookupEntries(e, DB, false, 6, 8080).verdict, 'deny');
    assert.equal(lookupEntries(e, WEB, false, 17, 53).verdict, 'allow');
    assert.equal(lookupEntries(e, WEB, false, 6, 80).verdict, 'drop');
    assert.equal(lookupEntries(e, DB, true, 6, 80).verdict, 'drop');
  });
});

describe('the engine', () => {
  it('resolves each item\'s peers once and gives the same answer as computePolicy', () => {
    const { policies } = parsePolicies(web('ingress:\n- fromEntities: [cluster]'));
    const engine = new PolicyEngine(policies, universe());
    const item = policies[0]!.rules[0]!.ingress[0]!;
    assert.equal(engine.peersOf(item), engine.peersOf(item));
    assert.deepEqual(engine.compute(pod(WEB)), computePolicy(policies, universe(), pod(WEB)));
  });
});
