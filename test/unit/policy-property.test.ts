// compute() and trace agree: on random universes and random policies (built
// as documents and parsed), the datapath's lookup simulated on compute()'s
// entries gives, for every subject, remote identity, direction and a spread
// of packets, exactly the verdict explainDirection() reads from the rules:
// allow = allowed, deny = denied by a deny rule, drop = default deny. Also
// checks the shape the datapath relies on (no allow inside a deny of the same
// identity, no duplicate keys, aligned blocks). Seeded: a failure prints its
// seed; MEMBRANE_TEST_SEED is not read (the env switch rule), change SEEDS.
// No root needed.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { securityLabels } from '../../src/agent/labels.ts';
import {
  PolicyEngine, cidrIdentityLabels, explainDirection, lookupEntries, parsePolicies, reservedUniverse, tracePolicy,
  type Labels, type PolicyMapEntry, type Subject,
} from '../../src/policy/index.ts';

/** mulberry32: small, seedable, good enough for test data. */
function rng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  const chance = (p: number) => next() < p;
  /** 1..max distinct items of xs. */
  const some = <T>(xs: readonly T[], max = xs.length): T[] => {
    const out = xs.filter(() => chance(0.5)).slice(0, 1 + int(max));
    return out.length > 0 ? out : [pick(xs)];
  };
  return { int, pick, chance, some };
}
type Rng = ReturnType<typeof rng>;

const APPS = ['a', 'b', 'c'];
const TIERS = ['x', 'y'];
const NAMESPACES = ['default', 'prod'];
const CIDRS = ['10.0.0.0/8', '10.96.0.0/12', '10.1.0.0/16', '192.168.0.0/16', '192.168.1.0/24', '8.8.8.8/32'];
const POLICY_CIDRS = [...CIDRS, '10.0.0.0/7', '0.0.0.0/0', '192.168.1.128/25', '172.16.0.0/12'];
const ENTITIES = ['host', 'remote-node', 'world', 'cluster', 'all', 'health', 'kube-apiserver'];
const PORTS = [0, 22, 53, 79, 80, 81, 443, 1024, 8080, 65535];
const PROTOCOLS = ['TCP', 'UDP', 'SCTP', 'ANY', 'ICMP', undefined];

function randomUniverse(r: Rng): Map<number, Labels> {
  const u = reservedUniverse();
  const pods = 3 + r.int(5);
  for (let i = 0; i < pods; i++) {
    const labels: Record<string, string> = { app: r.pick(APPS) };
    if (r.chance(0.6)) labels.tier = r.pick(TIERS);
    u.set(256 + i, securityLabels(labels, r.pick(NAMESPACES)));
  }
  CIDRS.forEach((c, i) => { if (r.chance(0.7)) u.set((1 << 24) + i, cidrIdentityLabels(c)); });
  return u;
}

function randomSelector(r: Rng, peer: boolean): unknown {
  const k = r.int(peer ? 7 : 5);
  if (k === 0) return {};
  if (k === 1) return { matchLabels: { app: r.pick(APPS) } };
  if (k === 2) return { matchLabels: { [r.pick(['k8s:tier', 'tier', 'any:tier'])]: r.pick(TIERS), app: r.pick(APPS) } };
  if (k === 3) {
    const op = r.pick(['In', 'NotIn', 'Exists', 'DoesNotExist']);
    return { matchExpressions: [{ key: r.pick(['app', 'tier']), operator: op, ...(op === 'In' || op === 'NotIn' ? { values: r.some(APPS.concat(TIERS), 2) } : {}) }] };
  }
  if (k === 4) return { matchLabels: { 'io.kubernetes.pod.namespace': r.pick(NAMESPACES), app: r.pick(APPS) } };
  if (k === 5) return { matchLabels: { [r.pick(['reserved:host', 'reserved:world', 'reserved:remote-node'])]: '' } };
  return { matchExpressions: [{ key: 'k8s:io.kubernetes.pod.namespace', operator: 'In', values: r.some(NAMESPACES) }] };
}

