// What `membrane install` writes, as data (src/cli/install/plan.ts): the
// files and modes, the conflist naming the agent's socket, the unit's
// settings, and parseUnit reading back what unitFile wrote.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { validateNodeConfig } from '../../src/shared/config.ts';
import { AGENT_CAPABILITIES, conflist, parseUnit, planInstall, unitFile } from '../../src/cli/install/plan.ts';

const cfg = validateNodeConfig({ nodeName: 'h1', routerIP: '10.244.1.1', podCIDR: '10.244.1.0/24', stateDir: '/run/m1', bpffsRoot: '/sys/fs/bpf/m' }, 'test', { forceLegacyTc: false });

test('plan: plugin, config (only when given), conflist, unit, with their modes', () => {
  const files = planInstall({ cfg, configText: 'nodeName: h1\n', cniPlugin: Buffer.from('ELF'), membraneBin: '/opt/membrane/bin/membrane', nodeDir: '/usr/bin' });
  assert.deepEqual(files.map((f) => [f.path, f.mode.toString(8)]), [
    ['/opt/cni/bin/membrane-cni', '755'], ['/etc/membrane/config.yaml', '600'],
    ['/etc/cni/net.d/10-membrane.conflist', '644'], ['/etc/systemd/system/membrane-agent.service', '644'],
  ]);
  const without = planInstall({ cfg, cniPlugin: Buffer.from('ELF'), membraneBin: '/opt/membrane/bin/membrane', nodeDir: '/usr/bin', cniBinDir: '/usr/lib/cni', cniConfDir: '/etc/cni/alt' });
  assert.deepEqual(without.map((f) => f.path), ['/usr/lib/cni/membrane-cni', '/etc/cni/alt/10-membrane.conflist', '/etc/systemd/system/membrane-agent.service']);
});

test('conflist: network membrane, the agent socket of the config', () => {
  const c = JSON.parse(conflist(cfg));
  assert.equal(c.name, 'membrane');
  assert.deepEqual(c.plugins, [{ type: 'membrane-cni', agentSocket: '/run/m1/agent.sock' }]);
  assert.equal(c.cniVersion, '1.0.0');
});

test('unit: ordering, restart, limits, capabilities, bpffs mount; parseUnit reads it back', () => {
  const text = unitFile({ cfg, membraneBin: '/opt/membrane/bin/membrane', nodeDir: '/opt/node/bin' });
  for (const l of ['Restart=on-failure', 'KillSignal=SIGHUP', 'LimitNOFILE=1048576', 'Before=containerd.service crio.service podman.service kubelet.service', 'Documentation=file:///opt/membrane/docs/deploy.md']) {
    assert.ok(text.split('\n').includes(l), l);
  }
  const u = parseUnit(text);
  assert.deepEqual(u.execStart, ['/opt/membrane/bin/membrane', 'agent', '--config', '/etc/membrane/config.yaml']);
  assert.equal(u.env.PATH, '/opt/node/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin');
  assert.deepEqual(u.capabilities, [...AGENT_CAPABILITIES]);
  assert.match(u.execStartPre!, /mkdir -p -m 0700 \/sys\/fs\/bpf\/m && .*mount -t bpf -o mode=700 bpffs \/sys\/fs\/bpf\/m/);
  // systemd would read %T as a specifier and $( as a variable: the file doubles them, parseUnit gives what systemd runs.
  assert.ok(text.includes('"$$(stat -f -c %%T /sys/fs/bpf/m)" = bpf_fs'), 'escaped for systemd');
  assert.ok(u.execStartPre!.includes('"$(stat -f -c %T /sys/fs/bpf/m)" = bpf_fs'));
  // node on a standard directory: not repeated on PATH.
  assert.equal(parseUnit(unitFile({ cfg, membraneBin: '/x/bin/membrane', nodeDir: '/usr/bin' })).env.PATH, '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin');
});
