// Selectors and identities (src/policy/selector.ts, labels.ts): label
// sources, Kubernetes operators, namespace scoping as Cilium does it, and the
// reserved identities agreeing with the datapath's. No root needed.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { securityLabels } from '../../src/agent/labels.ts';
import * as dp from '../../src/datapath/maps/identities.ts';
import {
  PolicyEngine, ReservedIdentity, indexLabels, makeSelector, parsePolicies, reservedLabels, reservedUniverse, selectorMatches,
} from '../../src/policy/index.ts';

const web = securityLabels({ app: 'web', tier: 'front' }, 'default');

describe('selectors', () => {
  it('a key without a source matches any source; with a source only that one', () => {
    assert.ok(selectorMatches(makeSelector({ app: 'web' }), web));
    assert.ok(selectorMatches(makeSelector({ 'k8s:app': 'web' }), web));
    assert.ok(selectorMatches(makeSelector({ 'any:app': 'web' }), web));
    assert.ok(!selectorMatches(makeSelector({ 'container:app': 'web' }), web));
    assert.ok(selectorMatches(makeSelector({ app: 'web' }), { 'container:app': 'web' }));
    assert.ok(!selectorMatches(makeSelector({ app: 'db' }), web));
  });

  it('reads a label set\'s keys without a source as k8s, as the store does', () => {
    assert.ok(selectorMatches(makeSelector({ 'k8s:app': 'web' }), { app: 'web' }));
  });

  it('matches reserved labels by their empty value', () => {
    assert.ok(selectorMatches(makeSelector({ 'reserved:host': '' }), reservedLabels(ReservedIdentity.HOST)!));
    assert.ok(!selectorMatches(makeSelector({ 'reserved:host': '' }), web));
    assert.ok(selectorMatches(makeSelector({ 'reserved:remote-node': '' }), reservedLabels(ReservedIdentity.KUBE_APISERVER)!));
  });

  it('follows Kubernetes operator semantics, NotIn and DoesNotExist matching an absent label', () => {
    const m = (op: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist', values: string[], labels = web) =>
      selectorMatches(makeSelector({}, [{ key: 'tier', operator: op, values }]), labels);
    assert.deepEqual([m('In', ['front', 'back']), m('In', ['back']), m('In', ['front'], {})], [true, false, false]);
    assert.deepEqual([m('NotIn', ['back']), m('NotIn', ['front']), m('NotIn', ['front'], {})], [true, false, true]);
    assert.deepEqual([m('Exists', []), m('Exists', [], {})], [true, false]);
    assert.deepEqual([m('DoesNotExist', []), m('DoesNotExist', [], {})], [false, true]);
  });

  it('needs every requirement; the empty selector selects everything', () => {
    assert.ok(selectorMatches(makeSelector({ app: 'web' }, [{ key: 'tier', operator: 'Exists' }]), web));
    assert.ok(!selectorMatches(makeSelector({ app: 'web' }, [{ key: 'tier', operator: 'DoesNotExist' }]), web));
    assert.ok(selectorMatches(makeSelector(), {}));
    assert.ok(selectorMatches(makeSelector(), indexLabels(web)));
  });
});

describe('namespaces, as Cilium scopes selectors', () => {
  const universe = reservedUniverse();
  universe.set(256, securityLabels({ app: 'web' }, 'default'));
  universe.set(257, securityLabels({ app: 'web' }, 'prod'));
  universe.set(258, securityLabels({ app: 'db' }, 'prod'));
  const { policies } = parsePolicies(`apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: prod-web, namespace: prod}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{}]
  - fromEndpoints: [{matchLabels: {io.kubernetes.pod.namespace: default}}]
  - fromEndpoints: [{matchLabels: {"reserved:host": ""}}]
---
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: everywhere}
spec:
  endpointSelector: {matchLabels: {app: db}}
  ingress:
  - fromEndpoints: [{}]
`);
  const engine = new PolicyEngine(policies, universe);

  it('a CNP\'s endpointSelector selects pods of its namespace only', () => {
    assert.deepEqual(engine.selectingRules({ kind: 'endpoint', labels: universe.get(257)! }).map((r) => r.policy.name), ['prod-web']);
    assert.deepEqual(engine.selectingRules({ kind: 'endpoint', labels: universe.get(256)! }).map((r) => r.policy.name), []);
  });

  it('a CNP\'s peer selector selects its namespace unless it names one; a reserved label as written', () => {
    const items = policies[0]!.rules[0]!.ingress;
    assert.deepEqual(engine.peersOf(items[0]!), [257, 258]);
    assert.deepEqual(engine.peersOf(items[1]!), [256]);
    assert.deepEqual(engine.peersOf(items[2]!), [ReservedIdentity.HOST]);
  });

  it('a CCNP\'s empty peer selector selects every pod and nothing reserved', () => {
    assert.deepEqual(engine.peersOf(policies[1]!.rules[0]!.ingress[0]!), [256, 257, 258]);
  });

  it('an endpointSelector never selects the node; a nodeSelector never selects a pod', () => {
    const { policies: p } = parsePolicies(`apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: both}
specs:
- {endpointSelector: {}, ingress: [{}]}
- {nodeSelector: {}, egress: [{}]}
`);
    const e = new PolicyEngine(p, universe);
    assert.deepEqual(e.selectingRules({ kind: 'endpoint', labels: universe.get(256)! }).map((r) => r.rule.path), ['specs[0]']);
    assert.deepEqual(e.selectingRules({ kind: 'host', labels: { 'reserved:host': '' } }).map((r) => r.rule.path), ['specs[1]']);
  });
});

describe('reserved identities', () => {
  it('agree with the datapath\'s numbering (src/datapath/maps/identities.ts)', () => {
    assert.deepEqual(
      Object.fromEntries([...reservedUniverse().keys()].map((id) => [id, dp.identityName(id)])),
      Object.fromEntries([...reservedUniverse().entries()].map(([id, l]) => [id, Object.keys(l)[0]])),
    );
    assert.equal(ReservedIdentity.HOST, dp.IDENTITY_HOST);
    assert.equal(ReservedIdentity.WORLD, dp.IDENTITY_WORLD);
    assert.equal(ReservedIdentity.REMOTE_NODE, dp.IDENTITY_REMOTE_NODE);
    assert.equal(ReservedIdentity.KUBE_APISERVER, dp.IDENTITY_KUBE_APISERVER);
    assert.equal(ReservedIdentity.INGRESS, dp.IDENTITY_INGRESS);
  });
});
