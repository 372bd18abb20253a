// docs/deploy.md, run: every `<!-- deploy-test: NAME -->` block of the guide
// is read from the file and played on three "hosts" that are network
// namespaces on one bridge (10.77.0.11-13), with the substitutions the guide
// lists under "What the test changes". A line of a block this test does not
// know how to play fails the test, and so does a command block without a
// marker: the guide cannot gain an untested command.
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse, stringify } from 'yaml';
import { runConflist } from '../../src/cni/runtime.ts';
import { httpGetIn } from '../../src/lab/netns-http.ts';
import { REPO } from '../../src/lab/layout.ts';
import { buildOnce, MEMBRANE, projectBpffs } from '../helpers/membrane.ts';
import { ipJson, makeNetns, uniqueName } from '../helpers/netns.ts';
import { rootOnly, skipUnless } from '../helpers/skip.ts';
import { startAsUnit, type UnitAgent } from '../helpers/unit.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const GUIDE = `${REPO}docs/deploy.md`;

/** The guide's marked blocks by name, and the fenced command blocks that carry no marker. */
function guideBlocks(): { blocks: Map<string, string>; unmarked: string[] } {
  const text = readFileSync(GUIDE, 'utf8');
  const blocks = new Map<string, string>();
  const unmarked: string[] = [];
  const re = /(<!-- deploy-test: ([a-z-]+) -->\n)?```(sh|yaml)\n([\s\S]*?)```/g;
  for (const m of text.matchAll(re)) {
    if (m[2]) blocks.set(m[2], m[4]!);
    else unmarked.push(m[4]!.split('\n')[0]!);
  }
  return { blocks, unmarked };
}

/** Shell lines of a block: continuations joined, comments and blanks dropped, heredocs kept whole. */
function lines(block: string): string[] {
  const out: string[] = [];
  const raw = block.replace(/\\\n\s*/g, '').split('\n');
  for (let i = 0; i < raw.length; i++) {
    const l = raw[i]!.trim();
    if (!l || l.startsWith('#')) continue;
    const here = /<<'(\w+)'$/.exec(l);
    if (here) {
      const end = raw.indexOf(here[1]!, i + 1);
      out.push([l, ...raw.slice(i + 1, end + 1)].join('\n'));
      i = end;
    } else out.push(l);
  }
  return out;
}

/** The body of a `cat > FILE <<'EOF'` line. */
const heredocBody = (l: string): string => l.split('\n').slice(1, -1).join('\n');

