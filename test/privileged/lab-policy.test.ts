// Network policy end to end on a 2 x 2 lab, through the CLI as a user runs
// it: import (YAML and JSON; text and -o json), list, get (what it prints
// imports again), delete (traffic restored); a real Cilium policy file,
// unchanged, enforced on both nodes in real traffic, denied flows dropped and
// counted with the policy drop reason (`bpf metrics list`) and both
// identities (`membrane observe`); the lab found by
// --lab and by $MEMBRANE_LAB; trace (the verdict and the deciding rule);
// identity list; the maps
// the agents wrote (`bpf policy get`: the entries the engine computes, port
// ranges as blocks, a deny); conntrack (`bpf ct list`: an established TCP
// connection); bad documents (exit 3, the place in the document named,
// nothing applied, the previous policy still enforced in real traffic);
// a policy reaching both nodes' maps (time printed, not asserted); and
// `membrane connectivity test` with its policy scenarios, which leaves no
// policy behind, also when it is interrupted.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { test } from 'node:test';
import { parse as parseYaml } from 'yaml';
import type { PolicyStatus } from '../../src/agent/policy-manager.ts';
import type { StoredPolicy } from '../../src/agent/policy-store.ts';
import { apiCall } from '../../src/api/client.ts';
import { ping, tcpExact } from '../../src/connectivity/probes.ts';
import { nsStart } from '../../src/connectivity/run.ts';
import type { Flow } from '../../src/agent/observe/flows.ts';
import { POLICY_SCENARIOS, TEST_POLICY_PREFIX } from '../../src/connectivity/policy-scenarios.ts';
import type { SuiteResult } from '../../src/connectivity/suite.ts';
import { listEndpointPolicy } from '../../src/datapath/policy-maps.ts';
import type { LabStatus, LabStatusPod } from '../../src/lab/status.ts';
import { PolicyEngine, parsePolicies, reservedUniverse, type PolicyMapEntry } from '../../src/policy/index.ts';
import { lab, labOk, labStatus, labUp, membraneIn } from '../helpers/lab.ts';
import { MEMBRANE, REPO } from '../helpers/membrane.ts';
import { tempDir } from '../helpers/netns.ts';
import { rootOnly } from '../helpers/skip.ts';

const TCP = 6;
/** Cilium's drop reasons for policy (133 and 181), as `bpf metrics list` and the drop events name them. */
const POLICY_DENIED = 'Policy denied';
const POLICY_DENYLIST = 'Policy denied by denylist';
/** The lab's extra labels: the real Cilium file below selects by role. */
const LAB_LABELS = 'pod-1-1=role=frontend,pod-1-2=role=backend,pod-2-1=role=backend';

/** The policy most of the file works with: pod-2-1 takes TCP 80 and 8000-8010 from pod-1-1, and nothing from pod-1-2. */
const WEB = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: web
spec:
  endpointSelector:
    matchLabels:
      app: pod-2-1
  ingress:
    - fromEndpoints:
        - matchLabels:
            app: pod-1-1
      toPorts:
        - ports:
            - port: "80"
              protocol: TCP
            - port: "8000"
              endPort: 8010
              protocol: TCP
  ingressDeny:
    - fromEndpoints:
        - matchLabels:
            app: pod-1-2
`;

/** Bad documents: each must be refused whole, naming document, path, line and column. */
const BAD: { what: string; text: string; want: RegExp }[] = [
  {
    what: 'unknown field (after a good document)',
    text: `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: fine}
spec:
  endpointSelector: {matchLabels: {app: pod-2-1}}
  ingress: [{fromEntities: [host]}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: typo}
spec:
  endpointSelector: {matchLabels: {app: pod-2-1}}
  ingress:
    - fromEndpoint: [{matchLabels: {app: pod-2-2}}]
`,
    want: /document 2 \(typo\): spec\.ingress\[0\]\.fromEndpoint: unknown field "fromEndpoint" \(did you mean fromEndpoints\?\) at line 14, column 7/,
  },
  {
    what: 'bad selector operator',
    text: `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: badop}
spec:
  endpointSelector:
    matchExpressions:
      - {key: app, operator: Inn, values: [pod-2-1]}
  ingress: [{}]
`,
    want: /document 1 \(badop\): spec\.endpointSelector\.matchExpressions\[0\]\.operator: "Inn" is not an operator .* at line 7, column 30/,
  },
  {
    what: 'bad CIDR',
    text: `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: badcidr}
spec:
  endpointSelector: {matchLabels: {app: pod-2-1}}
  egress:
    - toCIDRSet:
        - cidr: 10.0.0.0/8
          except: [10.1.0.0/33]
`,
    want: /document 1 \(badcidr\): spec\.egress\[0\]\.toCIDRSet\[0\]\.except\[0\]: .*prefix length 33.* at line 9, column 20/,
  },
  {
    what: 'port out of range',
    text: `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: badport}
spec:
  endpointSelector: {matchLabels: {app: pod-2-1}}
  ingress:
    - toPorts:
        - ports:
            - {port: "70000", protocol: TCP}
