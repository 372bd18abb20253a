// Soak (issue 8): a lab under churn and faults for a bounded time, then a
// check that what is left is exactly what the runtime holds.
//
//   sudo node --import tsx bench/soak.ts [--duration 60] [--nodes 3] [--store etcd|sqlite]
//        [--workers 3] [--fault-every 4] [--name soak]
//
// This script is the container runtime: it makes pod netns and drives the
// real plugin (cni/membrane-cni, through src/cni/runtime.ts) from the node's
// netns, `--workers` concurrent ADD/DEL loops per node. A failed ADD is
// followed by a DEL (CNI spec); a failed DEL is retried until it succeeds,
// as a runtime keeps a sandbox until its teardown works. Meanwhile, one at a
// time, faults: an agent SIGKILLed and restarted 1-3 s later, an agent
// SIGSTOPped for 2-5 s, the store stopped for 3-6 s (`lab etcd stop/start`;
// with sqlite, another connection holds the database's write lock). Two
// long-lived pods on different nodes ping each other every 50 ms throughout.
//
// At the end (faults healed, pending DELs done) every pod the runtime holds
// must have exactly one endpoint on its node with the IP ADD returned, one
// store key claiming that node with the endpoint's identity, an entry with
// its node as tunnel endpoint in every other node's ipcache, and answer a
// ping from another node; and nothing else may be left: no lxc device,
// cilium_lxc entry, endpoint pin or calls map, ipcache entry, store IP key,
// identity reference or allocation lock beyond those. Prints operations,
// faults, packets lost and leftovers; exit 0 only if all checks hold and no
// packet was lost. The lab goes (lab down) on every path: end, error,
// SIGINT/SIGTERM.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import Database from 'better-sqlite3';
import { apiCall } from '../src/api/client.ts';
import type { EndpointState } from '../src/agent/state-file.ts';
import { cniExec, type CniExecResult } from '../src/cni/runtime.ts';
import { agentEndpoints, liveAgentPid } from '../src/lab/agents.ts';
import { labDown, labEtcd, labUp, restartAgent } from '../src/lab/lab.ts';
import { CNI_PLUGIN, MEMBRANE_BIN, REPO } from '../src/lab/layout.ts';
import { loadLab, type LabRecord, type NodeRecord } from '../src/lab/record.ts';
import { buildSpec } from '../src/lab/spec.ts';
import { alive, processState } from '../src/lab/processes.ts';
import { decodeIpIdentity, nodeOfIpMetadata, parseIdentityValueKey, parseIpKey, formatLabelKey } from '../src/store/keys.ts';
import { openStore } from '../src/store/store.ts';
import { securityLabels } from '../src/agent/labels.ts';

// ---- options ----
const arg = (name: string): string | undefined => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const DURATION_S = Number(arg('duration') ?? 60);
const NODES = Number(arg('nodes') ?? 3);
const STORE = (arg('store') ?? (existsSync('/usr/bin/etcd') ? 'etcd' : 'sqlite')) as 'etcd' | 'sqlite';
const WORKERS = Number(arg('workers') ?? 3);
const FAULT_EVERY_S = Number(arg('fault-every') ?? 4);
const LAB = arg('name') ?? 'soak';
if (![DURATION_S, NODES, WORKERS, FAULT_EVERY_S].every((n) => Number.isFinite(n) && n > 0) || NODES < 2 || !['etcd', 'sqlite'].includes(STORE)) {
  process.stderr.write('usage: node --import tsx bench/soak.ts [--duration S] [--nodes N>=2] [--store etcd|sqlite] [--workers W] [--fault-every S] [--name LAB]\n');
  process.exit(2);
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const rand = (lo: number, hi: number) => lo + Math.random() * (hi - lo);
const log = (s: string) => process.stdout.write(`[${((Date.now() - T0) / 1000).toFixed(1).padStart(5)}s] ${s}\n`);
const T0 = Date.now();

// ---- cleanup on every path ----
const children = new Set<ChildProcess>();
let blocker: Database.Database | undefined;
let cleaned = false;
async function cleanup(): Promise<void> {
  if (cleaned) return;
  cleaned = true;
  for (const c of children) c.kill('SIGKILL');
  try { blocker?.exec('ROLLBACK'); } catch { /* none open */ }
  blocker?.close();
  const r = await labDown(LAB).catch((e) => ({ error: (e as Error).message }));
  if ('error' in r) process.stderr.write(`lab down ${LAB}: ${r.error}\n`);
}
process.once('exit', () => {
  // Reached only if cleanup() never ran (an exception past main's finally): the synchronous way.
  if (!cleaned) spawnSync(MEMBRANE_BIN, ['lab', 'down', '--name', LAB], { stdio: 'ignore' });
});
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(sig, () => {
    process.stderr.write(`\n${sig}: removing the lab\n`);
    void cleanup().finally(() => process.exit(130));
  });
}

