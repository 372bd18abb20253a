// A real container runtime on the membrane network: podman 4.3 (Debian 12,
// CNI backend) on two lab nodes driven as if they were hosts. Each node gets
// `membrane install --root R<i>` from its own node config (so its conflist's
// agentSocket is that node's agent), and a podman of its own: storage under a
// temporary directory (--root/--runroot/--tmpdir, driver vfs), `--network-backend
// cni`, `--cni-config-dir R<i>/etc/cni/net.d` and a temporary containers.conf
// (CONTAINERS_CONF) whose cni_plugin_dirs is R<i>/opt/cni/bin. The image is a
// busybox-static rootfs through `podman import` (no registry).
//
// Podman runs in the root netns, as on a host; the plugin it executes there
// forwards ADD/DEL over the socket to the agent, which makes the veth in its
// node netns. Checked: the container's IP is from its node's pod CIDR, its
// endpoint is the agent's (container ID and netns are podman's), ping both ways
// with a lab pod on the other node, and `podman rm -f` releases everything
// through CNI DEL (endpoint, lxc device, IPAM use, the other node's ipcache
// entry, libcni's cached result, podman's netns). An ADD against a socket with
// no agent fails with the plugin's message and leaves no netns or endpoint.
// The root netns's devices are the same before and after.
//
// This machine mounts cgroups in hybrid mode with a controller on the v2
// hierarchy, which crun 1.8 refuses ("cgroups in hybrid mode not supported");
// so podman runs in a private mount namespace of the test's own where
// /sys/fs/cgroup/unified is unmounted (a pure v1 layout). /run/netns stays
// shared with the machine, so podman's container netns is visible (and
// checked) outside. On a real Debian 12 host (cgroup v2 only) none of this is
// needed.
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, copyFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { labStatus, labUp, membraneIn, rootLinks, inNetns } from '../helpers/lab.ts';
import { MEMBRANE } from '../helpers/membrane.ts';
import { rootOnly, skipUnless } from '../helpers/skip.ts';

const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
const skip = rootOnly() || skipUnless(has('podman') && existsSync('/bin/busybox'), 'needs podman and busybox-static (/bin/busybox)');

interface Host {
  node: string;
  netns: string;
  podCIDR: string;
  dir: string;
  env: NodeJS.ProcessEnv;
  flags: string[];
}

/** The mount namespace podman runs in (see the header); its holder process is killed at the end. */
let holder: ChildProcess | undefined;
const hosts: Host[] = [];
const sandboxes = new Set<string>();
/** Container IDs this test created: libcni's result cache files are named after them. */
const containerIDs = new Set<string>();
let workDir: string | undefined;

function podman(h: Host, args: string[], opts: { check?: boolean } = {}): { status: number; stdout: string; stderr: string } {
  const r = spawnSync('nsenter', ['-m', '-t', String(holder!.pid), 'podman', ...h.flags, ...args], { env: h.env, encoding: 'utf8', timeout: 180_000 });
  if (opts.check !== false && r.status !== 0) throw new Error(`podman ${args.join(' ')} on ${h.node} exited ${r.status}: ${r.stderr}`);
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Every container removed (through CNI DEL while the agents run), the mount namespace gone, podman's netns and the work dir gone. */
function cleanupPodman(): void {
  if (holder?.pid) for (const h of hosts) podman(h, ['rm', '-f', '-t', '0', '--all'], { check: false });
  holder?.kill('SIGKILL');
  holder = undefined;
  for (const s of sandboxes) spawnSync('ip', ['netns', 'del', s.replace('/run/netns/', '')], { stdio: 'ignore' });
  hosts.length = 0;
  // After an interrupt the rm above returns 0 but libcni's cached results can stay (seen with SIGINT): remove ours.
  for (const id of containerIDs) rmSync(`/var/lib/cni/results/membrane-${id}-eth0`, { force: true });
  containerIDs.clear();
  if (workDir) rmSync(workDir, { recursive: true, force: true });
  workDir = undefined;
}
process.once('exit', cleanupPodman);
// On an interrupt: the containers first (their DEL needs the agents, which the lab's exit handler then stops).
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => { cleanupPodman(); process.exit(130); });
}

