// How long the pure policy engine takes for 1,000 rules, 100 pod identities
// (plus the reserved and 20 CIDR identities) and 100 subjects: parsing the
// documents, then computing every subject's policy map. The lead's goal is a
// policy import reaching every node's maps within 1 s, so this part must be a
// small share of it. Two shapes:
//   realistic  CNPs in 10 namespaces, each selecting one app and allowing or
//              denying a few peers (apps, entities, CIDRs) on ports and ranges;
//   worst      CCNPs that all select every pod, with cluster-wide peers and
//              port ranges: every rule applies to every subject (so all
//              subjects share one result);
//   distinct   the same, plus one rule per pod, so no two subjects share a
//              result: 100 full computations.
// Parsing is timed twice: a file through the YAML parser (positions for
// errors), and the stored values an agent reads back (parsePolicyValues).
// Run: node --import tsx bench/policy-compute.ts [--rules N] [--pods N] [--subjects N]
import { securityLabels } from '../src/agent/labels.ts';
import {
  PolicyEngine, cidrIdentityLabels, cidrPrefixes, parsePolicies, parsePolicyValues, reservedUniverse, type Labels, type Subject,
} from '../src/policy/index.ts';

function flag(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
}
const RULES = flag('rules', 1000);
const PODS = flag('pods', 100);
const SUBJECTS = flag('subjects', 100);
const NAMESPACES = 10;
const APPS = Math.ceil(PODS / NAMESPACES);

/** Deterministic pseudo-random numbers, so runs compare. */
let seed = 12345;
const rand = (n: number) => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n; };

const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;

function ports(): unknown[] {
  const k = rand(4);
  if (k === 0) return [{ ports: [{ port: String(1000 + rand(9000)), protocol: 'TCP' }] }];
  if (k === 1) return [{ ports: [{ port: '8000', endPort: 8000 + rand(2000), protocol: 'TCP' }, { port: '53', protocol: 'UDP' }] }];
  if (k === 2) return [{ ports: [{ port: String(1 + rand(1024)), protocol: 'ANY' }] }];
  return [{ ports: [{ port: '443', protocol: 'TCP' }, { port: '80', protocol: 'TCP' }] }];
}

function realistic(): unknown[] {
  return Array.from({ length: RULES }, (_, i) => {
    const ns = `ns-${rand(NAMESPACES)}`;
    const peer = rand(10);
    const item: Record<string, unknown> = peer < 5
      ? { fromEndpoints: [{ matchLabels: { app: `app-${rand(APPS)}`, ...(peer === 0 ? { 'io.kubernetes.pod.namespace': `ns-${rand(NAMESPACES)}` } : {}) } }] }
      : peer < 7 ? { fromEntities: [['host', 'remote-node', 'cluster', 'world'][rand(4)]] }
        : (() => { const b = rand(20); return { fromCIDRSet: [{ cidr: `10.${b}.0.0/16`, except: [`10.${b}.${rand(4)}.0/24`] }] }; })();
    if (rand(3) > 0) item.toPorts = ports();
    const section = rand(10) === 0 ? 'ingressDeny' : rand(2) ? 'ingress' : 'egress';
    if (section === 'egress') for (const k of Object.keys(item)) if (k.startsWith('from')) { item[k.replace('from', 'to')] = item[k]; delete item[k]; }
    return {
      apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy',
      metadata: { name: `rule-${i}`, namespace: ns },
      spec: { endpointSelector: { matchLabels: { app: `app-${rand(APPS)}` } }, [section]: [item] },
    };
  });
}

function distinct(): unknown[] {
  const docs = worst().slice(0, RULES - PODS);
  for (let i = 0; i < PODS; i++) {
    docs.push({
      apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy',
      metadata: { name: `own-${i}`, namespace: `ns-${Math.floor(i / APPS) % NAMESPACES}` },
      spec: { endpointSelector: { matchLabels: { app: `app-${i % APPS}` } }, ingress: [{ fromEntities: ['host'], toPorts: [{ ports: [{ port: String(2000 + i), protocol: 'TCP' }] }] }] },
    });
  }
  return docs;
}

function worst(): unknown[] {
  return Array.from({ length: RULES }, (_, i) => ({
    apiVersion: 'cilium.io/v2', kind: 'CiliumClusterwideNetworkPolicy',
    metadata: { name: `rule-${i}` },
    spec: {
      endpointSelector: {},
      ingress: [{ fromEntities: ['cluster'], toPorts: ports() }],
      egress: [{ toEndpoints: [{ matchLabels: { app: `app-${rand(APPS)}` } }], toPorts: ports() }],
      ...(i % 10 === 0 ? { egressDeny: [{ toEntities: ['world'], toPorts: [{ ports: [{ port: String(rand(65535)), protocol: 'TCP' }] }] }] } : {}),
    },
  }));
}

function run(name: string, docs: unknown[]): void {
  const text = JSON.stringify(docs, null, 2);
  const { policies } = parsePolicies(text, { source: `${name}.json` });
  const raw = JSON.stringify(policies.map((p) => p.raw));
  // Best of 3 (the first includes the JIT's warm-up).
  let parse = Infinity;
  let parseValues = Infinity;
  let t: bigint;
  for (let round = 0; round < 3; round++) {
    t = process.hrtime.bigint();
    parsePolicies(text, { source: `${name}.json` });
    parse = Math.min(parse, ms(t));
    t = process.hrtime.bigint();
    parsePolicyValues(JSON.parse(raw));
    parseValues = Math.min(parseValues, ms(t));
  }

  const universe = reservedUniverse();
  const pods: [number, Labels][] = [];
  for (let i = 0; i < PODS; i++) {
    const labels = securityLabels({ app: `app-${i % APPS}` }, `ns-${Math.floor(i / APPS) % NAMESPACES}`);
    universe.set(256 + i, labels);
    pods.push([256 + i, labels]);
  }
  const prefixes = cidrPrefixes(policies).slice(0, 20);
  prefixes.forEach((p, i) => universe.set((1 << 24) + i, cidrIdentityLabels(p)));
  const subjects: Subject[] = pods.slice(0, SUBJECTS).map(([, labels]) => ({ kind: 'endpoint', labels }));

  // Best of 5: the first run includes the JIT's warm-up.
  let best = Infinity;
  let entries = 0;
  let max = 0;
  for (let round = 0; round < 5; round++) {
    t = process.hrtime.bigint();
    const engine = new PolicyEngine(policies, universe);
    entries = 0;
    max = 0;
    for (const s of subjects) {
      const n = engine.compute(s).entries.length;
      entries += n;
      max = Math.max(max, n);
    }
    best = Math.min(best, ms(t));
  }
  const rules = policies.reduce((n, p) => n + p.rules.length, 0);
  console.log(`${name.padEnd(10)} ${rules} rules, ${universe.size} identities (${PODS} pods, ${prefixes.length} CIDR), ${subjects.length} subjects: ` +
    `parse a file ${parse.toFixed(0)} ms (${(text.length / 1024).toFixed(0)} KiB), stored values ${parseValues.toFixed(0)} ms, compute all ${best.toFixed(0)} ms (${(best / subjects.length).toFixed(2)} ms/subject), ` +
    `${entries} entries (max ${max} per subject)`);
}

run('realistic', realistic());
run('worst', worst());
run('distinct', distinct());