// ---- figures ----
const ops = { add: 0, addFailed: 0, del: 0, delFailed: 0, delRetried: 0 };
const faults = { agentKill: 0, agentStop: 0, storeStop: 0 };
let stopping = false;

// ---- the runtime's pods ----
interface Pod { name: string; netns: string; containerID: string; node: NodeRecord; labels: Record<string, string>; ip?: string; busy: boolean }
const held = new Map<string, Pod>(); // ADD succeeded, not deleted
const undeleted = new Map<string, Pod>(); // the runtime wants them gone: DEL is retried until it succeeds
let seq = 0;

function cni(command: 'ADD' | 'DEL', p: Pod): Promise<CniExecResult> {
  return cniExec(CNI_PLUGIN, command, {
    fromNetns: p.node.netns, containerID: p.containerID, netns: `/run/netns/${p.netns}`, ifname: 'eth0',
    args: { K8S_POD_NAMESPACE: 'default', K8S_POD_NAME: p.name }, cniPath: `${REPO}bin`,
    conf: { cniVersion: '1.1.0', name: 'membrane', type: 'membrane-cni', agentSocket: p.node.apiSocket, args: { labels: p.labels } },
    timeoutMs: 90_000,
  });
}

const delNetns = (ns: string) => { try { execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' }); } catch { /* gone */ } };

async function addOne(node: NodeRecord): Promise<void> {
  const j = 1000 + seq++;
  // Named as the lab names pods, so `lab down` sweeps a leftover netns too.
  const p: Pod = { name: `soak-${node.index}-${j}`, netns: `${LAB}-pod-${node.index}-${j}`, containerID: `soak-${node.index}-${j}`, node, labels: { app: `churn-${j % 7}` }, busy: true };
  execFileSync('ip', ['netns', 'add', p.netns]);
  const r = await cni('ADD', p);
  ops.add++;
  if (r.exitCode === 0) {
    p.ip = (r.stdout.ips[0].address as string).split('/')[0];
    p.busy = false;
    held.set(p.containerID, p);
    return;
  }
  ops.addFailed++;
  undeleted.set(p.containerID, p); // CNI: a failed ADD is followed by DEL
  await delOne(p);
}

async function delOne(p: Pod): Promise<void> {
  p.busy = true;
  held.delete(p.containerID);
  undeleted.set(p.containerID, p);
  const r = await cni('DEL', p);
  ops.del++;
  if (r.exitCode === 0) {
    undeleted.delete(p.containerID);
    delNetns(p.netns);
  } else {
    ops.delFailed++;
  }
  p.busy = false;
}

async function worker(node: NodeRecord): Promise<void> {
  while (!stopping) {
    const mine = [...held.values()].filter((p) => p.node === node && !p.busy);
    if (mine.length < WORKERS || Math.random() < 0.5) await addOne(node).catch((e) => log(`ADD on ${node.name}: ${(e as Error).message}`));
    else await delOne(mine[Math.floor(Math.random() * mine.length)]!).catch((e) => log(`DEL on ${node.name}: ${(e as Error).message}`));
    await sleep(rand(20, 150));
  }
}

async function retryDeletes(): Promise<void> {
  while (!stopping) {
    for (const p of [...undeleted.values()].filter((x) => !x.busy)) {
      ops.delRetried++;
      await delOne(p);
    }
    await sleep(1000);
  }
}

// ---- faults ----
function agentPid(rec: LabRecord, node: string): number | undefined {
  return liveAgentPid(rec.nodes.find((n) => n.name === node)!);
}

async function injectFaults(rec: LabRecord): Promise<void> {
  while (!stopping) {
    await sleep(rand(0.5, 1.5) * FAULT_EVERY_S * 1000);
    if (stopping) return;
    const kind = (['agentKill', 'agentStop', 'storeStop'] as const)[Math.floor(Math.random() * 3)]!;
    const node = rec.nodes[Math.floor(Math.random() * rec.nodes.length)]!;
    const pid = agentPid(rec, node.name);
    try {
      if (kind === 'agentKill' && pid) {
        faults.agentKill++;
        process.kill(pid, 'SIGKILL');
        const ms = rand(1000, 3000);
        log(`fault: ${node.name} agent ${pid} SIGKILLed; restart in ${(ms / 1000).toFixed(1)} s`);
        await sleep(ms);
        await restartAgent(LAB, node.name);
      } else if (kind === 'agentStop' && pid) {
        faults.agentStop++;
        const ms = rand(2000, 5000);
        log(`fault: ${node.name} agent ${pid} SIGSTOPped for ${(ms / 1000).toFixed(1)} s`);
        process.kill(pid, 'SIGSTOP');
        await sleep(ms);
        process.kill(pid, 'SIGCONT');
      } else if (kind === 'storeStop') {
        faults.storeStop++;
        const ms = rand(3000, 6000);
        log(`fault: ${STORE} store unavailable for ${(ms / 1000).toFixed(1)} s`);
        if (STORE === 'etcd') {
          await labEtcd(LAB, 'stop');
          await sleep(ms);
          await labEtcd(LAB, 'start');
        } else {
          blocker = new Database(rec.storePath!);
          blocker.exec('BEGIN EXCLUSIVE');
          await sleep(ms);
          blocker.exec('ROLLBACK');
          blocker.close();
          blocker = undefined;
        }
      }
    } catch (e) {
      log(`fault ${kind} on ${node.name}: ${(e as Error).message.split('\n')[0]}`);
    }
  }
}

/** Every agent continued and running again, the store up. */
async function heal(rec: LabRecord): Promise<void> {
  if (blocker) { try { blocker.exec('ROLLBACK'); } catch { /* none */ } blocker.close(); blocker = undefined; }
  if (STORE === 'etcd') await labEtcd(LAB, 'start');
  for (const n of rec.nodes) {
    const pid = liveAgentPid(n);
    if (pid && processState(pid) === 'T') process.kill(pid, 'SIGCONT');
    if (!pid || !alive(pid)) await restartAgent(LAB, n.name);
  }
}

// ---- the long ping ----
function longPing(fromNs: string, ip: string): { stop: () => Promise<{ sent: number; got: number }> } {
  const c = spawn('ip', ['netns', 'exec', fromNs, 'ping', '-n', '-i', '0.05', '-W', '1', ip], { stdio: ['ignore', 'pipe', 'ignore'] });
  children.add(c);
  let out = '';
  c.stdout!.on('data', (d) => { out += d; });
  const done = new Promise<void>((r) => c.on('close', () => r()));
  return {
    stop: async () => {
      // ping prints its summary on SIGINT; `ip netns exec` execs it, so the signal reaches ping itself.
      c.kill('SIGINT');
      await done;
      children.delete(c);
      const m = /(\d+) packets transmitted, (\d+) received/.exec(out);
      return { sent: Number(m?.[1] ?? 0), got: Number(m?.[2] ?? 0) };
    },
  };
}

// ---- the end state ----
interface StoreEntry { key: string; value: string }
async function storeEntries(rec: LabRecord): Promise<StoreEntry[]> {
  if (rec.store === 'sqlite') {
    const s = await openStore({ backend: 'sqlite', path: rec.storePath! });
    try { return (await s.list('cilium/state/')).entries; } finally { await s.close(); }
  }
  // The lab's etcd is reachable only from its namespaces.
  const out = execFileSync('ip', ['netns', 'exec', rec.underlay.netns, 'etcdctl', '--endpoints=http://127.0.0.1:2379', 'get', '--prefix', 'cilium/state/', '-w', 'json'], { encoding: 'utf8', env: { ...process.env, ETCDCTL_API: '3' } });
  const kvs = (JSON.parse(out) as { kvs?: { key: string; value: string }[] }).kvs ?? [];
  return kvs.map((kv) => ({ key: Buffer.from(kv.key, 'base64').toString(), value: Buffer.from(kv.value, 'base64').toString() }));
}

const membraneJson = <T>(ns: string, args: string[]): T => JSON.parse(execFileSync('ip', ['netns', 'exec', ns, MEMBRANE_BIN, ...args, '-o', 'json'], { encoding: 'utf8' }));

function diff(what: string, want: Iterable<string>, got: Iterable<string>, out: string[]): void {
  const w = [...want].sort();
  const g = [...got].sort();
  const missing = w.filter((x) => !g.includes(x));
  const extra = g.filter((x) => !w.includes(x));
  const dup = g.filter((x, i) => g.indexOf(x) !== i);
  if (missing.length) out.push(`${what}: missing ${missing.join(', ')}`);
  if (extra.length) out.push(`${what}: left over ${extra.join(', ')}`);
  if (dup.length) out.push(`${what}: more than once ${[...new Set(dup)].join(', ')}`);
}

async function verify(rec: LabRecord): Promise<{ problems: string[]; checked: number }> {
  const problems: string[] = [];
  // The pods that must exist: the lab's own and the runtime's.
  const want = [
    ...rec.pods.map((p) => ({ containerID: p.containerID, ip: p.ip!, node: rec.nodes.find((n) => n.name === p.node)!, labels: p.labels, netns: p.netns })),
    ...[...held.values()].map((p) => ({ containerID: p.containerID, ip: p.ip!, node: p.node, labels: p.labels, netns: p.netns })),
  ];
  const eps = new Map<string, EndpointState[]>();
  for (const n of rec.nodes) eps.set(n.name, await agentEndpoints(n));
  for (const n of rec.nodes) {
    const mine = want.filter((p) => p.node === n);
    const e = eps.get(n.name)!;
    diff(`${n.name} endpoints`, mine.map((p) => `${p.containerID} ${p.ip}`), e.map((x) => `${x.containerID} ${x.ip}`), problems);
    const links = (JSON.parse(execFileSync('ip', ['-n', n.netns, '-j', 'link', 'show'], { encoding: 'utf8' })) as { ifname: string }[]).map((l) => l.ifname).filter((x) => /^lxc[0-9a-f]{12}$/.test(x));
    diff(`${n.name} lxc devices`, e.map((x) => x.hostIfname), links, problems);
    const lxc = membraneJson<{ ip: string; flags: number }[]>(n.netns, ['bpf', 'endpoint', 'list']).filter((x) => !(x.flags & 1)).map((x) => x.ip);
    diff(`${n.name} cilium_lxc`, e.map((x) => x.ip), lxc, problems);
    const pins = `${rec.pinRoot}/${n.name}`;
    diff(`${n.name} endpoint pins`, e.map((x) => String(x.id)), existsSync(`${pins}/endpoints`) ? readdirSync(`${pins}/endpoints`) : [], problems);
    diff(`${n.name} calls maps`, e.map((x) => `cilium_calls_${String(x.id).padStart(5, '0')}`), readdirSync(`${pins}/tc/globals`).filter((f) => /^cilium_calls_\d{5}$/.test(f)), problems);
    // ipcache: own pods as endpoint entries, every other node's pods as cluster entries.
    const ic = membraneJson<{ prefix: string; identity: number; owner: string; tunnelEndpoint?: string }[]>(n.netns, ['bpf', 'ipcache', 'list']);
    diff(`${n.name} ipcache endpoint entries`, e.map((x) => `${x.ip}/32 ${x.identity}`), ic.filter((x) => x.owner === 'endpoint').map((x) => `${x.prefix} ${x.identity}`), problems);
    const others = rec.nodes.filter((o) => o !== n);
    const nodeIPs = new Set(others.flatMap((o) => [`${o.nodeIP}/32`, `${o.routerIP}/32`]));
    const remote = want.filter((p) => p.node !== n).map((p) => {
      const ep = eps.get(p.node.name)!.find((x) => x.containerID === p.containerID);
      return `${p.ip}/32 ${ep?.identity} via ${p.node.nodeIP}`;
    });
    diff(`${n.name} ipcache remote pods`, remote, ic.filter((x) => x.owner === 'cluster' && x.prefix.endsWith('/32') && !nodeIPs.has(x.prefix)).map((x) => `${x.prefix} ${x.identity} via ${x.tunnelEndpoint}`), problems);
  }
  // The store: one IP key per pod (claiming its node, with its identity), the nodes, the identity references in use, no lock.
  const kv = await storeEntries(rec);
  const ipKeys = kv.filter((e) => parseIpKey(e.key)).map((e) => {
    const v = decodeIpIdentity(e.value, e.key);
    return `${v.IP} ${nodeOfIpMetadata(v.Metadata)} ${v.ID}`;
  });
  diff('store pod IP keys', want.map((p) => `${p.ip} ${p.node.name} ${eps.get(p.node.name)!.find((x) => x.containerID === p.containerID)?.identity}`), ipKeys, problems);
  diff('store node keys', rec.nodes.map((n) => `cilium/state/nodes/v1/default/${n.name}`), kv.filter((e) => e.key.startsWith('cilium/state/nodes/')).map((e) => e.key), problems);
  const refs = new Set(want.map((p) => `${formatLabelKey(securityLabels(p.labels))} ${p.node.name}`));
  diff('store identity references', refs, kv.map((e) => parseIdentityValueKey(e.key)).filter((k) => k !== undefined).map((k) => `${k.labelKey} ${k.node}`), problems);
  diff('store allocation locks', [], kv.filter((e) => e.key.startsWith('cilium/state/identities/v1/locks/')).map((e) => e.key), problems);
  // Connectivity: every pod answers a ping from the lab pod of another node.
  let checked = 0;
  for (const p of want) {
    const from = rec.pods.find((q) => q.node !== p.node.name)!;
    try {
      execFileSync('ip', ['netns', 'exec', from.netns, 'ping', '-n', '-c', '1', '-W', '2', p.ip], { stdio: 'ignore' });
      checked++;
    } catch {
      problems.push(`connectivity: ${from.name} (${from.node}) cannot reach ${p.containerID} ${p.ip} on ${p.node.name}`);
    }
  }
  // And no netns of the runtime is left but the held pods'.
  const netns = readdirSync('/run/netns').filter((x) => x.startsWith(`${LAB}-pod-`) && /-\d{4,}$/.test(x));
  diff('pod netns', [...held.values()].map((p) => p.netns), netns, problems);
  return { problems, checked };
}

async function main(): Promise<number> {
  if (process.getuid?.() !== 0) throw new Error('run as root (network namespaces, BPF)');
  log(`soak: lab ${LAB}, ${NODES} nodes, ${STORE} store, ${WORKERS} workers per node, a fault every ~${FAULT_EVERY_S} s, for ${DURATION_S} s`);
  await labUp({ name: LAB, spec: buildSpec({ nodes: NODES, podsPerNode: 1, store: STORE }), progress: () => {} });
  const rec = loadLab(LAB);
  log(`lab up: ${rec.nodes.map((n) => n.name).join(', ')}; long ping ${rec.pods[0]!.name} -> ${rec.pods[1]!.name}`);
  const ping = longPing(rec.pods[0]!.netns, rec.pods[1]!.ip!);
  const work = [...rec.nodes.flatMap((n) => Array.from({ length: WORKERS }, () => worker(n))), retryDeletes(), injectFaults(rec)];
  await sleep(DURATION_S * 1000);
  stopping = true;
  log('time is up: waiting for operations and faults in flight');
  await Promise.all(work);
  await heal(rec);
  for (let i = 0; undeleted.size && i < 30; i++) {
    for (const p of [...undeleted.values()]) { ops.delRetried++; await delOne(p); }
    if (undeleted.size) await sleep(1000);
  }
  // Let the store's last deletes reach every node.
  await sleep(2000);
  const lost = await ping.stop();
  const { problems, checked } = await verify(rec);
  const statuses = await Promise.all(rec.nodes.map((n) => apiCall<{ pendingStoreDeletes?: { ips: string[] } }>(n.apiSocket, 'GET', '/v1/status')));
  const line = (k: string, v: string) => process.stdout.write(`${k.padEnd(22)} ${v}\n`);
  process.stdout.write('\n');
  line('duration', `${DURATION_S} s churn + ${((Date.now() - T0) / 1000 - DURATION_S).toFixed(1)} s setup, heal and check`);
  line('operations', `${ops.add + ops.del} CNI calls: ${ops.add} ADD (${ops.addFailed} failed), ${ops.del} DEL (${ops.delFailed} failed, ${ops.delRetried} retries)`);
  line('faults', `${faults.agentKill + faults.agentStop + faults.storeStop}: ${faults.agentKill} agent SIGKILL+restart, ${faults.agentStop} agent SIGSTOP, ${faults.storeStop} store outages`);
  line('long ping', `${lost.got}/${lost.sent} replies, ${lost.sent - lost.got} packets lost`);
  line('pods at the end', `${held.size} of the runtime + ${rec.pods.length} of the lab; ${checked} answered a ping from another node`);
  line('undeleted', `${undeleted.size} pods whose DEL never succeeded`);
  line('pending store deletes', `${statuses.reduce((a, s) => a + (s.pendingStoreDeletes?.ips.length ?? 0), 0)}`);
  line('leftovers', problems.length ? `${problems.length}:` : 'none');
  for (const p of problems) process.stdout.write(`  - ${p}\n`);
  return problems.length === 0 && undeleted.size === 0 && lost.sent > 0 && lost.sent === lost.got ? 0 : 1;
}

let code = 1;
try {
  code = await main();
} catch (e) {
  process.stderr.write(`soak: ${(e as Error).stack ?? e}\n`);
} finally {
  stopping = true;
  await cleanup();
}
process.exit(code);