function randomPorts(r: Rng): unknown {
  const ports = [];
  for (let i = 0, n = 1 + r.int(3); i < n; i++) {
    const protocol = r.pick(PROTOCOLS);
    if (protocol === 'ICMP') { ports.push({ protocol }); continue; }
    const port = r.pick(PORTS);
    const p: Record<string, unknown> = { port: r.chance(0.5) ? String(port) : port };
    if (protocol) p.protocol = protocol;
    if (port > 0 && r.chance(0.3)) p.endPort = Math.min(65535, port + r.pick([1, 15, 100, 1000, 30000]));
    ports.push(p);
  }
  return [{ ports }];
}

function randomItem(r: Rng, ingress: boolean): unknown {
  const f = (s: string) => (ingress ? `from${s}` : `to${s}`);
  const item: Record<string, unknown> = {};
  switch (r.int(7)) {
    case 0: break; // no peer field: every peer
    case 1: item[f('Endpoints')] = r.chance(0.1) ? [] : Array.from({ length: 1 + r.int(2) }, () => randomSelector(r, true)); break;
    case 2: item[f('Entities')] = r.chance(0.1) ? [] : r.some(ENTITIES, 2); break;
    case 3: item[f('CIDR')] = r.some(POLICY_CIDRS, 2); break;
    case 4: {
      const cidr = r.pick(['10.0.0.0/8', '192.168.0.0/16', '0.0.0.0/0']);
      const inside = CIDRS.filter((c) => c !== cidr && (cidr === '0.0.0.0/0' || c.startsWith(cidr.split('.')[0]!)));
      item[f('CIDRSet')] = [{ cidr, ...(inside.length && r.chance(0.7) ? { except: r.some(inside, 2) } : {}) }];
      break;
    }
    default: item[f('Endpoints')] = [randomSelector(r, true)];
  }
  if (r.chance(0.55)) item.toPorts = randomPorts(r);
  if (r.chance(0.1)) item.icmps = [{ fields: [{ type: r.pick([0, 8, 'EchoRequest', 3]) }] }];
  return item;
}

function randomPolicies(r: Rng): string {
  const docs = [];
  for (let i = 0, n = 1 + r.int(4); i < n; i++) {
    const clusterwide = r.chance(0.35);
    const specs = [];
    for (let j = 0, m = 1 + r.int(2); j < m; j++) {
      const rule: Record<string, unknown> = clusterwide && r.chance(0.3)
        ? { nodeSelector: r.chance(0.5) ? {} : { matchLabels: { 'node-role': r.pick(['worker', 'master']) } } }
        : { endpointSelector: randomSelector(r, false) };
      for (const section of ['ingress', 'ingressDeny', 'egress', 'egressDeny']) {
        if (r.chance(0.4)) rule[section] = Array.from({ length: 1 + r.int(3) }, () => randomItem(r, section.startsWith('ingress')));
      }
      if (r.chance(0.15)) rule.enableDefaultDeny = { [r.pick(['ingress', 'egress'])]: r.chance(0.5) };
      if (!['ingress', 'ingressDeny', 'egress', 'egressDeny'].some((s) => s in rule)) rule.ingress = [{}];
      specs.push(rule);
    }
    docs.push({
      apiVersion: 'cilium.io/v2',
      kind: clusterwide ? 'CiliumClusterwideNetworkPolicy' : 'CiliumNetworkPolicy',
      metadata: { name: `p${i}`, ...(clusterwide ? {} : { namespace: r.pick(NAMESPACES) }) },
      ...(specs.length === 1 && r.chance(0.5) ? { spec: specs[0] } : { specs }),
    });
  }
  return JSON.stringify(docs);
}

/** Packets to try: [protocol, port]. */
const PACKETS: [number, number][] = [
  ...[0, 1, 22, 53, 79, 80, 81, 82, 95, 96, 443, 444, 1023, 1024, 1124, 8080, 8095, 30000, 65535].flatMap((p) => [[6, p], [17, p]] as [number, number][]),
  [1, 0], [1, 3], [1, 8], [1, 11], [132, 53], [132, 80], [132, 8080], [47, 0],
];

