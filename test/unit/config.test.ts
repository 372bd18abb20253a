// Node config validation: defaults, every problem listed with its field.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfigText, validateNodeConfig } from '../../src/shared/config.ts';
import { defaults } from '../../src/shared/defaults.ts';
import { forwardedVariables, readEnv } from '../../src/shared/env.ts';
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

test('derived values are computed once, in the config: route MTU, paths, socket, store, lease TTL', () => {
  const c = validateNodeConfig({ ...base, deviceMTU: 9001 }, 'config', { forceLegacyTc: false });
  assert.equal(c.routeMTU, 8951, 'device MTU less the 50-byte VXLAN overhead');
  assert.deepEqual(c.paths, {
    pinDir: `${defaults.bpffsRoot}/node-1`, stateDir: defaults.stateDir,
    stateFile: `${defaults.stateDir}/endpoints.json`, apiSocket: '/run/membrane/agent.sock',
  });
  assert.deepEqual(c.store, { backend: 'sqlite', path: defaults.sqlitePath });
  assert.equal(c.leaseTTL, defaults.leaseTTL);
  assert.ok(Object.isFrozen(c.paths) && Object.isFrozen(c.store));

  const d = validateNodeConfig({ ...base, stateDir: '/tmp/x', leaseTTL: 30, store: { backend: 'etcd', endpoints: ['http://10.0.0.1:2379'] } }, 'config', { forceLegacyTc: false });
  assert.equal(d.paths.apiSocket, '/tmp/x/agent.sock', 'the socket follows stateDir');
  assert.equal(d.leaseTTL, 30);
  assert.deepEqual(d.store, { backend: 'etcd', endpoints: ['http://10.0.0.1:2379'] });
  assert.equal(validateNodeConfig({ ...base, apiSocket: '/tmp/a.sock' }).paths.apiSocket, '/tmp/a.sock');
  // The environment switch wins over the file (tests of lease expiry).
  assert.equal(validateNodeConfig({ ...base, leaseTTL: 30 }, 'config', { leaseTTL: 2, forceLegacyTc: true }).leaseTTL, 2);
  assert.equal(validateNodeConfig({ ...base }, 'config', { forceLegacyTc: true }).forceLegacyTc, true);
});

test('nodeIP inside podCIDR and a relative stateDir are config errors', () => {
  assert.throws(() => validateNodeConfig({ ...base, nodeIP: '10.244.2.7' }), /nodeIP: 10\.244\.2\.7 is inside podCIDR 10\.244\.2\.0\/24/);
  assert.throws(() => validateNodeConfig({ ...base, stateDir: 'state' }), /stateDir: must be an absolute path/);
  assert.throws(() => validateNodeConfig({ ...base, leaseTTL: 0 }), /leaseTTL: must be an integer in 1\.\.86400/);
});

test('environment switches: read once, a bad value names the variable', () => {
  assert.deepEqual(readEnv({ MEMBRANE_TIMING: '1', MEMBRANE_LEASE_TTL: '3', MEMBRANE_LAB: 'x' }),
    { timing: true, leaseTTL: 3, forceLegacyTc: false, libbpfDebug: false, agentSocket: undefined, lab: 'x' });
  assert.deepEqual(readEnv({}), { timing: false, leaseTTL: undefined, forceLegacyTc: false, libbpfDebug: false, agentSocket: undefined, lab: undefined });
  try {
    readEnv({ MEMBRANE_LEASE_TTL: '2s', MEMBRANE_FORCE_LEGACY_TC: 'yes' });
    assert.fail('should throw');
  } catch (e) {
    assert.ok(e instanceof ConfigError);
    assert.deepEqual(e.problems, [
      'MEMBRANE_LEASE_TTL: must be a whole number of seconds >= 1 (got "2s")',
      'MEMBRANE_FORCE_LEGACY_TC: must be 1 or 0 (got "yes")',
    ]);
  }
  // lab up hands its switches to its agents, but not the lab's own name.
  assert.deepEqual(forwardedVariables({ MEMBRANE_LEASE_TTL: '2', MEMBRANE_LAB: 'x', PATH: '/bin' }), { MEMBRANE_LEASE_TTL: '2' });
});

test('masquerade and routing mode: defaults, bad values, native needs a node IP', () => {
  const c = validateNodeConfig({ ...base });
  assert.equal(c.enableMasquerade, true);
  assert.equal(c.routingMode, 'tunnel');
  assert.equal(validateNodeConfig({ ...base, nodeIP: '10.13.0.11', routingMode: 'native', enableMasquerade: false }).routingMode, 'native');
  try {
    validateNodeConfig({ ...base, routingMode: 'direct', enableMasquerade: 'yes' });
    assert.fail('should throw');
  } catch (e) {
    assert.ok(e instanceof ConfigError);
    assert.deepEqual(e.problems.sort(), ['enableMasquerade: must be true or false (got "yes")', 'routingMode: must be "tunnel" or "native" (got "direct")']);
  }
  assert.throws(() => validateNodeConfig({ ...base, routingMode: 'native' }), (e: ConfigError) => e.problems.some((p) => /^nodeIP: required with routingMode native/.test(p)));
});
