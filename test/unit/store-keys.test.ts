// Cilium's kvstore key layout and the value codecs (pure, no store needed).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  decodeIdentityId, decodeIpIdentity, decodeNode, encodeIpIdentity, encodeNode, formatLabelKey,
  identityIdKey, identityLockKey, identityValueKey, identityValuePrefix, ipKey, ipMetadata, maskFromPrefixLength,
  nodeAddress, nodeKey, nodesPrefix, normalizeLabels, parseIdentityIdKey, parseIdentityValueKey, parseIpKey,
  parseLabelKey, parseNodeKey, parsePolicyKey, policyKey, prefixLengthFromMask, type Labels, type NodeValue,
} from '../../src/store/keys.ts';

test('keys follow the cilium/state layout and parse back', () => {
  assert.equal(nodeKey('default', 'node-1'), 'cilium/state/nodes/v1/default/node-1');
  assert.deepEqual(parseNodeKey('cilium/state/nodes/v1/default/node-1'), { cluster: 'default', node: 'node-1' });
  assert.equal(parseNodeKey('cilium/state/nodes/v1/default/a/b'), undefined);
  assert.equal(nodesPrefix('c1'), 'cilium/state/nodes/v1/c1/');
  assert.equal(ipKey('10.1.2.3'), 'cilium/state/ip/v1/default/10.1.2.3');
  assert.deepEqual(parseIpKey('cilium/state/ip/v1/default/fd00::1'), { namespace: 'default', ip: 'fd00::1' });
  assert.equal(parseIpKey('cilium/state/ip/v1/default/not-an-ip'), undefined);
  assert.equal(identityIdKey(256), 'cilium/state/identities/v1/id/256');
  assert.equal(parseIdentityIdKey('cilium/state/identities/v1/id/256'), 256);
  assert.equal(parseIdentityIdKey('cilium/state/identities/v1/id/0256'), undefined);
  const lk = 'k8s:app.kubernetes.io/name=web;k8s:io.kubernetes.pod.namespace=default;';
  assert.equal(identityValueKey(lk, '192.168.0.2'), `cilium/state/identities/v1/value/${lk}/192.168.0.2`);
  assert.equal(identityValuePrefix(lk), `cilium/state/identities/v1/value/${lk}/`);
  assert.deepEqual(parseIdentityValueKey(identityValueKey(lk, '192.168.0.2')), { labelKey: lk, node: '192.168.0.2' });
  assert.equal(identityLockKey(lk), `cilium/state/identities/v1/locks/${lk}`);
  assert.equal(decodeIdentityId('257'), 257);
  assert.equal(decodeIdentityId('x'), undefined);
  assert.equal(policyKey('allow-web', 'default'), 'cilium/state/policies/v1/cnp/default/allow-web');
  assert.equal(policyKey('host-fw'), 'cilium/state/policies/v1/ccnp/host-fw');
  assert.deepEqual(parsePolicyKey(policyKey('allow-web', 'prod')), { namespace: 'prod', name: 'allow-web' });
  assert.deepEqual(parsePolicyKey(policyKey('host-fw')), { name: 'host-fw' });
  assert.equal(parsePolicyKey('cilium/state/policies/v1/cnp/only-ns'), undefined);
  assert.throws(() => policyKey('a/b', 'default'), (e: any) => e.code === 'E_STORE_KEY');
});

test('keys refuse segments that would collide with other keys', () => {
  assert.throws(() => nodeKey('default', 'a/b'), (e: any) => e.code === 'E_STORE_KEY' && /"a\/b"/.test(e.message));
  assert.throws(() => nodeKey('', 'n'), (e: any) => e.code === 'E_STORE_KEY');
  assert.throws(() => ipKey('10.1.2.0/24'), (e: any) => e.code === 'E_STORE_KEY');
  assert.throws(() => identityValueKey('k8s:a=b;', 'x/y'), (e: any) => e.code === 'E_STORE_KEY');
});

test('label sets serialise as sorted source:key=value; and parse back', () => {
  assert.equal(formatLabelKey({ app: 'web' }), 'k8s:app=web;');
  const labels = { 'k8s:io.kubernetes.pod.namespace': 'default', tier: 'front', app: 'web', 'reserved:host': '' };
  const key = formatLabelKey(labels);
  // Ordered by key, whatever the source (Cilium sorts its key-indexed label map).
  assert.equal(key, 'k8s:app=web;reserved:host=;k8s:io.kubernetes.pod.namespace=default;k8s:tier=front;');
  // Insertion order does not matter.
  assert.equal(formatLabelKey({ tier: 'front', 'reserved:host': '', app: 'web', 'k8s:io.kubernetes.pod.namespace': 'default' }), key);
  assert.deepEqual(parseLabelKey(key), { 'k8s:app': 'web', 'k8s:io.kubernetes.pod.namespace': 'default', 'k8s:tier': 'front', 'reserved:host': '' });
  assert.deepEqual(normalizeLabels({ app: 'web' }), { 'k8s:app': 'web' });
  // Keys compare as strings: "a" < "a.b" < "ab" (sorting the serialised text would put "a.b=" first).
  assert.equal(formatLabelKey({ ab: '1', 'a.b': '2', a: '3' }), 'k8s:a=3;k8s:a.b=2;k8s:ab=1;');
});