function checkShape(entries: readonly PolicyMapEntry[], seed: number): void {
  const keys = new Set<string>();
  for (const e of entries) {
    const k = `${e.identity}/${e.egress}/${e.protocol}/${e.port}/${e.portPrefixLen}`;
    assert.ok(!keys.has(k), `seed ${seed}: duplicate key ${k}`);
    keys.add(k);
    if (e.protocol === 0) assert.ok(e.port === 0 && e.portPrefixLen === 0, `seed ${seed}: protocol 0 with a port`);
    assert.equal(e.port & (e.portPrefixLen === 0 ? 0xffff : (1 << (16 - e.portPrefixLen)) - 1), 0, `seed ${seed}: unaligned ${k}`);
  }
  // The datapath's rule: no allow more specific than (inside) a deny of the same identity and direction.
  for (const a of entries.filter((e) => !e.deny)) {
    for (const d of entries.filter((e) => e.deny && e.identity === a.identity && e.egress === a.egress)) {
      const inside = d.protocol === 0 || (d.protocol === a.protocol && d.portPrefixLen <= a.portPrefixLen
        && (a.port >> (16 - d.portPrefixLen) === d.port >> (16 - d.portPrefixLen) || d.portPrefixLen === 0));
      assert.ok(!inside, `seed ${seed}: allow ${JSON.stringify(a)} inside deny ${JSON.stringify(d)}`);
    }
  }
}

const SEEDS = Array.from({ length: 300 }, (_, i) => 1000 + i * 7919);

describe('compute and trace agree', () => {
  it(`on ${SEEDS.length} random universes and policy sets`, () => {
    let checks = 0;
    let allowed = 0;
    let denied = 0;
    let dropped = 0;
    for (const seed of SEEDS) {
      const r = rng(seed);
      const universe = randomUniverse(r);
      const text = randomPolicies(r);
      const { policies } = parsePolicies(text);
      const engine = new PolicyEngine(policies, universe);
      const pods = [...universe.keys()].filter((id) => id >= 256 && id < 1 << 24);
      const subjects: Subject[] = [
        ...pods.map((id): Subject => ({ kind: 'endpoint', labels: universe.get(id)! })),
        { kind: 'host', labels: { 'reserved:host': '', 'k8s:node-role': r.pick(['worker', 'master']) } },
      ];
      const remotes = [...universe.keys(), 999]; // 999: an identity the universe does not know
      for (const subject of subjects) {
        const { entries } = engine.compute(subject);
        checkShape(entries, seed);
        for (const remote of remotes) {
          for (const egress of [false, true]) {
            for (let i = 0; i < 8; i++) {
              const [protocol, port] = PACKETS[r.int(PACKETS.length)]!;
              const dp = lookupEntries(entries, remote, egress, protocol, port).verdict;
              const tr = explainDirection(engine, subject, egress ? 'egress' : 'ingress', remote, protocol, port);
              const want = tr.reason === 'denied-by-rule' ? 'deny' : tr.reason === 'default-deny' ? 'drop' : 'allow';
              if (dp !== want) {
                assert.fail(`seed ${seed}: ${subject.kind} ${JSON.stringify(subject.labels)} ${egress ? 'egress' : 'ingress'} remote ${remote} proto ${protocol} port ${port}: datapath ${dp}, trace ${tr.text}\npolicies: ${text}\nentries: ${JSON.stringify(entries)}`);
              }
              checks++;
              if (dp === 'allow') allowed++; else if (dp === 'deny') denied++; else dropped++;
            }
          }
        }
      }
      // The whole trace: its overall verdict is the first denial of the two directions it reports.
      const [a, b] = [r.pick(pods), r.pick(pods)];
      const t = tracePolicy(policies, universe, {
        src: { kind: 'endpoint', identity: a, labels: universe.get(a)! }, dst: { kind: 'endpoint', identity: b, labels: universe.get(b)! }, protocol: 'TCP', dport: r.pick(PORTS),
      });
      const first = !t.egress.allowed ? t.egress : !t.ingress.allowed ? t.ingress : undefined;
      assert.equal(t.verdict, !first ? 'allowed' : first.reason === 'denied-by-rule' ? 'denied-by-deny-rule' : 'denied-by-default', `seed ${seed}`);
    }
    // The random cases exercise every outcome.
    assert.ok(checks > 50_000, `${checks} checks`);
    for (const [what, n] of [['allowed', allowed], ['denied by rule', denied], ['dropped by default', dropped]] as const) {
      assert.ok(n > checks / 50, `${what}: ${n} of ${checks}`);
    }
  });
});
