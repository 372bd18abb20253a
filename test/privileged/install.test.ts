// `membrane install --root R` / `uninstall --root R`: every file in the tree
// (plugin bytes and mode, the conflist naming the agent's socket, the node
// config, the unit's settings, the manifest), idempotence, refusing a file
// install did not write (nothing written then), an upgrade that rewrites
// only install's own unchanged files, and uninstall leaving R empty.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { stringify } from 'yaml';
import { buildOnce, MEMBRANE } from '../helpers/membrane.ts';
import { rootOnly } from '../helpers/skip.ts';
import { CNI_PLUGIN } from '../../src/lab/layout.ts';
import { AGENT_CAPABILITIES, parseUnit } from '../../src/cli/install/plan.ts';

const cfg = { nodeName: 'host-a', nodeIP: '192.168.1.11', routerIP: '10.244.1.1', podCIDR: '10.244.1.0/24', stateDir: '/var/run/membrane-a' };

function run(args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(MEMBRANE, args, { encoding: 'utf8' });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Every file under `dir`, relative, sorted. */
function tree(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(d, e.name), `${rel}/${e.name}`);
      else out.push(`${rel}/${e.name}`);
    }
  };
  walk(dir, '');
  return out.sort();
}

const mode = (p: string) => statSync(p).mode & 0o7777;

