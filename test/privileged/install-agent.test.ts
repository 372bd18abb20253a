// End to end on one node netns driven as if it were a host: `membrane
// install --root R`, then the agent started exactly as the installed unit
// starts it (its ExecStartPre, ExecStart and Environment, with the unit's
// capability bounding set, and R/etc laid over /etc in a private mount
// namespace so /etc/membrane/config.yaml is the installed file); a pod
// attached through the installed conflist and plugin; SIGHUP (the unit's
// KillSignal) stops the agent cleanly; `uninstall --root R --purge` then
// leaves nothing: no device but the netns's own, no program (bpftool net),
// no pins, no bpffs (the one ExecStartPre mounted is unmounted), no state,
// no file under R.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { stringify } from 'yaml';
import { installedUnit, startAsUnit } from '../helpers/unit.ts';
import { runConflist } from '../../src/cni/runtime.ts';
import { buildOnce, MEMBRANE } from '../helpers/membrane.ts';
import { ipJson, makeNetns, nsExec, uniqueName } from '../helpers/netns.ts';
import { rootOnly } from '../helpers/skip.ts';

/** CapEff of a process as a bigint. */
function capEff(pid: number): bigint {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('CapEff:'))!;
  return BigInt(`0x${line.split(/\s+/)[1]}`);
}

/** Linux capability numbers (uapi/linux/capability.h) of the ones the unit names. */
const CAP_NUM: Record<string, number> = { CAP_NET_ADMIN: 12, CAP_SYS_ADMIN: 21, CAP_PERFMON: 38, CAP_BPF: 39 };

