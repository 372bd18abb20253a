// Policy trace (src/policy/trace.ts): the verdict of the source's egress and
// the destination's ingress, each with the rule that decided it, and the
// overall verdict. No root needed.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { securityLabels } from '../../src/agent/labels.ts';
import {
  ReservedIdentity as R, cidrIdentityLabels, parsePolicies, reservedLabels, reservedUniverse, tracePolicy, type Labels, type TracePeer,
} from '../../src/policy/index.ts';

const u = reservedUniverse();
u.set(256, securityLabels({ app: 'web' }, 'default'));
u.set(257, securityLabels({ app: 'db' }, 'default'));
u.set(258, securityLabels({ app: 'client' }, 'default'));
u.set((1 << 24) + 1, cidrIdentityLabels('10.0.0.0/8'));

const pod = (id: number, name: string): TracePeer => ({ kind: 'endpoint', identity: id, labels: u.get(id)!, name });
const WEB = pod(256, 'web');
const DB = pod(257, 'db');
const CLIENT = pod(258, 'client');

const { policies } = parsePolicies(`apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: db}
spec:
  endpointSelector: {matchLabels: {app: db}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: web}}]
    toPorts: [{ports: [{port: "5432", protocol: TCP}]}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web-egress}
specs:
- endpointSelector: {matchLabels: {app: web}}
  egress:
  - toEndpoints: [{matchLabels: {app: db}}]
  - toCIDR: [10.0.0.0/8]
- endpointSelector: {matchLabels: {app: web}}
  egressDeny:
  - toEndpoints: [{matchLabels: {app: db}}]
    toPorts: [{ports: [{port: "22", protocol: TCP}]}]
---
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: host-fw}
spec:
  nodeSelector: {}
  ingress:
  - fromEntities: [cluster]
    toPorts: [{ports: [{port: "10250", protocol: TCP}]}]
`);