`,
    want: /document 1 \(badport\): spec\.ingress\[0\]\.toPorts\[0\]\.ports\[0\]\.port: 70000 is not a port \(0-65535\) at line 9, column 22/,
  },
  {
    what: 'unknown protocol',
    text: `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: badproto}
spec:
  endpointSelector: {matchLabels: {app: pod-2-1}}
  ingress:
    - toPorts:
        - ports:
            - {port: "80", protocol: HTTP}
`,
    want: /document 1 \(badproto\): spec\.ingress\[0\]\.toPorts\[0\]\.ports\[0\]\.protocol: "HTTP" is not a protocol .* at line 9, column 38/,
  },
  {
    what: 'wrong types (two problems, both named)',
    text: `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: badtypes}
spec:
  endpointSelector: {matchLabels: {app: [pod-2-1]}}
  ingress: {fromEntities: host}
`,
    want: /2 problems: document 1 \(badtypes\): spec\.endpointSelector\.matchLabels\.app: .*not a list at line 5, column \d+; document 1 \(badtypes\): spec\.ingress: must be a list, not a mapping at line 6, column \d+/,
  },
  {
    what: 'wrong type in JSON',
    text: '{"apiVersion":"cilium.io/v2","kind":"CiliumNetworkPolicy","metadata":{"name":"badjson"},"spec":{"endpointSelector":{},\n"ingress":[{"toPorts":[{"ports":[{"port":"80","protocol":"TCP","endPort":"x"}]}]}]}}\n',
    want: /document 1 \(badjson\): spec\.ingress\[0\]\.toPorts\[0\]\.ports\[0\]\.endPort: must be a port number, not a string \("x"\) at line 2, column \d+/,
  },
];

const key = (e: PolicyMapEntry) => `${e.egress ? 'egress' : 'ingress'} id=${e.identity} proto=${e.protocol} port=${e.port}/${e.portPrefixLen} ${e.deny ? 'deny' : 'allow'}`;

test('network policy through the CLI on a 2 x 2 lab', { skip: rootOnly() }, async (t) => {
  const { name } = await labUp(t, ['--labels', LAB_LABELS]);
  const s: LabStatus = await labStatus(name);
  const dir = tempDir(t, `/tmp/${name}-policy`);
  const pod = (n: string) => s.pods.find((p) => p.name === n)!;
  const node = (n: string) => s.nodes.find((x) => x.name === n)!;
  const [p11, p12, p21, p22] = ['pod-1-1', 'pod-1-2', 'pod-2-1', 'pod-2-2'].map(pod) as [LabStatusPod, LabStatusPod, LabStatusPod, LabStatusPod];
  const cli = (args: string[]) => lab([...args, '--lab', name]);
  const cliOk = (args: string[]) => labOk([...args, '--lab', name]);
  const file = (base: string, text: string) => { const f = `${dir}/${base}`; writeFileSync(f, text); return f; };
  const policies = async () => (await apiCall<{ policies: StoredPolicy[] }>(s.nodes[0]!.apiSocket, 'GET', '/v1/policies')).policies;
  /** pod-2-1's enforcement of WEB, in real traffic: TCP 80 from pod-1-1 passes, pod-1-2 is dropped, pod-2-2 too. */
  const webEnforced = async () => {
    const tcp = await tcpExact(p11.netns, p21.netns, p21.ip!, 64 << 10, 80);
    const deny = await ping(p12.netns, p21.ip!, { count: 1, waitS: 0.3 });
    const dflt = await ping(p22.netns, p21.ip!, { count: 1, waitS: 0.3 });
    const open = await ping(p21.netns, p22.ip!, { count: 1 });
    return { tcp80FromPod11: tcp.received === 64 << 10, pingFromPod12: deny.received > 0, pingFromPod22: dflt.received > 0, egressStillOpen: open.ok };
  };
  const WEB_ENFORCED = { tcp80FromPod11: true, pingFromPod12: false, pingFromPod22: false, egressStillOpen: true };
  /** Packets `bpf metrics list` on node `n` counts as dropped with `reason` (every site). */
  const drops = async (n: string, reason: string) => (JSON.parse(await membraneIn(node(n).netns, ['bpf', 'metrics', 'list', '-o', 'json'])) as { reasonText: string; packets: number }[])
    .filter((m) => m.reasonText === reason).reduce((sum, m) => sum + m.packets, 0);
  /** `membrane observe`: the dropped ICMP flows to `to` node `at` holds, as -o json gives them. */
  const droppedFlows = async (at: string, to: LabStatusPod) => (await cliOk(['observe', '--node', at, '--to-pod', to.name, '--verdict', 'DROPPED', '--protocol', 'icmp', '--last', '200', '-o', 'json']))
    .stdout.split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { flow?: Flow }).flow).filter((f): f is Flow => Boolean(f));
  /**
   * Two pings `from` -> `to` that must be denied: the replies that came, how
   * many drops with `reason` node `at` counted meanwhile (`bpf metrics list`),
   * and the identities of the dropped flows `membrane observe` shows for them.
   */
  const denied = async (at: string, from: LabStatusPod, to: LabStatusPod, reason: string) => {
    const old = new Set((await droppedFlows(at, to)).map((f) => f.uuid)); // what came before is not this flow's
    const before = await drops(at, reason);
    const p = await ping(from.netns, to.ip!, { count: 2, waitS: 0.3 });
    const counted = (await drops(at, reason)) - before;
    let ids: string[] = [];
    // The agent reads the datapath's events every few ms: give it a moment for the last drop.
    for (let i = 0; i < 20 && !ids.length; i++) {
      if (i) await new Promise((r) => setTimeout(r, 50));
      ids = (await droppedFlows(at, to)).filter((f) => !old.has(f.uuid) && f.drop?.reason_text === reason && f.l4?.ICMPv4?.type === 8).map((f) => {
        const hop = f.hops.find((h) => h.point === 'DROPPED');
        return `${hop?.src_identity} -> ${hop?.dst_identity}`;
      });
    }
    return { replies: p.received, counted, identities: [...new Set(ids)] };
  };
  const deniedAs = (from: LabStatusPod, to: LabStatusPod) => ({ replies: 0, counted: 2, identities: [`${from.identity} -> ${to.identity}`] });

  await t.test('import (YAML, JSON, text and -o json with --wait), list, get round-trips, delete restores traffic; --lab and $MEMBRANE_LAB', async () => {
    const f = file('web.yaml', WEB);
    const r = await cliOk(['policy', 'import', f, '--wait']);
    assert.match(r.stdout, /^imported default\/web \(store revision \d+\)$/m);
    assert.match(r.stdout, /^enforced on 2 nodes \d+ ms after the import started \(node-1 \d+ ms, node-2 \d+ ms\)$/m);
    const list = (await cliOk(['policy', 'list'])).stdout;
    assert.match(list, /^default\/web\s+CiliumNetworkPolicy\s+\d+$/m);
    const listJson = JSON.parse((await cliOk(['policy', 'list', '-o', 'json'])).stdout) as { id: string; kind: string; revision: number }[];
    assert.deepEqual(listJson.map((p) => [p.id, p.kind]), [['default/web', 'CiliumNetworkPolicy']]);
    assert.deepEqual(await webEnforced(), WEB_ENFORCED, 'the imported policy is enforced');

    // get prints YAML that is the document as imported, and importing it again is accepted (same policy).
    const got = (await cliOk(['policy', 'get', 'web'])).stdout;
    assert.deepEqual(parseYaml(got), parseYaml(WEB));
    const again = await cliOk(['policy', 'import', file('web-again.yaml', got), '-o', 'json', '--wait']);
    const j = JSON.parse(again.stdout) as { imported: string[]; revision: number; enforced: { node: string; ms: number }[] };
    assert.deepEqual(j.imported, ['default/web']);
    assert.ok(j.revision > listJson[0]!.revision, 'a new store revision');
    assert.deepEqual(j.enforced.map((e) => e.node).sort(), ['node-1', 'node-2']);
    for (const st of await Promise.all(s.nodes.map((n) => apiCall<PolicyStatus>(n.apiSocket, 'GET', '/v1/policy')))) {
      assert.ok(st.revision >= j.revision, 'every node reports the revision --wait waited for');
      assert.deepEqual(st.policies, ['default/web']);
      assert.ok(st.appliedAt);
    }
    assert.deepEqual(JSON.parse((await cliOk(['policy', 'get', 'default/web', '-o', 'json'])).stdout), [parseYaml(WEB)]);

    // The same document as JSON: accepted, stored as written, enforced the same.
    const asJson = file('web.json', JSON.stringify(parseYaml(WEB), null, 2));
    assert.match((await cliOk(['policy', 'import', asJson, '--wait'])).stdout, /^imported default\/web \(store revision \d+\)$/m);
    assert.deepEqual(JSON.parse((await cliOk(['policy', 'get', 'web', '-o', 'json'])).stdout), [JSON.parse(readFileSync(asJson, 'utf8'))]);
    assert.deepEqual(await webEnforced(), WEB_ENFORCED, 'the policy imported from JSON is enforced');

    // Without --lab: $MEMBRANE_LAB names the lab.
    const viaEnv = await lab(['policy', 'list'], { env: { MEMBRANE_LAB: name } });
    assert.equal(viaEnv.code, 0, viaEnv.stderr);
    assert.match(viaEnv.stdout, /^default\/web\s+CiliumNetworkPolicy\s+\d+$/m);
    assert.match((await lab(['identity', 'list'], { env: { MEMBRANE_LAB: name } })).stdout, new RegExp(`^${p21.identity}\\s+k8s:app=pod-2-1 `, 'm'));
    const noLab = await lab(['policy', 'list', '--lab', `${name}x`]);
    assert.notEqual(noLab.code, 0, 'a lab that does not exist is an error');
    assert.match(noLab.stderr, new RegExp(`${name}x`));
    const missing = await cli(['policy', 'get', 'nope']);
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /get policy nope: no such policy \(there are: default\/web\)/);

    // delete: gone from the store and from the datapath.
    const d = await cliOk(['policy', 'delete', 'web', '--wait']);
    assert.match(d.stdout, /^deleted default\/web$/m);
    assert.deepEqual(await policies(), []);
    const after = await webEnforced();
    assert.deepEqual(after, { ...WEB_ENFORCED, pingFromPod12: true, pingFromPod22: true }, 'nothing is denied once it is gone');
    const again2 = await cli(['policy', 'delete', 'web']);
    assert.notEqual(again2.code, 0);
    assert.match(again2.stderr, /delete policy web: no such policy/);
  });

  await t.test('denied flows are dropped at the enforcing node and counted with the policy drop reason and both identities', async (tt) => {
    await cliOk(['policy', 'import', file('web.yaml', WEB), '--wait']);
    tt.after(() => cli(['policy', 'delete', 'web', '--wait']));
    // Cross-node, matched by the deny rule: dropped on node-2, where pod-2-1's ingress is enforced, against the identity the VNI carried.
    assert.deepEqual(await denied('node-2', p12, p21, POLICY_DENYLIST), deniedAs(p12, p21), 'pod-1-2 -> pod-2-1 (ingressDeny)');
    // Same node, no rule allows it: default deny.
    assert.deepEqual(await denied('node-2', p22, p21, POLICY_DENIED), deniedAs(p22, p21), 'pod-2-2 -> pod-2-1 (default deny)');
    // Cross-node, allowed pod but not this protocol: default deny too.
    assert.deepEqual(await denied('node-2', p11, p21, POLICY_DENIED), deniedAs(p11, p21), 'pod-1-1 -> pod-2-1 ICMP (only TCP is allowed)');
    assert.equal((await tcpExact(p11.netns, p21.netns, p21.ip!, 64 << 10, 8005)).received, 64 << 10, 'while TCP 8005 (in the range) passes');
  });

  await t.test('real Cilium policy files (YAML, JSON), imported unchanged; the YAML one enforced on both nodes', async (tt) => {
    // test/testdata/policy/l3-allow.yaml: docs.cilium.io "Simple Ingress Allow" as written (quoted
    // apiVersion, description, namespace); the lab's --labels make pod-1-1 a frontend and pod-1-2, pod-2-1 backends.
    const f = `${REPO}test/testdata/policy/l3-allow.yaml`;
    const r = await cliOk(['policy', 'import', f, '--wait']);
    assert.match(r.stdout, /^imported default\/l3-rule \(store revision \d+\)$/m);
    assert.equal(r.stderr, '', 'no warning');
    tt.after(() => cli(['policy', 'delete', 'l3-rule', '--wait']));
    assert.deepEqual(JSON.parse((await cliOk(['policy', 'get', 'l3-rule', '-o', 'json'])).stdout), [parseYaml(readFileSync(f, 'utf8'))], 'stored as written');
    // The frontend reaches both backends, on its node and across.
    for (const b of [p12, p21]) assert.equal((await ping(p11.netns, b.ip!, { count: 2 })).received, 2, `pod-1-1 (frontend) -> ${b.name} (backend)`);
    // pod-2-2 (no role) is denied at both backends' nodes: across to node-1, on its own node-2.
    assert.deepEqual(await denied('node-1', p22, p12, POLICY_DENIED), deniedAs(p22, p12), 'pod-2-2 -> pod-1-2, dropped on node-1');
    assert.deepEqual(await denied('node-2', p22, p21, POLICY_DENIED), deniedAs(p22, p21), 'pod-2-2 -> pod-2-1, dropped on node-2');
    // A backend is not a frontend.
    assert.deepEqual(await denied('node-2', p12, p21, POLICY_DENIED), deniedAs(p12, p21), 'pod-1-2 -> pod-2-1 (backend to backend)');
    // Pods the rule does not select stay open, and egress is not enforced.
    assert.equal((await ping(p12.netns, p22.ip!, { count: 2 })).received, 2, 'pod-1-2 -> pod-2-2 (not selected)');
    await cliOk(['policy', 'delete', 'l3-rule', '--wait']);
    assert.equal((await ping(p22.netns, p12.ip!, { count: 2 })).received, 2, 'deleted: pod-2-2 -> pod-1-2 passes again');

    // A JSON file from Cilium's documentation too (it selects app=myService: no lab pod).
    const j = `${REPO}test/testdata/policy/cidr.json`;
    assert.match((await cliOk(['policy', 'import', j, '--wait'])).stdout, /^imported default\/cidr-rule /m);
    tt.after(() => cli(['policy', 'delete', 'cidr-rule', '--wait']));
    assert.deepEqual(JSON.parse((await cliOk(['policy', 'get', 'cidr-rule', '-o', 'json'])).stdout), JSON.parse(readFileSync(j, 'utf8')), 'stored as written');
    await cliOk(['policy', 'delete', 'cidr-rule', '--wait']);
  });

  await t.test('trace: the verdict and the rule that decided, and the datapath agrees', async (tt) => {
    await cliOk(['policy', 'import', file('web.yaml', WEB), '--wait']);
    tt.after(() => cli(['policy', 'delete', 'web', '--wait']));
    const allowed = (await cliOk(['policy', 'trace', '--src', 'pod-1-1', '--dst', 'pod-2-1', '--dport', '80/TCP'])).stdout;
    assert.match(allowed, /^ALLOWED: /);
    assert.match(allowed, /ingress of default\/pod-2-1 .*: allowed by CiliumNetworkPolicy default\/web spec\.ingress\[0\]/);
    const inRange = JSON.parse((await cliOk(['policy', 'trace', '--src', 'pod-1-1', '--dst', 'pod-2-1', '--dport', '8009/TCP', '-o', 'json'])).stdout);
    assert.equal(inRange.verdict, 'allowed', 'a port inside the range');
    const outOfRange = JSON.parse((await cliOk(['policy', 'trace', '--src', 'pod-1-1', '--dst', 'pod-2-1', '--dport', '8011/TCP', '-o', 'json'])).stdout);
    assert.equal(outOfRange.verdict, 'denied-by-default', 'the port after the range');

    const byDefault = (await cliOk(['policy', 'trace', '--src', 'pod-2-2', '--dst', 'pod-2-1', '--dport', '80/TCP'])).stdout;
    assert.match(byDefault, /^DENIED: /);
    assert.match(byDefault, /ingress of default\/pod-2-1 .*: denied: default deny for ingress \(selected by CiliumNetworkPolicy default\/web spec\) and no rule allows it/);
    const byDeny = (await cliOk(['policy', 'trace', '--src', 'pod-1-2', '--dst', 'pod-2-1', '--dport', '80/TCP'])).stdout;
    assert.match(byDeny, /^DENIED: /);
    assert.match(byDeny, /denied by CiliumNetworkPolicy default\/web spec\.ingressDeny\[0\]/);
    const denyJson = JSON.parse((await cliOk(['policy', 'trace', '--src', 'pod-1-2', '--dst', 'pod-2-1', '--dport', '80/TCP', '-o', 'json'])).stdout);
    assert.equal(denyJson.verdict, 'denied-by-deny-rule');
    assert.equal(denyJson.srcIdentity, p12.identity);
    assert.equal(denyJson.dstIdentity, p21.identity);

    // The node reaches its own pod (allow-localhost), though pod-2-1's ingress is in default deny.
    const host = (await cliOk(['policy', 'trace', '--src', 'host', '--dst', 'pod-2-1'])).stdout;
    assert.match(host, /^ALLOWED: /);
    assert.match(host, /allow-localhost/);
    // Labels work as well as pod names (a pod's full label set: its identity); the egress side is reported too.
    const labels = (await cliOk(['policy', 'trace', '--src', 'app=pod-1-1,role=frontend', '--dst', 'role=backend,app=pod-2-1', '--dport', '80/TCP'])).stdout;
    assert.match(labels, /^ALLOWED: /);
    assert.match(labels, /egress of .*: allowed: no policy selects it for egress/);
    assert.equal(JSON.parse((await cliOk(['policy', 'trace', '--src', 'app=pod-1-1,role=frontend', '--dst', 'pod-2-1', '--dport', '80/TCP', '-o', 'json'])).stdout).srcIdentity, p11.identity);

    // What the trace says is what the datapath does.
    assert.deepEqual(await webEnforced(), WEB_ENFORCED);
    assert.equal((await ping(node('node-2').netns, p21.ip!, { count: 1 })).ok, true, 'the node reaches its pod');
  });

  await t.test('identity list: reserved, the pods\' and (with a CIDR rule) the node-local CIDR identities', async (tt) => {
    const text = (await cliOk(['identity', 'list'])).stdout;
    assert.match(text, /^ID\s+LABELS$/m);
    assert.match(text, /^1\s+reserved:host$/m);
    assert.match(text, /^6\s+reserved:remote-node$/m);
    const roles: Record<string, string> = { 'pod-1-1': ' k8s:role=frontend', 'pod-1-2': ' k8s:role=backend', 'pod-2-1': ' k8s:role=backend' };
    for (const p of s.pods) assert.match(text, new RegExp(`^${p.identity}\\s+k8s:app=${p.name} k8s:io\\.kubernetes\\.pod\\.namespace=default${roles[p.name] ?? ''}$`, 'm'));
    await cliOk(['policy', 'import', file('cidr.yaml', `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: cidr}