test('docs/deploy.md: three hosts, etcd with TLS, install, start, verify, cluster check, upgrade under traffic, uninstall --purge', {
  skip: rootOnly() || skipUnless(existsSync('/usr/bin/etcd'), '/usr/bin/etcd is not installed (apt-get install etcd-server)'),
}, async (t) => {
  buildOnce();
  const { blocks, unmarked } = guideBlocks();
  assert.deepEqual(unmarked, [], 'every command block of the guide is run by this test (add a deploy-test marker and play it here)');
  const block = (name: string) => {
    const b = blocks.get(name);
    assert.ok(b, `docs/deploy.md has the block ${name}`);
    return b;
  };
  const played = new Set<string>();
  const unknown = (name: string, l: string) => assert.fail(`docs/deploy.md block ${name}: no way to play "${l.split('\n')[0]}"`);

  const dir = mkdtempSync(join(tmpdir(), 'membrane-deploy-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const pki = `${dir}/pki`;
  const paths = (s: string) => s.replaceAll('/etc/membrane/pki', pki).replaceAll('/var/lib/etcd', `${dir}/etcd-data`).replaceAll('/etc/default/etcd', `${dir}/etcd.env`);

  // Three hosts on one bridge.
  const sw = makeNetns(t, 'dsw');
  execFileSync('ip', ['-n', sw, 'link', 'add', 'br0', 'type', 'bridge']);
  execFileSync('ip', ['-n', sw, 'link', 'set', 'br0', 'up']);
  const bpffsRoot = `${projectBpffs()}/${uniqueName('dg')}`;
  t.after(() => rmSync(bpffsRoot, { recursive: true, force: true }));
  const hosts = [1, 2, 3].map((i) => {
    const ns = makeNetns(t, `dh${i}`);
    execFileSync('ip', ['-n', sw, 'link', 'add', `p${i}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
    execFileSync('ip', ['-n', sw, 'link', 'set', `p${i}`, 'master', 'br0', 'up']);
    execFileSync('ip', ['-n', ns, 'addr', 'add', `10.77.0.1${i}/24`, 'dev', 'eth0']);
    execFileSync('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
    return { i, name: `host-${i}`, ns, ip: `10.77.0.1${i}`, root: `${dir}/root-${i}`, stateDir: `${dir}/state-${i}`, agent: undefined as UnitAgent | undefined };
  });
  const net = (h: { ns: string }) => `--net=/run/netns/${h.ns}`;
  /** A command on a host, as over ssh: its network namespace, this machine's mounts. */
  const onHost = (h: { ns: string }, argv: string[]) => spawnSync('nsenter', [net(h), ...argv], { encoding: 'utf8', timeout: 240_000 });
  const membraneOn = (h: { ns: string }, args: string[]) => {
    const r = onHost(h, [MEMBRANE, ...args]);
    assert.equal(r.status, 0, `membrane ${args.join(' ')}: ${r.stderr}${r.stdout}`);
    return r.stdout;
  };
  const socketOf = (h: { stateDir: string }) => `${h.stateDir}/agent.sock`;

  // ---- pki ----
  execFileSync('bash', ['-euo', 'pipefail', '-c', paths(block('pki'))], { stdio: ['ignore', 'ignore', 'pipe'] });
  played.add('pki');
  for (const f of ['ca.crt', 'etcd.crt', 'host-1.crt', 'host-3.key']) assert.ok(existsSync(`${pki}/${f}`), `pki made ${f}`);

  // ---- etcd ----
  let etcd: ReturnType<typeof spawn> | undefined;
  let etcdLog = '';
  t.after(() => { etcd?.kill('SIGKILL'); });
  for (const l of lines(block('etcd'))) {
    if (l.startsWith('cat > /etc/default/etcd')) writeFileSync(`${dir}/etcd.env`, paths(heredocBody(l)));
    else if (l === 'systemctl restart etcd') {
      // As Debian's etcd.service: ETCD_NAME/ETCD_DATA_DIR defaults, then EnvironmentFile=/etc/default/etcd, ExecStart=/usr/bin/etcd.
      const env: Record<string, string> = { PATH: '/usr/bin:/bin', ETCD_NAME: 'host-1', ETCD_DATA_DIR: `${dir}/etcd-data/default` };
      for (const kv of readFileSync(`${dir}/etcd.env`, 'utf8').split('\n').filter((x) => /^[A-Z_]+=/.test(x))) env[kv.split('=')[0]!] = kv.slice(kv.indexOf('=') + 1);
      etcd = spawn('nsenter', [net(hosts[0]!), 'setpriv', '--pdeathsig', 'SIGKILL', '/usr/bin/etcd'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
      etcd.stderr!.on('data', (c) => { etcdLog = (etcdLog + c).slice(-4000); });
    } else if (l === 'curl -s http://127.0.0.1:2381/health') {
      const deadline = Date.now() + 30_000;
      let body = '';
      while (Date.now() < deadline && !/"health":"true"/.test(body)) {
        body = await httpGetIn(hosts[0]!.ns, 'http://127.0.0.1:2381/health', 500).then((r) => r.body, () => '');
        if (!body) await sleep(100);
      }
      assert.match(body, /"health":\s*"true"/, `etcd reports itself healthy; its log:\n${etcdLog}`);
    } else unknown('etcd', l);
  }
  played.add('etcd');

  // ---- node configs ----
  const base = parse(block('node-config'));
  played.add('node-config');
  for (const h of hosts) {
    const cfg = JSON.parse(paths(JSON.stringify(base)).replaceAll('host-1', h.name));
    Object.assign(cfg, { nodeIP: h.ip, routerIP: `10.244.${h.i}.1`, podCIDR: `10.244.${h.i}.0/24`, stateDir: h.stateDir, bpffsRoot });
    assert.deepEqual(cfg.store.endpoints, ['https://10.77.0.11:2379'], 'every node talks to the etcd on host-1');
    writeFileSync(`${dir}/node-${h.i}.yaml`, stringify(cfg));
  }

  // ---- install, start ----
  for (const l of lines(block('install'))) {
    for (const h of hosts) {
      if (l === 'membrane install --config /etc/membrane/node.yaml') membraneOn(h, ['install', '--config', `${dir}/node-${h.i}.yaml`, '--root', h.root]);
      else if (l === 'systemctl daemon-reload && systemctl enable --now membrane-agent') h.agent = await startAsUnit(t, h.root, h.ns, socketOf(h));
      else unknown('install', l);
    }
  }
  played.add('install');

  // ---- verify ----
  const waitNodes = async (h: typeof hosts[0], n: number) => {
    const deadline = Date.now() + 15_000;
    let out = '';
    while (Date.now() < deadline) {
      out = membraneOn(h, ['node', 'list']);
      if (hosts.slice(0, n).every((x) => out.includes(x.name))) return out;
      await sleep(200);
    }
    return out;
  };
  for (const l of lines(block('verify'))) {
    for (const h of hosts) {
      if (l === 'membrane status') assert.match(membraneOn(h, ['status']), /KVStore:\s+Ok\s+etcd/);
      else if (l === 'membrane node list') {
        const out = await waitNodes(h, 3);
        for (const x of hosts) assert.match(out, new RegExp(`${x.name}\\s+${x.ip.replaceAll('.', '\\.')}\\s+10\\.244\\.${x.i}\\.1\\s+10\\.244\\.${x.i}\\.0/24`), `${h.name} lists ${x.name}`);
      } else unknown('verify', l);
    }
  }
  played.add('verify');

  // ---- cluster check ----
  for (const l of lines(block('cluster-check'))) {
    if (l.startsWith('cat > cluster.yaml')) {
      const c = parse(heredocBody(l)) as { hosts: { name: string; exec: string[] }[] };
      c.hosts = c.hosts.map((x) => {
        const h = hosts.find((y) => x.exec.join(' ') === `ssh root@${y.ip}`);
        assert.ok(h, `${x.name}: reached as ${x.exec.join(' ')}`);
        return { ...x, exec: ['nsenter', net(h)], conflist: `${h.root}/etc/cni/net.d/10-membrane.conflist`, cniBinDir: `${h.root}/opt/cni/bin` };
      });
      writeFileSync(`${dir}/cluster.yaml`, stringify(c));
    } else if (l === 'membrane connectivity test --cluster cluster.yaml') {
      const r = spawnSync(MEMBRANE, ['connectivity', 'test', '--cluster', `${dir}/cluster.yaml`], { encoding: 'utf8', timeout: 240_000 });
      assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
      assert.match(r.stdout, /all \d+ checks passed \(3 hosts/);
    } else unknown('cluster-check', l);
  }
  played.add('cluster-check');

  // ---- upgrade, while a pod on host-1 pings a pod on host-2 ----
  const pods = await Promise.all([hosts[0]!, hosts[1]!].map(async (h) => {
    const pns = makeNetns(t, `dp${h.i}`);
    const r = await runConflist(`${h.root}/etc/cni/net.d/10-membrane.conflist`, 'ADD', {
      cniPath: `${h.root}/opt/cni/bin`, containerID: `ctr-${pns}`, netns: `/run/netns/${pns}`, ifname: 'eth0', fromNetns: h.ns,
      args: { K8S_POD_NAMESPACE: 'default', K8S_POD_NAME: pns },
    });
    assert.equal(r.exitCode, 0, r.stdoutText + r.stderr);
    return { h, ns: pns, ip: (r.stdout.ips[0].address as string).split('/')[0]!, result: r.stdout };
  }));
  const pinger = spawn('ip', ['netns', 'exec', pods[0]!.ns, 'ping', '-n', '-i', '0.05', '-w', '10', pods[1]!.ip], { stdio: ['ignore', 'pipe', 'pipe'] });
  let pingOut = '';
  pinger.stdout.on('data', (c) => { pingOut += c; });
  const pingDone = new Promise((r) => pinger.on('close', r));
  t.after(() => { pinger.kill('SIGKILL'); });
  await sleep(1000);
  for (const l of lines(block('upgrade'))) {
    if (l === 'cd /opt/membrane && git pull && npm ci && npm run build') continue; // the test runs on the built tree
    for (const h of hosts) {
      if (l === 'membrane install') assert.doesNotMatch(membraneOn(h, ['install', '--root', h.root]), /^(created|updated)/m, 'a reinstall of the same build changes nothing');
      else if (l === 'systemctl restart membrane-agent') {
        assert.equal(await h.agent!.stop(), 0, h.agent!.log());
        h.agent = await startAsUnit(t, h.root, h.ns, socketOf(h));
      } else unknown('upgrade', l);
    }
  }
  played.add('upgrade');
  await pingDone;
  const m = /(\d+) packets transmitted, (\d+) received/.exec(pingOut);
  assert.ok(m, pingOut);
  t.diagnostic(`ping across the restarts of all three agents: ${m[2]}/${m[1]} replies`);
  assert.equal(m[2], m[1], `no packet lost while the agents restarted: ${m[0]}`);
  assert.match(await waitNodes(hosts[0]!, 3), /host-3/);
  for (const p of pods) {
    const r = await runConflist(`${p.h.root}/etc/cni/net.d/10-membrane.conflist`, 'DEL', {
      cniPath: `${p.h.root}/opt/cni/bin`, containerID: `ctr-${p.ns}`, netns: `/run/netns/${p.ns}`, ifname: 'eth0', fromNetns: p.h.ns, prevResult: p.result,
    });
    assert.equal(r.exitCode, 0, r.stdoutText + r.stderr);
  }

  // ---- uninstall ----
  for (const l of lines(block('uninstall'))) {
    for (const h of hosts) {
      if (l === 'systemctl disable --now membrane-agent') assert.equal(await h.agent!.stop(), 0, h.agent!.log());
      else if (l === 'membrane uninstall --purge') membraneOn(h, ['uninstall', '--root', h.root, '--purge']);
      else unknown('uninstall', l);
    }
  }
  played.add('uninstall');
  for (const h of hosts) {
    assert.deepEqual(ipJson<{ ifname: string }[]>(h.ns, ['link', 'show']).map((x) => x.ifname).sort(), ['eth0', 'lo'], `${h.name}: only its own devices are left`);
    const bpf = JSON.parse(onHost(h, ['bpftool', '-j', 'net', 'show']).stdout)[0];
    assert.deepEqual([bpf.xdp, bpf.tc].flat(), [], `${h.name}: no program attached`);
    assert.equal(existsSync(`${bpffsRoot}/${h.name}`), false, `${h.name}: no pins`);
    assert.equal(existsSync(h.stateDir), false, `${h.name}: no state`);
  }
  assert.deepEqual([...played].sort(), [...blocks.keys()].sort(), 'every block of the guide was played');
});