describe('trace', () => {
  it('allowed: by the source\'s egress rule and the destination\'s ingress rule', () => {
    const t = tracePolicy(policies, u, { src: WEB, dst: DB, protocol: 'TCP', dport: 5432 });
    assert.equal(t.verdict, 'allowed');
    assert.equal(t.egress.text, 'allowed by CiliumNetworkPolicy default/web-egress specs[0].egress[0]');
    assert.deepEqual(t.egress.rule, { kind: 'CiliumNetworkPolicy', name: 'web-egress', namespace: 'default', rule: 0, rulePath: 'specs[0]', section: 'egress', item: 0, path: 'specs[0].egress[0]' });
    assert.equal(t.ingress.text, 'allowed by CiliumNetworkPolicy default/db spec.ingress[0]');
    assert.equal(t.text, 'web (identity 256) -> db (identity 257) TCP/5432: allowed');
  });

  it('denied by default at the destination, naming the rules that select it', () => {
    const t = tracePolicy(policies, u, { src: CLIENT, dst: DB, protocol: 'TCP', dport: 5432 });
    assert.equal(t.verdict, 'denied-by-default');
    assert.equal(t.egress.text, 'allowed: no policy selects it for egress');
    assert.equal(t.ingress.reason, 'default-deny');
    assert.equal(t.ingress.text, 'denied: default deny for ingress (selected by CiliumNetworkPolicy default/db spec) and no rule allows it');
    assert.equal(t.text, 'client (identity 258) -> db (identity 257) TCP/5432: denied at ingress');
  });

  it('denied by a deny rule at the source, checked before the destination', () => {
    const t = tracePolicy(policies, u, { src: WEB, dst: DB, protocol: 'TCP', dport: 22 });
    assert.equal(t.verdict, 'denied-by-deny-rule');
    assert.equal(t.egress.text, 'denied by CiliumNetworkPolicy default/web-egress specs[1].egressDeny[0]');
    assert.equal(t.ingress.reason, 'default-deny');
    assert.equal(t.text, 'web (identity 256) -> db (identity 257) TCP/22: denied at egress');
  });

  it('an outside address: its CIDR identity, or world; no policy of its own', () => {
    const a = tracePolicy(policies, u, { src: WEB, dst: { kind: 'address', address: '10.1.2.3' }, protocol: 'UDP', dport: 53 });
    assert.equal(a.dstIdentity, (1 << 24) + 1);
    assert.equal(a.verdict, 'allowed');
    assert.equal(a.egress.text, 'allowed by CiliumNetworkPolicy default/web-egress specs[0].egress[1]');
    assert.equal(a.ingress.reason, 'outside');
    const b = tracePolicy(policies, u, { src: WEB, dst: { kind: 'address', address: '1.1.1.1' }, protocol: 'ICMP' });
    assert.equal(b.dstIdentity, R.WORLD);
    assert.equal(b.verdict, 'denied-by-default');
    assert.equal(b.text, 'web (identity 256) -> 1.1.1.1 (identity 2) ICMP type 8: denied at egress');
    const c = tracePolicy(policies, u, { src: { kind: 'address', address: '1.1.1.1' }, dst: CLIENT, protocol: 'TCP', dport: 80 });
    assert.equal(c.srcIdentity, R.WORLD);
    assert.equal(c.egress.reason, 'outside');
    assert.equal(c.verdict, 'allowed');
  });

  it('the host firewall: a node as destination is judged by nodeSelector rules', () => {
    const host: TracePeer = { kind: 'host', identity: R.HOST, labels: reservedLabels(R.HOST)! as Labels, name: 'node-1' };
    assert.equal(tracePolicy(policies, u, { src: CLIENT, dst: host, protocol: 'TCP', dport: 10250 }).verdict, 'allowed');
    const t = tracePolicy(policies, u, { src: CLIENT, dst: host, protocol: 'TCP', dport: 22 });
    assert.equal(t.ingress.text, 'denied: default deny for ingress (selected by CiliumClusterwideNetworkPolicy host-fw spec) and no rule allows it');
  });

  it('ICMP: the destination port is the ICMP type, as the datapath looks it up (default 8, a ping)', () => {
    const { policies: p } = parsePolicies(`apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: ping}
spec:
  endpointSelector: {matchLabels: {app: db}}
  ingress: [{icmps: [{fields: [{type: EchoRequest}]}]}]
`);
    assert.equal(tracePolicy(p, u, { src: CLIENT, dst: DB, protocol: 'ICMP' }).verdict, 'allowed');
    assert.equal(tracePolicy(p, u, { src: CLIENT, dst: DB, protocol: 'ICMP', dport: 13 }).verdict, 'denied-by-default');
    assert.throws(() => tracePolicy(p, u, { src: CLIENT, dst: DB, protocol: 'ICMP', dport: 256 }), { code: 'E_USAGE', message: /ICMP type 256 is out of range \(0-255\)/ });
  });

  it('a peer missing from the universe is added with the labels given', () => {
    const newWeb: TracePeer = { kind: 'endpoint', identity: 300, labels: securityLabels({ app: 'web' }, 'default'), name: 'web-2' };
    assert.equal(tracePolicy(policies, u, { src: newWeb, dst: DB, protocol: 'TCP', dport: 5432 }).verdict, 'allowed');
  });

  it('two ends given by labels no identity has yet do not collide: each is traced with its own labels', () => {
    const labelsOnly = (app: string): TracePeer => ({ kind: 'endpoint', identity: 0, labels: securityLabels({ app, extra: 'x' }, 'default'), name: `app=${app}` });
    const r = tracePolicy(policies, u, { src: labelsOnly('web'), dst: labelsOnly('db'), protocol: 'TCP', dport: 5432 });
    assert.equal(r.verdict, 'allowed', r.text);
    assert.notEqual(r.srcIdentity, r.dstIdentity);
    assert.ok(![r.srcIdentity, r.dstIdentity].some((id) => u.has(id)), 'stand-ins are ids nobody has');
    assert.match(r.text, /^app=web \(labels no identity has yet\) -> app=db \(labels no identity has yet\) TCP\/5432: allowed$/);
    assert.equal(tracePolicy(policies, u, { src: labelsOnly('client'), dst: labelsOnly('db'), protocol: 'TCP', dport: 5432 }).verdict, 'denied-by-default');
  });

  it('refuses a bad address, protocol or port', () => {
    assert.throws(() => tracePolicy(policies, u, { src: WEB, dst: { kind: 'address', address: 'db' }, protocol: 'TCP', dport: 1 }),
      { code: 'E_INVALID_ADDRESS', message: /^trace policy: destination address "db": "db" is not a valid IPv4 address/ });
    assert.throws(() => tracePolicy(policies, u, { src: WEB, dst: DB, protocol: 'GRE' as 'TCP', dport: 1 }), { code: 'E_USAGE' });
    assert.equal(tracePolicy(policies, u, { src: WEB, dst: DB, protocol: 'SCTP', dport: 5432 }).text, 'web (identity 256) -> db (identity 257) SCTP/5432: denied at ingress');
    assert.throws(() => tracePolicy(policies, u, { src: WEB, dst: DB, protocol: 'TCP', dport: 70000 }), { code: 'E_USAGE' });
  });
});