spec:
  endpointSelector: {matchLabels: {app: pod-1-1}}
  egress: [{toCIDRSet: [{cidr: 192.0.2.0/24, except: [192.0.2.128/25]}]}]
`), '--wait']);
    tt.after(() => cli(['policy', 'delete', 'cidr', '--wait']));
    const ids = JSON.parse((await cliOk(['identity', 'list', '-o', 'json'])).stdout) as { id: number; labels: Record<string, string> }[];
    const cidrIds = ids.filter((i) => Object.keys(i.labels).some((k) => k.startsWith('cidr:')));
    assert.deepEqual(cidrIds.map((i) => Object.keys(i.labels).sort()), [['cidr:192.0.2.0/24', 'reserved:world'], ['cidr:192.0.2.128/25', 'reserved:world']]);
    assert.ok(cidrIds.every((i) => i.id >= 1 << 24), 'CIDR identities are node-local (>= 1<<24)');
    const ipcache = await membraneIn(node('node-1').netns, ['bpf', 'ipcache', 'list']);
    assert.match(ipcache, new RegExp(`^192\\.0\\.2\\.0/24\\s+identity=${cidrIds[0]!.id} `, 'm'), 'the prefix is in the ipcache with its identity');
  });

  await t.test('bpf policy get: the entries the engine computes (exact port, a range in blocks, a deny)', async (tt) => {
    await cliOk(['policy', 'import', file('web.yaml', WEB), '--wait']);
    tt.after(() => cli(['policy', 'delete', 'web', '--wait']));
    const n2 = node('node-2').netns;
    const got = JSON.parse(await membraneIn(n2, ['bpf', 'policy', 'get', String(p21.endpointID), '-o', 'json'])) as PolicyMapEntry[];
    // The engine on the same inputs, plus the agent's allow-localhost for an ingress-enforced endpoint.
    const universe = reservedUniverse();
    for (const i of JSON.parse((await cliOk(['identity', 'list', '-o', 'json'])).stdout) as { id: number; labels: Record<string, string> }[]) universe.set(i.id, i.labels);
    const engine = new PolicyEngine(parsePolicies(WEB, { source: 'web.yaml' }).policies, universe);
    const computed = engine.compute({ kind: 'endpoint', labels: universe.get(p21.identity!)! });
    assert.equal(computed.ingress, 'enforced');
    const want = [...computed.entries, { identity: 1, egress: false, protocol: 0, port: 0, portPrefixLen: 0, deny: false }];
    assert.deepEqual(got.map(key).sort(), want.map(key).sort());
    // The cases by name: 80 exact, 8000-8010 as 8000/13 (8000-8007), 8008/15, 8010/16, pod-1-2 denied on everything.
    const has = (e: Partial<PolicyMapEntry>) => got.some((g) => Object.entries(e).every(([k, v]) => g[k as keyof PolicyMapEntry] === v));
    assert.ok(has({ identity: p11.identity!, egress: false, protocol: TCP, port: 80, portPrefixLen: 16, deny: false }));
    assert.ok(has({ identity: p11.identity!, protocol: TCP, port: 8000, portPrefixLen: 13 }));
    assert.ok(has({ identity: p11.identity!, protocol: TCP, port: 8008, portPrefixLen: 15 }));
    assert.ok(has({ identity: p11.identity!, protocol: TCP, port: 8010, portPrefixLen: 16 }));
    assert.ok(has({ identity: p12.identity!, egress: false, protocol: 0, deny: true }));
    assert.ok(has({ identity: 0, egress: true, protocol: 0, deny: false }), 'egress not selected: allow-all');
    const text = await membraneIn(n2, ['bpf', 'policy', 'get', String(p21.endpointID)]);
    const from11 = `ingress\\s+${p11.identity} \\(\\d+\\)\\s+`;
    for (const line of [`${from11}TCP/80\\s+allow`, `${from11}TCP/8000-8007\\s+allow`, `${from11}TCP/8008-8009\\s+allow`, `${from11}TCP/8010\\s+allow`,
      `ingress\\s+${p12.identity} \\(\\d+\\)\\s+\\*\\s+deny`, 'ingress\\s+1 \\(reserved:host\\)\\s+\\*\\s+allow', 'egress\\s+ANY\\s+\\*\\s+allow']) {
      assert.match(text, new RegExp(`^${line}`, 'm'));
    }
    // A pod no policy selects: allow-all both ways. The host firewall: off.
    const open = JSON.parse(await membraneIn(n2, ['bpf', 'policy', 'get', String(p22.endpointID), '-o', 'json'])) as PolicyMapEntry[];
    assert.deepEqual(open.map(key).sort(), ['egress id=0 proto=0 port=0/0 allow', 'ingress id=0 proto=0 port=0/0 allow']);
    assert.match(await membraneIn(n2, ['bpf', 'policy', 'get', 'host']), /host firewall off/);
  });

  await t.test('bpf ct list: an established TCP connection on both nodes', async () => {
    const port = 7000 + Math.floor(Math.random() * 900);
    // A connection that stays open (the client sends, then waits; the server never reads stdin, so it
    // sends no FIN) so its entries are established, not closing. The client starts once the server
    // listens: a SYN before that is answered with a RST, whose entry is closing.
    const server = await nsStart(p21.netns, ['nc', '-l', '-n', '-v', '-d', String(port)], /Listening on/);
    const client = await nsStart(p11.netns, ['sh', '-c', `(head -c 200000 /dev/zero; sleep 8) | nc -v -n ${p21.ip} ${port}`], /succeeded/, { timeoutMs: 20_000 })
      .catch(async (e) => { await server.stop(); throw e; });
    try {
      const tuple = new RegExp(`^TCP (OUT|IN) ${p11.ip!.replace(/\./g, '\\.')}:\\d+ -> ${p21.ip!.replace(/\./g, '\\.')}:${port}\\s+(\\d+) s\\s+(\\S+)\\s+(\\d+)$`, 'm');
      let m1: RegExpExecArray | null = null;
      let m2: RegExpExecArray | null = null;
      for (let i = 0; i < 100 && !(m1 && m2 && /seen-non-syn/.test(m1[3]!) && /seen-non-syn/.test(m2[3]!)); i++) {
        await new Promise((r) => setTimeout(r, 50));
        m1 = tuple.exec(await membraneIn(node('node-1').netns, ['bpf', 'ct', 'list']));
        m2 = tuple.exec(await membraneIn(node('node-2').netns, ['bpf', 'ct', 'list']));
      }
      assert.ok(m1 && m2, 'both nodes track the connection');
      assert.equal(m1[1], 'OUT', 'the initiator\'s node: made at its egress');
      assert.equal(m2[1], 'IN', 'the responder\'s node: made at its ingress');
      for (const m of [m1, m2]) {
        assert.ok(Number(m[2]) > 60, `established: the long TCP lifetime (${m[2]} s left)`);
        assert.match(m[3]!, /seen-non-syn/);
        assert.doesNotMatch(m[3]!, /closing/);
      }
      assert.equal(Number(m2[4]), p11.identity, 'the IN entry carries the source identity (from the VNI)');
    } finally {
      await client.stop();
      await server.stop();
    }
  });

  await t.test('bad documents: exit 3, document, path, line and column named, nothing applied, the previous policy still enforced', async (tt) => {
    await cliOk(['policy', 'import', file('web.yaml', WEB), '--wait']);
    tt.after(() => cli(['policy', 'delete', 'web', '--wait']));
    const before = (await cliOk(['policy', 'list', '-o', 'json'])).stdout;
    for (const [i, b] of BAD.entries()) {
      const f = file(`bad-${i}.${b.text.startsWith('{') ? 'json' : 'yaml'}`, b.text);
      const r = await cli(['policy', 'import', f]);
      assert.equal(r.code, 3, `${b.what}: exit 3 (${r.stderr})`);
      assert.match(r.stderr, new RegExp(`^membrane policy import: import policy file ${f.replace(/\./g, '\\.')}: `), b.what);
      assert.match(r.stderr, b.want, b.what);
      assert.equal(r.stdout, '', `${b.what}: nothing reported as imported`);
      assert.equal((await cliOk(['policy', 'list', '-o', 'json'])).stdout, before, `${b.what}: the store is unchanged`);
    }
    // The agent refuses the same when a client skips the CLI's check.
    await assert.rejects(apiCall(s.nodes[1]!.apiSocket, 'POST', '/v1/policies', { documents: [parseYaml(BAD[3]!.text)] }),
      (e: Error & { code?: string }) => e.code === 'E_POLICY_INVALID' && /70000 is not a port/.test(e.message));
    assert.equal((await cliOk(['policy', 'list', '-o', 'json'])).stdout, before);
    assert.deepEqual(await webEnforced(), WEB_ENFORCED, 'the policy in force before is still enforced');
  });

  await t.test('a policy reaches both nodes\' maps (time printed)', async (tt) => {
    const f = file('reach.yaml', `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: reach}