test('install --root: every file, idempotent, refuses what it did not write, upgrades its own, uninstall leaves nothing', { skip: rootOnly() }, (t) => {
  buildOnce();
  const dir = mkdtempSync(join(tmpdir(), 'membrane-install-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const root = `${dir}/root`;
  const cfgFile = `${dir}/node.yaml`;
  writeFileSync(cfgFile, stringify(cfg));

  const first = run(['install', '--root', root, '--config', cfgFile]);
  assert.equal(first.code, 0, first.stderr);
  assert.equal(first.stdout.match(/^created /gm)?.length, 4, first.stdout);
  assert.deepEqual(tree(root), [
    '/etc/cni/net.d/10-membrane.conflist', '/etc/membrane/config.yaml', '/etc/membrane/install-manifest.json',
    '/etc/systemd/system/membrane-agent.service', '/opt/cni/bin/membrane-cni',
  ]);

  // The plugin: the built binary, executable; it answers VERSION by itself.
  const plugin = `${root}/opt/cni/bin/membrane-cni`;
  assert.ok(readFileSync(plugin).equals(readFileSync(CNI_PLUGIN)));
  assert.equal(mode(plugin), 0o755);
  const version = JSON.parse(execFileSync(plugin, { env: { CNI_COMMAND: 'VERSION' }, input: '{"cniVersion":"1.0.0"}', encoding: 'utf8' }));
  assert.ok(version.supportedVersions.includes('1.0.0'));

  // The conflist: network membrane, the plugin, the agent's real socket (<stateDir>/agent.sock of this config).
  const conflist = JSON.parse(readFileSync(`${root}/etc/cni/net.d/10-membrane.conflist`, 'utf8'));
  assert.deepEqual(conflist, { cniVersion: '1.0.0', cniVersions: ['1.0.0', '1.1.0'], name: 'membrane', plugins: [{ type: 'membrane-cni', agentSocket: '/var/run/membrane-a/agent.sock' }] });
  assert.equal(mode(`${root}/etc/cni/net.d/10-membrane.conflist`), 0o644);

  // The node config, as given, root-only (it may hold a store password).
  assert.equal(readFileSync(`${root}/etc/membrane/config.yaml`, 'utf8'), readFileSync(cfgFile, 'utf8'));
  assert.equal(mode(`${root}/etc/membrane/config.yaml`), 0o600);

  // The unit.
  const unitText = readFileSync(`${root}/etc/systemd/system/membrane-agent.service`, 'utf8');
  for (const line of [
    'Restart=on-failure', 'KillSignal=SIGHUP', 'LimitNOFILE=1048576', 'LimitMEMLOCK=infinity', 'NoNewPrivileges=yes', 'WantedBy=multi-user.target',
    'Before=containerd.service crio.service podman.service kubelet.service',
  ]) assert.ok(unitText.split('\n').includes(line), `the unit has ${line}`);
  const unit = parseUnit(unitText);
  assert.deepEqual(unit.execStart.slice(1), ['agent', '--config', '/etc/membrane/config.yaml']);
  assert.ok(unit.execStart[0]!.endsWith('/bin/membrane') && existsSync(unit.execStart[0]!), 'ExecStart runs this membrane');
  assert.ok(unit.env.PATH!.split(':').some((d) => existsSync(`${d}/node`)), 'PATH finds node');
  assert.deepEqual(unit.capabilities, [...AGENT_CAPABILITIES]);
  assert.match(unit.execStartPre!, /mount -t bpf -o mode=700 bpffs \/run\/membrane\/bpffs/);
  assert.equal(mode(`${root}/etc/membrane/install-manifest.json`), 0o600);

  // Idempotent: nothing rewritten.
  const before = tree(root).map((f) => [f, statSync(`${root}${f}`).mtimeMs]);
  const again = run(['install', '--root', root, '--config', cfgFile]);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(again.stdout.match(/^unchanged /gm)?.length, 4, again.stdout);
  assert.deepEqual(tree(root).map((f) => [f, statSync(`${root}${f}`).mtimeMs]), before);

  // An upgrade (here: a new stateDir): install's own unchanged files are rewritten.
  writeFileSync(cfgFile, stringify({ ...cfg, stateDir: '/var/run/membrane-b' }));
  const up = run(['install', '--root', root, '--config', cfgFile]);
  assert.equal(up.code, 0, up.stderr);
  assert.match(up.stdout, /^updated +\S+\/etc\/cni\/net\.d\/10-membrane\.conflist/m);
  assert.match(up.stdout, /^updated +\S+\/etc\/membrane\/config\.yaml/m);
  assert.equal(JSON.parse(readFileSync(`${root}/etc/cni/net.d/10-membrane.conflist`, 'utf8')).plugins[0].agentSocket, '/var/run/membrane-b/agent.sock');

  // A file of install's that an operator changed is not overwritten (E_INSTALL, exit 1, the path named).
  writeFileSync(`${root}/etc/cni/net.d/10-membrane.conflist`, '{"edited": true}\n');
  writeFileSync(cfgFile, stringify({ ...cfg, stateDir: '/var/run/membrane-c' }));
  const edited = run(['install', '--root', root, '--config', cfgFile]);
  assert.equal(edited.code, 1);
  assert.match(edited.stderr, /10-membrane\.conflist is in the way \(changed since install wrote it\)/);
  assert.match(edited.stderr, /hint: install never overwrites a file it did not write/);
  assert.match(readFileSync(`${root}/etc/membrane/config.yaml`, 'utf8'), /membrane-b/, 'nothing was written: the config is still the previous one');

  // uninstall: what install wrote goes; the edited file stays (reported), and with it its directories.
  const un = run(['uninstall', '--root', root]);
  assert.equal(un.code, 0, un.stderr);
  assert.match(un.stdout, /kept +\S+10-membrane\.conflist \(changed since install wrote it\)/);
  assert.deepEqual(tree(root), ['/etc/cni/net.d/10-membrane.conflist']);
  rmSync(`${root}/etc`, { recursive: true });
  assert.deepEqual(readdirSync(root), [], 'nothing else is left under the root');
  const twice = run(['uninstall', '--root', root]);
  assert.equal(twice.code, 0);
  assert.match(twice.stdout, /nothing installed/);

  // A file in the way that install never wrote: refused before anything is written.
  const fresh = `${dir}/fresh`;
  mkdirSync(`${fresh}/etc/cni/net.d`, { recursive: true });
  writeFileSync(`${fresh}/etc/cni/net.d/10-membrane.conflist`, '{"name":"someone-elses"}\n');
  chmodSync(`${fresh}/etc/cni/net.d/10-membrane.conflist`, 0o644);
  const foreign = run(['install', '--root', fresh, '--config', cfgFile, '-v']);
  assert.equal(foreign.code, 1);
  assert.match(foreign.stderr, /E_INSTALL/);
  assert.match(foreign.stderr, /fresh\/etc\/cni\/net\.d\/10-membrane\.conflist is in the way \(not written by membrane install\)/);
  assert.deepEqual(tree(fresh), ['/etc/cni/net.d/10-membrane.conflist'], 'nothing was written');
  assert.equal(readFileSync(`${fresh}/etc/cni/net.d/10-membrane.conflist`, 'utf8'), '{"name":"someone-elses"}\n');

  // No config given and none there: a usage error that says what to do.
  const none = run(['install', '--root', `${dir}/empty`]);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /no node config: \S+\/etc\/membrane\/config\.yaml does not exist and no --config was given/);
});
