// Node config validation: defaults, every problem listed with its field.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfigText, validateNodeConfig } from '../../src/shared/config.ts';
import { ConfigError } from '../../src/shared/errors.ts';

const base = { nodeName: 'node-1', routerIP: '10.244.2.161', podCIDR: '10.244.2.0/24' };

test('applies the defaults in one place', () => {
  const c = validateNodeConfig({ ...base });
  assert.equal(c.deviceMTU, 1500);
  assert.equal(c.tunnelPort, 8472);
  assert.equal(c.tunnelSourcePortRange, '0-0');
  assert.equal(c.enableEndpointRoutes, false);
  assert.equal(c.routeMetric, 0);
  assert.ok(Object.isFrozen(c));
});

test('lists every problem, each naming its field', () => {
  try {
    validateNodeConfig({ ...base, deviceMTU: 100, tunnelPort: 0, bogus: 1, remoteNodes: [{ podCIDR: '10.244.2.0/25', nodeIP: 'x' }] });
    assert.fail('should throw');
  } catch (e) {
    assert.ok(e instanceof ConfigError);
    assert.deepEqual(e.problems.map((p) => p.split(':')[0]).sort(), ['bogus', 'deviceMTU', 'remoteNodes[0].nodeIP', 'remoteNodes[0].podCIDR', 'tunnelPort']);
  }
});

test('source port range and router IP placement', () => {
  assert.deepEqual([validateNodeConfig({ ...base, tunnelSourcePortRange: '40000-50000' }).tunnelSrcPortLow], [40000]);
  assert.throws(() => validateNodeConfig({ ...base, tunnelSourcePortRange: '0-10' }), /tunnelSourcePortRange/);
  assert.throws(() => validateNodeConfig({ ...base, routerIP: '10.244.2.0' }), /routerIP: 10\.244\.2\.0 is the network address/);
  assert.throws(() => validateNodeConfig({ ...base, store: { backend: 'redis' } }), /store\.backend: must be "sqlite" or "etcd"/);
});

test('YAML syntax errors name the line', () => {
  assert.throws(() => parseConfigText('nodeName: a\nrouterIP: [1\n', 'f.yaml'), /load config f\.yaml: malformed YAML at line \d+/);
  assert.throws(() => parseConfigText('- a\n- b\n', 'f.yaml'), /must be a YAML mapping/);
});