spec:
  endpointSelector: {matchExpressions: [{key: app, operator: In, values: [pod-1-1, pod-2-1]}]}
  ingress: [{fromEndpoints: [{matchLabels: {app: pod-2-2}}], toPorts: [{ports: [{port: "9999", protocol: TCP}]}]}]
`);
    tt.after(() => cli(['policy', 'delete', 'reach', '--wait']));
    const targets = [[node('node-1'), p11], [node('node-2'), p21]] as const;
    const entry = (e: PolicyMapEntry) => e.identity === p22.identity && !e.egress && e.protocol === TCP && e.port === 9999 && !e.deny;
    const t0 = performance.now();
    const cliRun = cliOk(['policy', 'import', f]);
    const seen = new Map<string, number>();
    while (seen.size < targets.length && performance.now() - t0 < 30_000) {
      for (const [n, p] of targets) {
        if (!seen.has(n.name) && listEndpointPolicy(`${s.pinRoot}/${n.name}`, p.endpointID!).some(entry)) seen.set(n.name, performance.now() - t0);
      }
      await new Promise((r) => setTimeout(r, 2));
    }
    const r = await cliRun;
    assert.deepEqual([...seen.keys()].sort(), ['node-1', 'node-2'], 'both nodes\' maps hold the new entry');
    tt.diagnostic(`policy import -> entry in the maps (from the CLI's spawn, its ~0.1 s start included): ${[...seen].map(([n, ms]) => `${n} ${ms.toFixed(0)} ms`).join(', ')}; the CLI exited after ${r.ms.toFixed(0)} ms`);
  });

  await t.test('connectivity test passes with its policy scenarios, and leaves no policy behind', async () => {
    assert.deepEqual(await policies(), [], 'no policy in force before (the scenarios would skip)');
    const r = await lab(['connectivity', 'test', '--name', name, '-o', 'json']);
    const res = JSON.parse(r.stdout) as SuiteResult;
    // The policy scenarios are this file's; the rest of the suite is test/privileged/lab-connectivity.test.ts's
    // (its UDP burst loses datagrams when the machine is busy: reported here, not asserted).
    const failed = (policy: boolean) => res.scenarios.filter((x) => x.status === 'fail' && x.scenario.startsWith('policy/') === policy).map((x) => `${x.scenario} ${x.from} -> ${x.to}: ${x.measured}`);
    assert.deepEqual(failed(true), []);
    if (failed(false).length) t.diagnostic(`other scenarios failed: ${failed(false).join('; ')}`);
    else assert.equal(r.code, 0);
    const pol = res.scenarios.filter((x) => x.scenario.startsWith('policy/'));
    const skipped = pol.filter((x) => x.status === 'skip');
    // world needs an external host: without one the scenario does not exist (it is not in POLICY_SCENARIOS).
    assert.deepEqual(skipped.map((x) => x.scenario), []);
    for (const [sc] of POLICY_SCENARIOS) assert.ok(pol.some((x) => x.scenario === sc && x.status === 'pass'), `${sc} ran and passed`);
    assert.equal(pol.some((x) => x.scenario === 'policy/entity-world'), Boolean((s as { externalHost?: unknown }).externalHost), 'policy/entity-world only with an external host');
    for (const x of pol.filter((p) => p.status === 'pass' && p.scenario !== 'policy/drops')) {
      assert.ok(Number(x.values.checks) >= 2, `${x.scenario}: more than one check`);
    }
    // Every scenario with denied flows showed them dropped with the reason and as events with identities.
    for (const x of pol.filter((p) => !['policy/drops', 'policy/entity-world'].includes(p.scenario))) {
      assert.ok(Number(x.values.policyDrops) >= 2 && Number(x.values.dropEvents) >= 2, `${x.scenario} ${x.from}: denied packets counted (${x.values.policyDrops}) and seen as events (${x.values.dropEvents})`);
    }
    assert.deepEqual(await policies(), [], 'the scenarios removed their policies');
    for (const st of await Promise.all(s.nodes.map((n) => apiCall<PolicyStatus>(n.apiSocket, 'GET', '/v1/policy')))) {
      assert.deepEqual([st.policies, st.hostFirewall], [[], false]);
    }
    t.diagnostic(`connectivity test 2x2: ${res.scenarios.length} scenarios (${pol.length} policy) in ${(res.durationMs / 1000).toFixed(1)} s`);
  });

  await t.test('connectivity test skips the policy scenarios while other policies are in force, and leaves those alone', async (tt) => {
    // A policy of the lab's own that changes no verdict (pod-2-2 takes everything), so the rest of the suite passes.
    await cliOk(['policy', 'import', file('own.yaml', `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: own}
spec:
  endpointSelector: {matchLabels: {app: pod-2-2}}
  ingress: [{fromEntities: [all]}]
`), '--wait']);
    tt.after(() => cli(['policy', 'delete', 'own', '--wait']));
    const before = await policies();
    const r = await lab(['connectivity', 'test', '--name', name]);
    assert.doesNotMatch(r.stdout, /^FAIL\s+policy\//m, r.stdout);
    for (const [sc] of POLICY_SCENARIOS) {
      assert.match(r.stdout, new RegExp(`^SKIP\\s+${sc.replace(/\//g, '\\/')} .* other policies are in force \\(default/own\\)`, 'm'), sc);
    }
    assert.match(r.stdout, /^(PASS|FAIL)\s+pod-to-pod\/cross-node /m, 'the rest ran (whether it passed is lab-connectivity.test.ts\'s)');
    assert.deepEqual(await policies(), before, 'the lab\'s own policy is untouched');
  });

  await t.test('Ctrl-C during the policy scenarios removes their policies (exit 130)', async () => {
    const child = spawn(MEMBRANE, ['connectivity', 'test', '--name', name], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c) => { out += c; });
    child.stderr.on('data', (c) => { out += c; });
    const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
    // Wait until a scenario's policy is in the store, then interrupt.
    let seen: string[] = [];
    for (let i = 0; i < 600 && !seen.length && child.exitCode === null; i++) {
      seen = (await policies()).map((p) => p.name).filter((n) => n.startsWith(TEST_POLICY_PREFIX));
      if (!seen.length) await new Promise((r) => setTimeout(r, 25));
    }
    assert.ok(seen.length, `a test policy appeared (output so far: ${out})`);
    child.kill('SIGINT');
    assert.equal(await exited, 130, out);
    assert.deepEqual(await policies(), [], 'no test policy is left');
    for (const st of await Promise.all(s.nodes.map((n) => apiCall<PolicyStatus>(n.apiSocket, 'GET', '/v1/policy')))) {
      assert.deepEqual(st.policies, [], 'and every node dropped it');
    }
    assert.deepEqual(processesIn(s.pods.map((p) => p.netns)), [], 'no tool left running in a pod');
  });
});

/** Pids of processes whose network namespace is one of `netns` (by inode). */
function processesIn(netns: string[]): number[] {
  const inodes = new Set(netns.map((n) => `net:[${statSync(`/run/netns/${n}`).ino}]`));
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try { if (inodes.has(readlinkSync(`/proc/${d}/ns/net`))) out.push(Number(d)); } catch { /* gone */ }
  }
  return out;
}