test('label sets that could not be parsed back are refused', () => {
  const bads: Labels[] = [{}, { 'a;b': 'x' }, { 'a=b': 'x' }, { app: 'x;y' }, { ':app': 'x' }, { 'k8s:': 'x' }];
  for (const bad of bads) {
    assert.throws(() => formatLabelKey(bad), (e: any) => e.code === 'E_STORE_KEY', JSON.stringify(bad));
  }
  assert.throws(() => parseLabelKey('k8s:app=web'), (e: any) => e.code === 'E_STORE_KEY');
  assert.throws(() => parseLabelKey('app=web;'), (e: any) => e.code === 'E_STORE_KEY');
});

test('node values round-trip and accept Cilium\'s {IP, Mask} CIDR', () => {
  const n: NodeValue = {
    Name: 'node-1', Cluster: 'default',
    IPAddresses: [{ Type: 'InternalIP', IP: '192.168.50.2' }, { Type: 'CiliumInternalIP', IP: '10.1.1.1' }],
    IPv4AllocCIDR: '10.1.1.0/24', TunnelProtocol: 'vxlan', TunnelPort: 8472, BootID: 'b1',
  };
  const text = encodeNode(n);
  assert.deepEqual(JSON.parse(text).IPAddresses[0], { Type: 'InternalIP', IP: '192.168.50.2' });
  assert.deepEqual(decodeNode(text), n);
  assert.equal(nodeAddress(n, 'InternalIP'), '192.168.50.2');
  assert.equal(nodeAddress(n, 'CiliumInternalIP'), '10.1.1.1');
  assert.equal(nodeAddress(n, 'ExternalIP'), undefined);
  const cilium = { ...n, IPv4AllocCIDR: { IP: '10.1.1.0', Mask: '////AA==' }, Source: 'local' };
  const d = decodeNode(JSON.stringify(cilium));
  assert.equal(d.IPv4AllocCIDR, '10.1.1.0/24');
  assert.equal((d as unknown as { Source: string }).Source, 'local', 'unknown fields are kept');
});

test('bad node values are refused naming the key and the field', () => {
  const key = 'cilium/state/nodes/v1/default/node-1';
  const base = { Name: 'n', Cluster: 'default', IPAddresses: [], IPv4AllocCIDR: '10.1.0.0/24' };
  const cases: [unknown, RegExp][] = [
    ['{', /invalid JSON/],
    [[], /not a JSON object/],
    [{ ...base, Name: '' }, /Name/],
    [{ ...base, IPAddresses: [{ Type: 'Bogus', IP: '1.2.3.4' }] }, /IPAddresses/],
    [{ ...base, IPAddresses: [{ Type: 'InternalIP', IP: '1.2.3' }] }, /IPAddresses/],
    [{ ...base, IPv4AllocCIDR: '10.1.0.0/33' }, /IPv4AllocCIDR/],
    [{ ...base, TunnelPort: 70000 }, /TunnelPort/],
  ];
  for (const [v, re] of cases) {
    const text = typeof v === 'string' ? v : JSON.stringify(v);
    assert.throws(() => decodeNode(text, key), (e: any) => e.code === 'E_STORE_DECODE' && e.message.startsWith(`decode node ${key}: `) && re.test(e.message), text);
  }
});

test('ipcache values round-trip with Go-style masks', () => {
  assert.equal(maskFromPrefixLength(24, 4), '////AA==');
  assert.equal(maskFromPrefixLength(32, 4), '/////w==');
  assert.equal(prefixLengthFromMask('////AA=='), 24);
  assert.equal(prefixLengthFromMask(maskFromPrefixLength(64, 6)), 64);
  assert.equal(prefixLengthFromMask('/wD/AA=='), undefined, 'non-contiguous');
  const v = {
    IP: '10.1.1.23', Mask: null, HostIP: '192.168.50.2', ID: 256, Key: 0,
    Metadata: ipMetadata('node-1', 1234), K8sNamespace: 'default', K8sPodName: 'web-0',
  };
  assert.equal(v.Metadata, 'cilium-global:default:node-1:1234');
  assert.deepEqual(decodeIpIdentity(encodeIpIdentity(v)), v);
  assert.equal(decodeIpIdentity(JSON.stringify({ ...v, Mask: undefined })).Mask, null);
  assert.throws(() => decodeIpIdentity(JSON.stringify({ ...v, HostIP: 'x' }), 'k'), (e: any) => e.code === 'E_STORE_DECODE' && /HostIP/.test(e.message));
  assert.throws(() => decodeIpIdentity(JSON.stringify({ ...v, ID: -1 })), (e: any) => e.code === 'E_STORE_DECODE' && /ID/.test(e.message));
  assert.throws(() => decodeIpIdentity(JSON.stringify({ ...v, Mask: 'zz' })), (e: any) => e.code === 'E_STORE_DECODE' && /Mask/.test(e.message));
});