test('installed unit runs the agent in a node netns; a pod through the installed conflist; uninstall --purge leaves nothing', { skip: rootOnly() }, async (t) => {
  buildOnce();
  const dir = mkdtempSync(join(tmpdir(), 'membrane-inst-e2e-'));
  // A bpffs of the node's own, which the unit's ExecStartPre mounts (nothing is mounted there yet) and the purge unmounts.
  const bpffsRoot = `${dir}/bpffs`;
  t.after(() => {
    spawnSync('umount', [bpffsRoot], { stdio: 'ignore' });
    rmSync(dir, { recursive: true, force: true });
  });
  const root = `${dir}/root`;
  const ns = makeNetns(t, 'ih');
  const podNs = makeNetns(t, 'ip');
  execFileSync('ip', ['-n', ns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth1']);
  execFileSync('ip', ['-n', ns, 'addr', 'add', '10.13.91.5/24', 'dev', 'eth0']);
  for (const d of ['eth0', 'eth1']) execFileSync('ip', ['-n', ns, 'link', 'set', d, 'up']);
  // A bpffs root of this test's own (a directory on the project's bpffs), so the purge can remove it whole.
  const nodeName = `host-${uniqueName('')}`;
  const stateDir = `${dir}/state`;
  const cfgFile = `${dir}/node.yaml`;
  writeFileSync(cfgFile, stringify({
    nodeName, nodeIP: '10.13.91.5', routerIP: '10.244.91.1', podCIDR: '10.244.91.0/24', stateDir, bpffsRoot,
    store: { backend: 'sqlite', path: `${stateDir}/cluster.db` },
  }));
  execFileSync(MEMBRANE, ['install', '--root', root, '--config', cfgFile]);

  const unit = installedUnit(root);
  const conflistPath = `${root}/etc/cni/net.d/10-membrane.conflist`;
  const socket = JSON.parse(readFileSync(conflistPath, 'utf8')).plugins[0].agentSocket as string;
  assert.equal(socket, `${stateDir}/agent.sock`);

  // As systemd would: ExecStartPre (mounts the bpffs), then ExecStart with only the unit's environment and capabilities.
  const agent = await startAsUnit(t, root, ns, socket);
  assert.equal(execFileSync('stat', ['-f', '-c', '%T', bpffsRoot], { encoding: 'utf8' }).trim(), 'bpf_fs', 'ExecStartPre mounted a bpffs at the node\'s bpffsRoot');
  assert.equal(statSync(bpffsRoot).mode & 0o777, 0o700);
  const log = agent.log;
  // It runs with the unit's capabilities and no others (those this machine grants at all: a container may withhold some).
  const want = unit.capabilities.reduce((m, c) => m | (1n << BigInt(CAP_NUM[c]!)), 0n) & capEff(process.pid);
  assert.equal(capEff(agent.pid).toString(16), want.toString(16), 'CapEff is the unit\'s bounding set');
  assert.match(readFileSync(`/proc/${agent.pid}/cmdline`, 'utf8').split('\0').join(' '), /agent --config \/etc\/membrane\/config\.yaml/);

  // A pod through the installed conflist and plugin, from the node netns, as a runtime does.
  const add = await runConflist(conflistPath, 'ADD', {
    cniPath: `${root}/opt/cni/bin`, containerID: `ctr-${podNs}`, netns: `/run/netns/${podNs}`, ifname: 'eth0',
    args: { K8S_POD_NAMESPACE: 'default', K8S_POD_NAME: 'installed-pod' }, fromNetns: ns,
  });
  assert.equal(add.exitCode, 0, add.stdoutText + add.stderr);
  const podIP = (add.stdout.ips[0].address as string).split('/')[0]!;
  assert.match(podIP, /^10\.244\.91\./);
  nsExec(ns, ['ping', '-c', '1', '-W', '2', podIP]);
  nsExec(podNs, ['ping', '-c', '1', '-W', '2', '10.244.91.1']);

  // A purge while the agent runs is refused (it would re-create what the purge removes), changing nothing.
  const early = spawnSync('nsenter', [`--net=/run/netns/${ns}`, MEMBRANE, 'uninstall', '--root', root, '--purge'], { encoding: 'utf8' });
  assert.equal(early.status, 1);
  assert.match(early.stderr, new RegExp(`uninstall --purge node ${nodeName}: its agent \\(pid ${agent.pid}\\) is still running`));
  assert.match(early.stderr, /hint: stop it first: systemctl stop membrane-agent\.service/);
  assert.ok(existsSync(`${root}/etc/membrane/install-manifest.json`), 'nothing was uninstalled');

  // The unit's KillSignal: the agent stops cleanly (exit 0) and leaves the datapath in place.
  assert.equal(await agent.stop(), 0, log());
  assert.ok(ipJson<{ ifname: string }[]>(ns, ['link', 'show']).some((l) => l.ifname === 'cilium_host'), 'datapath stays after a stop');

  // uninstall --purge in the node netns: nothing left.
  // Run as on a host: in the node's network namespace, in this machine's mount namespace (not `ip netns exec`'s own).
  const out = execFileSync('nsenter', [`--net=/run/netns/${ns}`, MEMBRANE, 'uninstall', '--root', root, '--purge'], { encoding: 'utf8' });
  assert.match(out, new RegExp(`purged node ${nodeName}: devices lxc[0-9a-f]+, cilium_vxlan, cilium_host;`));
  assert.deepEqual(ipJson<{ ifname: string }[]>(ns, ['link', 'show']).map((l) => l.ifname).sort(), ['eth0', 'eth1', 'lo']);
  const net = JSON.parse(nsExec(ns, ['bpftool', '-j', 'net', 'show']))[0];
  assert.deepEqual([net.xdp, net.tc, net.flow_dissector, net.netfilter ?? []].flat(), [], 'no program attached in the netns');
  assert.equal(existsSync(bpffsRoot), false, `the node's pins are gone and its bpffs unmounted and removed; uninstall said: ${out}; left: ${existsSync(bpffsRoot) ? execFileSync('ls', ['-la', bpffsRoot], { encoding: 'utf8' }) : ''}`);
  assert.doesNotMatch(readFileSync('/proc/self/mountinfo', 'utf8'), new RegExp(bpffsRoot), 'no bpffs mounted there any more');
  assert.equal(existsSync(stateDir), false, 'state dir (endpoints, lock, socket, store) is gone');
  assert.deepEqual(readdirSync(root), [], 'nothing left under the root');
  assert.deepEqual(ipJson<{ ifname: string }[]>(podNs, ['link', 'show']).map((l) => l.ifname), ['lo'], 'the pod\'s interface went with its veth');
});