const inCIDR = (ip: string, cidr: string) => {
  const [net, bits] = cidr.split('/');
  const n = (a: string) => a.split('.').reduce((v, o) => (v << 8) + Number(o), 0) >>> 0;
  const mask = bits === '0' ? 0 : (~0 << (32 - Number(bits))) >>> 0;
  return ((n(ip) & mask) >>> 0) === ((n(net!) & mask) >>> 0);
};

interface Endpoint { containerID: string; netns: string; ip: string; hostIfname: string; podName: string }
const endpoints = async (netns: string) => JSON.parse(await membraneIn(netns, ['endpoint', 'list', '-o', 'json'])) as Endpoint[];
const ipamUsed = async (netns: string) => (JSON.parse(await membraneIn(netns, ['status', '-o', 'json'])) as { ipam: { used: number } }).ipam.used;
const links = (netns: string) => (JSON.parse(execFileSync('ip', ['-n', netns, '-j', 'link', 'show'], { encoding: 'utf8' })) as { ifname: string }[]).map((l) => l.ifname);

test('podman (CNI backend) on two lab nodes through the installed conflist: pod CIDR IPs, cross-node ping both ways, podman rm releases all; a failed ADD leaves nothing', { skip }, async (t) => {
  const dir = workDir = mkdtempSync(join(tmpdir(), 'membrane-podman-'));
  // Registered before labUp: hooks run in order, so containers are removed (CNI DEL) while the agents still run.
  t.after(cleanupPodman);
  const rootBefore = rootLinks();
  const { name } = await labUp(t, ['--nodes', '2', '--pods-per-node', '1']);
  const s = await labStatus(name);

  holder = spawn('unshare', ['-m', '--propagation', 'unchanged', 'sh', '-c', 'umount /sys/fs/cgroup/unified 2>/dev/null; echo ready; exec sleep 100000'], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    holder!.stdout!.once('data', () => resolve());
    holder!.once('exit', (c) => reject(new Error(`unshare exited ${c}`)));
  });

  // A busybox-static root file system, imported once per host (each has its own storage, as separate machines do).
  const rootfs = `${dir}/rootfs`;
  mkdirSync(`${rootfs}/bin`, { recursive: true });
  copyFileSync('/bin/busybox', `${rootfs}/bin/busybox`);
  for (const c of ['sh', 'sleep', 'ping', 'ip']) symlinkSync('busybox', `${rootfs}/bin/${c}`);
  const tarball = `${dir}/rootfs.tar`;
  execFileSync('tar', ['-C', rootfs, '-cf', tarball, '.']);
  const image = 'localhost/membrane-busybox:test';

  for (const [i, n] of s.nodes.entries()) {
    const h = `${dir}/host-${i + 1}`;
    const root = `${h}/root`;
    execFileSync(MEMBRANE, ['install', '--root', root, '--config', n.configFile]);
    const confDir = `${root}/etc/cni/net.d`;
    const conflist = JSON.parse(readFileSync(`${confDir}/10-membrane.conflist`, 'utf8'));
    assert.match(conflist.plugins[0].agentSocket, new RegExp(`/nodes/${n.name}/state/agent\\.sock$`));
    // Chained plugins would need /usr/lib/cni too; the membrane conflist has only membrane-cni.
    assert.deepEqual(conflist.plugins.map((p: { type: string }) => p.type), ['membrane-cni']);
    writeFileSync(`${h}/containers.conf`, [
      '[containers]',
      // podman as root raises nofile/nproc beyond this machine's hard limits otherwise (crun: setrlimit ... not permitted).
      'default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]',
      '[network]',
      'network_backend = "cni"',
      `cni_plugin_dirs = ["${root}/opt/cni/bin"]`,
      `network_config_dir = "${confDir}"`,
      '',
    ].join('\n'));
    const host: Host = {
      node: n.name, netns: n.netns, podCIDR: n.podCIDR, dir: h,
      env: { ...process.env, CONTAINERS_CONF: `${h}/containers.conf` },
      flags: ['--root', `${h}/storage`, '--runroot', `${h}/run`, '--tmpdir', `${h}/tmp`, '--storage-driver', 'vfs',
        '--network-backend', 'cni', '--cni-config-dir', confDir],
    };
    hosts.push(host);
    podman(host, ['import', tarball, image]);
    assert.match(podman(host, ['network', 'ls', '--format', '{{.Name}} {{.Driver}}']).stdout, /^membrane membrane-cni$/m);
  }

  const ipamBefore = await Promise.all(hosts.map((h) => ipamUsed(h.netns)));
  const linksBefore = hosts.map((h) => links(h.netns).sort());
  const ctrs = [];
  for (const [i, h] of hosts.entries()) {
    const ctrName = `mbt${process.pid.toString(36)}-c${i + 1}`;
    const id = podman(h, ['run', '-d', '--name', ctrName, '--network', 'membrane', image, 'sleep', '100000']).stdout.trim();
    containerIDs.add(id);
    const [ip, sandbox] = podman(h, ['inspect', '-f', '{{.NetworkSettings.Networks.membrane.IPAddress}} {{.NetworkSettings.SandboxKey}}', id]).stdout.trim().split(' ') as [string, string];
    sandboxes.add(sandbox);
    assert.ok(inCIDR(ip, h.podCIDR), `${ctrName} got ${ip}, from ${h.node}'s pod CIDR ${h.podCIDR}`);
    assert.match(sandbox, /^\/run\/netns\//);
    assert.ok(existsSync(sandbox), `podman's netns ${sandbox}`);
    // The endpoint is the agent's: podman's container ID and netns, its veth in the node's netns (made by the agent).
    const ep = (await endpoints(h.netns)).find((e) => e.ip === ip);
    assert.ok(ep, `${h.node}'s agent has an endpoint for ${ip}`);
    assert.equal(ep.containerID, id);
    assert.equal(ep.netns, sandbox);
    assert.equal(ep.podName, ctrName);
    assert.ok(links(h.netns).includes(ep.hostIfname), `${ep.hostIfname} in ${h.netns}`);
    // libcni (inside podman) cached the plugin's ADD result; DEL removes it.
    const cached = JSON.parse(readFileSync(`/var/lib/cni/results/membrane-${id}-eth0`, 'utf8')) as { result: { ips: { address: string }[] } };
    assert.equal(cached.result.ips[0]!.address, `${ip}/32`);
    ctrs.push({ h, id, ip, sandbox, ep, ctrName });
  }
  assert.equal(ctrs.length, 2);
  assert.deepEqual(rootLinks(), rootBefore, 'no device added to the root netns');

  // Cross-node both ways: each container and the lab pod on the other node.
  for (const [i, c] of ctrs.entries()) {
    const other = s.pods.find((p) => p.node === s.nodes[1 - i]!.name)!;
    const out = podman(c.h, ['exec', c.id, 'ping', '-c', '1', '-W', '5', other.ip!], { check: false });
    assert.equal(out.status, 0, `${c.ctrName} on ${c.h.node} -> ${other.name} ${other.ip} on ${other.node}: ${out.stdout}${out.stderr}`);
    assert.match(inNetns(other.netns, ['ping', '-c', '1', '-W', '5', c.ip]), /1 received/, `${other.name} -> ${c.ctrName} ${c.ip}`);
  }
  // And container to container across the nodes.
  assert.equal(podman(ctrs[0]!.h, ['exec', ctrs[0]!.id, 'ping', '-c', '1', '-W', '5', ctrs[1]!.ip], { check: false }).status, 0, 'c1 -> c2');

  // podman rm -f: CNI DEL through each node's plugin releases the endpoint, the lxc device, the IP; podman's netns goes.
  for (const c of ctrs) {
    podman(c.h, ['rm', '-f', '-t', '0', c.id]);
    assert.equal((await endpoints(c.h.netns)).some((e) => e.ip === c.ip || e.containerID === c.id), false, `${c.ctrName}'s endpoint released`);
    assert.equal(links(c.h.netns).includes(c.ep.hostIfname), false, `${c.ep.hostIfname} removed`);
    assert.equal(existsSync(c.sandbox), false, `podman's netns ${c.sandbox} removed`);
    assert.equal(existsSync(`/var/lib/cni/results/membrane-${c.id}-eth0`), false, 'libcni\'s cached result removed by DEL');
    sandboxes.delete(c.sandbox);
  }
  assert.deepEqual(await Promise.all(hosts.map((h) => ipamUsed(h.netns))), ipamBefore, 'IPAM use back to before: the IPs are free');
  assert.deepEqual(hosts.map((h) => links(h.netns).sort()), linksBefore, 'node netns devices back to before');
  for (const [i, h] of hosts.entries()) {
    // The IP is gone from the other node's view of the cluster too.
    const remote = s.nodes[1 - i]!.netns;
    // (The other agent learns it from the store: wait for its sync, bounded, without asserting how long it took.)
    const ipRe = new RegExp(`(^|[^\\d.])${ctrs[i]!.ip.replace(/\./g, '\\.')}([^\\d.]|$)`, 'm');
    let listed = '';
    for (let k = 0; k < 60; k++) {
      listed = await membraneIn(remote, ['bpf', 'ipcache', 'list']);
      if (!ipRe.test(listed)) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    assert.doesNotMatch(listed, ipRe, `${ctrs[i]!.ip} not in ${remote}'s ipcache`);
    // podman keeps its lock there (cni.lock), but no network config of its own.
    assert.deepEqual(readdirSync(`${h.dir}/root/etc/cni/net.d`).filter((f) => /\.(conf|conflist|json)$/.test(f)), ['10-membrane.conflist'], 'podman wrote no network config of its own');
  }

  // An ADD that fails (the conflist's agentSocket has no agent behind it): podman reports the plugin's error and
  // leaves no container netns; the node's agent has no new endpoint.
  const h0 = hosts[0]!;
  const badDir = `${h0.dir}/bad-net.d`;
  mkdirSync(badDir);
  const bad = JSON.parse(readFileSync(`${h0.dir}/root/etc/cni/net.d/10-membrane.conflist`, 'utf8'));
  bad.plugins[0].agentSocket = `${dir}/no-agent.sock`;
  writeFileSync(`${badDir}/10-membrane.conflist`, JSON.stringify(bad));
  const netnsBefore = readdirSync('/run/netns').filter((f) => f.startsWith('netns-'));
  const epsBefore = (await endpoints(h0.netns)).length;
  const badHost = { ...h0, flags: h0.flags.map((f) => (f === `${h0.dir}/root/etc/cni/net.d` ? badDir : f)) };
  const failed = podman(badHost, ['run', '-d', '--name', `mbt${process.pid.toString(36)}-bad`, '--network', 'membrane', image, 'sleep', '100000'], { check: false });
  assert.notEqual(failed.status, 0);
  assert.match(failed.stderr, /plugin type="membrane-cni" failed \(add\): cni plugin membrane-cni failed: membrane agent not reachable at \S+\/no-agent\.sock/);
  // podman keeps the container in state Created (never started, no network); rm removes it.
  assert.match(podman(badHost, ['ps', '-a', '--format', '{{.Names}} {{.Status}}']).stdout, /-bad Created/);
  podman(badHost, ['rm', '-f', '-t', '0', `mbt${process.pid.toString(36)}-bad`]);
  assert.equal(podman(badHost, ['ps', '-a', '-q']).stdout.trim(), '');
  assert.deepEqual(readdirSync('/run/netns').filter((f) => f.startsWith('netns-')), netnsBefore, 'no podman netns left');
  assert.equal((await endpoints(h0.netns)).length, epsBefore);
  assert.deepEqual(rootLinks(), rootBefore, 'root netns devices unchanged');
});
