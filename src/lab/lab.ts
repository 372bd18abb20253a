// The lab: N nodes x M pods on one machine. Each node is a network
// namespace joined to a shared underlay bridge and runs its own
// `membrane agent`; each pod is a network namespace attached by the CNI
// plugin. Everything is recorded in lab.json as it is made, so `labDown`
// removes it all, also after `lab up` itself was killed.
import { existsSync, mkdirSync, rmdirSync, rmSync } from 'node:fs';
import { mountBpffs } from '../datapath/bpffs.ts';
import { objectPath } from '../datapath/objects.ts';
import { MembraneError } from '../shared/errors.ts';
import { apiCall } from '../api/client.ts';
import { deleteNodeFromStore } from '../agent/publisher.ts';
import { defaults } from '../shared/defaults.ts';
import { agentEndpoints, liveAgentPid, spawnAgent, waitAgentReady, waitConverged, writeAgentConfig } from './agents.ts';
import { checkCniPlugin, cniAdd, runCni } from './cni.ts';
import { etcdHealthy, newEtcdRecord, startEtcd, stopEtcd } from './etcd.ts';
import {
  checkLabName, EXTERNAL_HOST_IP, EXTERNAL_HOST_NAME, externalNetns, isLabNetns, LAB_PINS_ROOT, labDir, labPinRoot, LABS_ROOT, MAX_NODES, MAX_PODS_PER_NODE, nodeAddressing,
  nodeDirOf, nodeName, nodeNetns, podNetns, UNDERLAY_BRIDGE, UNDERLAY_GATEWAY, underlayNetns,
} from './layout.ts';
import { attachExternalHost, attachNodeToUnderlay, createNetns, deleteNetns, listNetns, netnsExists, setupUnderlay } from './namespaces.ts';
import { findLabProcesses, isOurs, killProcessGroup, processState, throwIfAborted } from './processes.ts';
import { labExists, loadLab, saveLab, tryLoadLab, type LabRecord, type NodeRecord, type PodRecord } from './record.ts';
import type { LabSpec, PodSpec } from './spec.ts';
import { spawnLabUi, waitLabUi } from './ui-process.ts';
import { apiSocketIn } from '../shared/config.ts';
import { forwardedVariables } from '../shared/env.ts';

export type Progress = (line: string) => void;

function preflight(name: string, store: 'sqlite' | 'etcd'): void {
  if (process.getuid?.() !== 0) throw new MembraneError('lab', { code: 'E_NOT_ROOT', cause: 'must run as root (network namespaces, BPF)' });
  checkLabName(name);
  checkCniPlugin();
  for (const o of ['bpf_host', 'bpf_lxc', 'bpf_overlay'] as const) objectPath(o);
  const leftovers = listNetns().filter((ns) => isLabNetns(name, ns));
  if (labExists(name) || existsSync(labDir(name)) || leftovers.length) {
    throw new MembraneError(`lab up ${name}`, {
      code: 'E_LAB_EXISTS', cause: `lab ${name} already exists${leftovers.length ? ` (netns ${leftovers.slice(0, 3).join(', ')}${leftovers.length > 3 ? ', ...' : ''})` : ''}`,
      hint: `membrane lab down --name ${name}, or pick another --name`,
    });
  }
  if (store === 'etcd') newEtcdRecord(name, underlayNetns(name), labDir(name)); // checks the binary
}

function newNodeRecord(rec: LabRecord, i: number): NodeRecord {
  const name = nodeName(i);
  const dir = nodeDirOf(rec.name, name);
  return {
    name, index: i, netns: nodeNetns(rec.name, i), ...nodeAddressing(i),
    configFile: `${dir}/config.yaml`, stateDir: `${dir}/state`, apiSocket: apiSocketIn(`${dir}/state`), logFile: `${dir}/agent.log`,
  };
}

function newPodRecord(rec: LabRecord, node: NodeRecord, j: number, spec: PodSpec): PodRecord {
  return {
    name: spec.name, node: node.name, nodeIndex: node.index, index: j, netns: podNetns(rec.name, node.index, j),
    containerID: `${rec.name}-${node.index}-${j}`, ifname: 'eth0', labels: spec.labels,
  };
}

/** Creates the node's netns and underlay link and writes its agent config (recorded before anything is made). */
function createNode(rec: LabRecord, n: NodeRecord, progress: Progress): void {
  rec.nodes.push(n);
  rec.namespaces.push(n.netns);
  rec.lastNodeIndex = Math.max(rec.lastNodeIndex ?? 0, n.index);
  saveLab(rec);
  createNetns(n.netns);
  attachNodeToUnderlay(rec.underlay.netns, n.netns, n.index, n.nodeIP, rec.deviceMTU);
  writeAgentConfig(rec, n);
  progress(`${n.name}: netns ${n.netns}, eth0 ${n.nodeIP}/24, pods ${n.podCIDR}, router ${n.routerIP}`);
}

function startAgent(rec: LabRecord, n: NodeRecord, progress: Progress): void {
  n.agentPid = spawnAgent(rec, n);
  saveLab(rec);
  progress(`${n.name}: agent started, pid ${n.agentPid}, log ${n.logFile}`);
}

function createPodNetns(rec: LabRecord, p: PodRecord): void {
  rec.pods.push(p);
  rec.namespaces.push(p.netns);
  saveLab(rec);
  createNetns(p.netns);
}

/** CNI ADD for each pod of the node, one after another (the agent serialises them anyway). */
async function attachPods(rec: LabRecord, n: NodeRecord, pods: PodRecord[], progress: Progress, signal?: AbortSignal): Promise<void> {
  for (const p of pods) {
    throwIfAborted(signal, `add pod ${p.name}`);
    p.ip = await cniAdd(n, p);
    p.createdAt = Date.now();
    saveLab(rec);
  }
  if (!pods.length) return;
  const eps = await agentEndpoints(n);
  for (const p of pods) {
    const ep = eps.find((e) => e.containerID === p.containerID);
    p.identity = ep?.identity;
    p.endpointID = ep?.id;
    progress(`${p.name}: ${p.ip} on ${n.name} (netns ${p.netns}, identity ${p.identity}, endpoint ${p.endpointID})`);
  }
  saveLab(rec);
}

async function bringUpNode(rec: LabRecord, n: NodeRecord, pods: PodRecord[], t0: number, progress: Progress, signal?: AbortSignal): Promise<void> {
  await waitAgentReady(n, 30_000, signal);
  n.readyAt = Date.now();
  saveLab(rec);
  progress(`${n.name}: agent ready (${secs(t0)})`);
  await attachPods(rec, n, pods, progress, signal);
}

const secs = (t0: number): string => `${((Date.now() - t0) / 1000).toFixed(2)} s`;

export interface UpOptions {
  name: string;
  spec: LabSpec;
  progress?: Progress;
  /** Aborting it stops lab up at the next step; it then removes what it made and throws E_INTERRUPTED. */
  signal?: AbortSignal;
  /** With the etcd store: TLS and client-certificate auth, certificates made for the lab (src/lab/etcd-pki.ts). */
  etcdTls?: boolean;
  /** Start the web UI (`membrane ui`, its URL in lab status as uiURL); default true. */
  ui?: boolean;
}

/**
 * Builds the lab. On failure everything made so far is removed again
 * (labDown) and the error is rethrown. Returns the record (state ready).
 */
export async function labUp(o: UpOptions): Promise<LabRecord> {
  const progress = o.progress ?? (() => {});
  const t0 = Date.now();
  preflight(o.name, o.spec.store);
  mountBpffs();
  const dir = labDir(o.name);
  const rec: LabRecord = {
    version: 1, name: o.name, state: 'creating', store: o.spec.store, createdAt: new Date().toISOString(), deviceMTU: o.spec.deviceMTU,
    underlay: { netns: underlayNetns(o.name), bridge: UNDERLAY_BRIDGE, gateway: UNDERLAY_GATEWAY },
    pinRoot: labPinRoot(o.name), nodes: [], pods: [], namespaces: [],
    ...(o.spec.routingMode === 'native' ? { routingMode: 'native' as const } : {}),
  };
  // The MEMBRANE_* switches of this process (e.g. MEMBRANE_LEASE_TTL) are recorded for every agent of the lab.
  const env = forwardedVariables();
  if (Object.keys(env).length) rec.agentEnv = env;
  if (o.spec.store === 'sqlite') rec.storePath = `${dir}/cluster.db`;
  else rec.etcd = newEtcdRecord(o.name, rec.underlay.netns, dir, o.etcdTls);
  // Root only, like the lab directory: the pins are the nodes' datapath.
  mkdirSync(rec.pinRoot, { recursive: true, mode: 0o700 });
  try {
    rec.namespaces.push(rec.underlay.netns);
    saveLab(rec);
    createNetns(rec.underlay.netns);
    setupUnderlay(rec.underlay.netns, rec.deviceMTU);
    progress(`underlay: netns ${rec.underlay.netns}, bridge ${UNDERLAY_BRIDGE} ${UNDERLAY_GATEWAY}/24`);
    rec.externalHost = { name: EXTERNAL_HOST_NAME, netns: externalNetns(o.name), ip: EXTERNAL_HOST_IP };
    rec.namespaces.push(rec.externalHost.netns);
    saveLab(rec);
    createNetns(rec.externalHost.netns);
    attachExternalHost(rec.underlay.netns, rec.externalHost.netns, EXTERNAL_HOST_IP, rec.deviceMTU);
    progress(`external host: netns ${rec.externalHost.netns}, eth0 ${EXTERNAL_HOST_IP}/24 (no route to pods)`);
    // etcd comes up while the node namespaces are made; agents need it before they start.
    const etcdUp = rec.etcd ? startEtcd(rec.etcd, rec.underlay.netns, (pid) => { rec.etcd!.pid = pid; saveLab(rec); }, 10_000, o.signal) : undefined;
    const nodes = o.spec.nodes.map((_, i) => newNodeRecord(rec, i + 1));
    for (const n of nodes) createNode(rec, n, progress);
    etcdUp?.catch(() => undefined); // awaited below; no unhandled rejection meanwhile
    if (etcdUp) {
      await etcdUp;
      progress(`etcd: ${rec.etcd!.endpoint} (pid ${rec.etcd!.pid}, in ${rec.underlay.netns})`);
    }
    throwIfAborted(o.signal, `lab up ${o.name}`);
    // Agents start in parallel: their start (Node, the bundle, loading the node's programs) is most of lab up.
    for (const n of nodes) startAgent(rec, n, progress);
    // The UI starts alongside the agents (it reads them only while a page is open).
    if (o.ui !== false) {
      rec.ui = spawnLabUi(rec);
      saveLab(rec);
    }
    const pods = nodes.map((n, i) => o.spec.nodes[i]!.map((s, j) => newPodRecord(rec, n, j + 1, s)));
    for (const p of pods.flat()) createPodNetns(rec, p);
    await Promise.all(nodes.map((n, i) => bringUpNode(rec, n, pods[i]!, t0, progress, o.signal)));
    await waitConverged(nodes, rec.pods.length, 15_000, o.signal);
    if (rec.ui) {
      const ui = await waitLabUi(rec.ui);
      rec.ui.url = ui.url;
      progress(ui.url ? `ui: ${ui.url}` : `ui: not started: ${ui.problem}; the lab works without it (membrane ui --lab ${o.name})`);
    }
    rec.state = 'ready';
    saveLab(rec);
    progress(`lab ${o.name} ready: ${nodes.length} nodes, ${rec.pods.length} pods, ${rec.store} store, in ${secs(t0)}`);
    return rec;
  } catch (e) {
    rec.state = 'failed';
    saveLab(rec);
    progress(`lab ${o.name} failed: ${(e as Error).message.split('\n')[0]}; removing what was made`);
    await labDown(o.name, () => {}).catch(() => undefined);
    throw e;
  }
}

export interface DownResult {
  processes: number;
  namespaces: string[];
  removed: string[];
}

/**
 * Removes everything of lab `name`: its processes (recorded pids, and any
 * agent or etcd whose config or data dir is in the lab's directory), its namespaces
 * (recorded, and any <name>-underlay/-node-<i>/-pod-<i>-<j>), its pins and
 * its directory. Idempotent; works without (or with a partial) lab.json.
 */
export async function labDown(name: string, progress: Progress = () => {}): Promise<DownResult> {
  checkLabName(name);
  const rec = tryLoadLab(name);
  const dir = labDir(name);
  const marker = `${dir}/`;
  const res: DownResult = { processes: 0, namespaces: [], removed: [] };

  const pids = new Set<number>();
  for (const n of rec?.nodes ?? []) {
    if (isOurs(n.agentPid, marker)) pids.add(n.agentPid!);
    const live = liveAgentPid(n); // restarted by hand: lab.json names the old pid
    if (live && isOurs(live, marker)) pids.add(live);
  }
  if (isOurs(rec?.etcd?.pid, marker)) pids.add(rec!.etcd!.pid!);
  if (isOurs(rec?.ui?.pid, marker)) pids.add(rec!.ui!.pid!);
  for (const p of findLabProcesses(dir)) pids.add(p);
  // Killed outright: the lab is going away, there is nothing to keep consistent.
  await Promise.all([...pids].map((p) => killProcessGroup(p, 'SIGKILL')));
  res.processes = pids.size;
  if (pids.size) progress(`killed ${pids.size} processes (agents${rec?.etcd ? ', etcd' : ''})`);

  // Pods first (their lxc peers go with them), then nodes, then the underlay.
  const rank = (ns: string) => (ns.includes('-pod-') ? 0 : ns.endsWith('-underlay') ? 2 : 1);
  // Only names of this lab's pattern, even from lab.json: a damaged record cannot make it delete anything else.
  const all = new Set([...(rec?.namespaces ?? []), ...listNetns()].filter((ns) => isLabNetns(name, ns)));
  const failures: string[] = [];
  for (const ns of [...all].sort((a, b) => rank(a) - rank(b))) {
    try {
      if (deleteNetns(ns)) res.namespaces.push(ns);
    } catch (e) {
      failures.push((e as Error).message);
    }
  }
  if (res.namespaces.length) progress(`deleted ${res.namespaces.length} network namespaces`);

  for (const path of [labPinRoot(name), dir]) {
    if (!existsSync(path)) continue;
    rmSync(path, { recursive: true, force: true });
    res.removed.push(path);
    progress(`removed ${path}`);
  }
  // The parent directories go too when this was the last lab (the machine as found).
  for (const parent of [LAB_PINS_ROOT, LABS_ROOT]) {
    try { rmdirSync(parent); } catch { /* not empty or not there */ }
  }
  // Everything else was still removed; running lab down again retries what failed.
  if (failures.length) throw new MembraneError(`lab down ${name}`, { code: 'E_LAB', cause: failures.join('; ') });
  return res;
}

function nextNodeIndex(rec: LabRecord): number {
  // Never reuse the index of a stopped node: its lease may still be alive in the store.
  const i = Math.max(rec.lastNodeIndex ?? 0, ...rec.nodes.map((n) => n.index)) + 1;
  if (i > MAX_NODES) throw new MembraneError('add node', { code: 'E_LAB', cause: `at most ${MAX_NODES} nodes` });
  return i;
}

function readyLab(name: string): LabRecord {
  const rec = loadLab(name);
  if (rec.state !== 'ready') {
    throw new MembraneError(`lab ${name}`, { code: 'E_LAB', cause: `it is ${rec.state}, not ready`, hint: `membrane lab down --name ${name}, then lab up again` });
  }
  return rec;
}

/** Adds one node (next free index) with `pods` pods, and waits until the whole lab knows it. */
export async function addNode(name: string, pods: PodSpec[] | number, progress: Progress = () => {}): Promise<{ rec: LabRecord; node: NodeRecord }> {
  const t0 = Date.now();
  const rec = readyLab(name);
  const n = newNodeRecord(rec, nextNodeIndex(rec));
  const specs = typeof pods === 'number' ? Array.from({ length: pods }, (_, j) => ({ name: `pod-${n.index}-${j + 1}`, labels: { app: `pod-${n.index}-${j + 1}` } })) : pods;
  if (specs.length > MAX_PODS_PER_NODE) throw new MembraneError('add node', { code: 'E_USAGE', cause: `at most ${MAX_PODS_PER_NODE} pods per node` });
  for (const s of specs) if (rec.pods.some((p) => p.name === s.name)) throw new MembraneError('add node', { code: 'E_USAGE', cause: `pod ${s.name} already exists` });
  try {
    createNode(rec, n, progress);
    startAgent(rec, n, progress);
    const podRecs = specs.map((s, j) => newPodRecord(rec, n, j + 1, s));
    for (const p of podRecs) createPodNetns(rec, p);
    await bringUpNode(rec, n, podRecs, t0, progress);
    await waitConverged(rec.nodes, rec.pods.length);
  } catch (e) {
    // Nothing half-added: the node goes again (the rest of the lab is untouched).
    await removeNode(rec, n).catch(() => undefined);
    throw e;
  }
  progress(`${n.name} joined lab ${name} (${secs(t0)})`);
  return { rec, node: n };
}

/** Adds one pod to `node` (next free index there); returns it once CNI ADD succeeded. */
export async function addPod(name: string, node: string, spec: { name?: string; labels?: Record<string, string> }, progress: Progress = () => {}): Promise<PodRecord> {
  const rec = readyLab(name);
  const n = findNode(rec, node);
  const j = Math.max(0, ...rec.pods.filter((p) => p.nodeIndex === n.index).map((p) => p.index), ...rec.namespaces.map((ns) => {
    const m = /-pod-(\d+)-(\d+)$/.exec(ns);
    return m && Number(m[1]) === n.index ? Number(m[2]) : 0;
  })) + 1;
  const podName = spec.name ?? `pod-${n.index}-${j}`;
  if (rec.pods.some((p) => p.name === podName)) throw new MembraneError(`add pod ${podName}`, { code: 'E_USAGE', cause: 'a pod of that name exists' });
  const p = newPodRecord(rec, n, j, { name: podName, labels: { app: podName, ...(spec.labels ?? {}) } });
  createPodNetns(rec, p);
  try {
    await attachPods(rec, n, [p], progress);
  } catch (e) {
    // Nothing half-made: a failed ADD leaves nothing in the node; drop the pod's netns and record.
    deleteNetns(p.netns);
    rec.pods = rec.pods.filter((x) => x !== p);
    rec.namespaces = rec.namespaces.filter((x) => x !== p.netns);
    saveLab(rec);
    throw e;
  }
  return p;
}

/** Deletes a pod: CNI DEL, then its netns. */
export async function deletePod(name: string, pod: string, progress: Progress = () => {}): Promise<void> {
  const rec = loadLab(name);
  const p = rec.pods.find((x) => x.name === pod);
  if (!p) throw new MembraneError(`delete pod ${pod}`, { code: 'E_USAGE', cause: `no such pod in lab ${name}` });
  const n = rec.nodes.find((x) => x.name === p.node);
  if (n) {
    const r = await runCni('DEL', n, p);
    if (r.code !== 0) throw new MembraneError(`delete pod ${pod}`, { code: 'E_LAB', cause: r.out?.msg ?? r.text });
  }
  deleteNetns(p.netns);
  rec.pods = rec.pods.filter((x) => x !== p);
  rec.namespaces = rec.namespaces.filter((x) => x !== p.netns);
  saveLab(rec);
  progress(`${pod} deleted`);
}

export function findNode(rec: LabRecord, node: string): NodeRecord {
  const n = rec.nodes.find((x) => x.name === node || x.netns === node);
  if (!n) throw new MembraneError(`node ${node}`, { code: 'E_USAGE', cause: `no such node in lab ${rec.name} (nodes: ${rec.nodes.map((x) => x.name).join(', ')})` });
  return n;
}

/**
 * Stops a node as a machine failing and its operator deleting it would:
 * SIGKILL its agent (it says no goodbye), delete the node from the store
 * (peers drop its routes and ipcache entries at once, as they would after
 * `kubectl delete node`), then delete its pods' and its own netns and its pins.
 */
export async function stopNode(name: string, node: string, progress: Progress = () => {}): Promise<NodeRecord> {
  const rec = loadLab(name);
  const n = findNode(rec, node);
  const pid = liveAgentPid(n);
  const { pods, forgotten } = await removeNode(rec, n);
  progress(`${n.name}: agent${pid ? ` pid ${pid}` : ''} killed (SIGKILL); ${forgotten ?? 'no agent left to reach the store: its entries expire after leaseTTL'}; netns ${n.netns} and ${pods} pods removed`);
  return n;
}

/**
 * The operator's "delete node": asks another running agent of the lab (it
 * reaches the store from its netns, also the lab's etcd, which the root netns
 * cannot reach) to remove the node's store entries; with the sqlite store and
 * no agent left, opens the file directly. Undefined if neither was possible.
 */
async function forgetNode(rec: LabRecord, n: NodeRecord): Promise<string | undefined> {
  type Removed = { node: boolean; ips: number; references: number };
  const say = (r: Removed, by: string) => `removed from the store by ${by} (node key${r.node ? '' : ' (already gone)'}, ${r.ips} pod IPs, ${r.references} identity references)`;
  for (const o of rec.nodes) {
    const pid = o === n ? undefined : liveAgentPid(o);
    // A stopped (SIGSTOP) agent would never answer.
    if (!pid || processState(pid) === 'T') continue;
    try {
      return say(await apiCall<Removed>(o.apiSocket, 'DELETE', `/v1/nodes/${encodeURIComponent(n.name)}`), `${o.name}'s agent`);
    } catch { /* try the next one */ }
  }
  if (rec.store === 'sqlite' && rec.storePath && existsSync(rec.storePath)) {
    return say(await deleteNodeFromStore({ backend: 'sqlite', path: rec.storePath }, defaults.cluster, n.name), 'the lab');
  }
  return undefined;
}

/**
 * Kills the node's agent, removes it from the store, deletes its pods' and its
 * own netns, its pins and files, and drops it from the record.
 */
async function removeNode(rec: LabRecord, n: NodeRecord): Promise<{ pods: number; forgotten?: string }> {
  for (const pid of new Set([liveAgentPid(n), n.agentPid])) {
    if (pid && isOurs(pid, `${labDir(rec.name)}/`)) await killProcessGroup(pid, 'SIGKILL');
  }
  // After the kill: a live agent would publish its node again.
  const forgotten = await forgetNode(rec, n).catch(() => undefined);
  const pods = rec.pods.filter((p) => p.node === n.name);
  for (const p of pods) deleteNetns(p.netns);
  deleteNetns(n.netns);
  rmSync(`${rec.pinRoot}/${n.name}`, { recursive: true, force: true });
  rmSync(nodeDirOf(rec.name, n.name), { recursive: true, force: true });
  rec.nodes = rec.nodes.filter((x) => x !== n);
  rec.pods = rec.pods.filter((p) => p.node !== n.name);
  const gone = new Set([n.netns, ...pods.map((p) => p.netns)]);
  rec.namespaces = rec.namespaces.filter((ns) => !gone.has(ns));
  saveLab(rec);
  return { pods: pods.length, forgotten };
}

/**
 * Restarts a node's agent the way an upgrade would: the live agent (whoever
 * started it; a SIGSTOPped one is continued first) gets SIGHUP, which stops it
 * without leaving the cluster (SIGKILL if it is not gone in 10 s), then a new
 * agent starts on the same config and is waited for. The node's datapath keeps
 * forwarding throughout and its peers keep it: no packet is lost.
 */
export async function restartAgent(name: string, node: string, progress: Progress = () => {}): Promise<{ node: NodeRecord; oldPid?: number }> {
  const t0 = Date.now();
  const rec = readyLab(name);
  const n = findNode(rec, node);
  const old = liveAgentPid(n);
  if (old) {
    try { process.kill(old, 'SIGCONT'); } catch { /* gone meanwhile */ }
    await killProcessGroup(old, 'SIGHUP', 10_000);
    progress(`${n.name}: agent pid ${old} stopped for a restart (SIGHUP: its store entries stay)`);
  }
  startAgent(rec, n, progress);
  await waitAgentReady(n);
  n.readyAt = Date.now();
  saveLab(rec);
  progress(`${n.name}: agent ready again, pid ${n.agentPid} (${secs(t0)})`);
  return { node: n, oldPid: old };
}

/** Stops (SIGKILL, like a crash) or starts the lab's etcd (same data dir and ports). */
export async function labEtcd(name: string, action: 'stop' | 'start', progress: Progress = () => {}): Promise<void> {
  const rec = loadLab(name);
  if (!rec.etcd) throw new MembraneError(`lab ${name} etcd ${action}`, { code: 'E_USAGE', cause: `the lab uses the ${rec.store} store` });
  const running = isOurs(rec.etcd.pid, `${labDir(name)}/`);
  if (action === 'stop') {
    if (running) await stopEtcd(rec.etcd);
    progress(running ? `etcd pid ${rec.etcd.pid} killed` : 'etcd was not running');
    return;
  }
  if (running && await etcdHealthy(rec.underlay.netns, rec.etcd)) return void progress(`etcd already running (pid ${rec.etcd.pid})`);
  if (!netnsExists(rec.underlay.netns)) throw new MembraneError(`lab ${name} etcd start`, { code: 'E_LAB', cause: `netns ${rec.underlay.netns} is gone` });
  await startEtcd(rec.etcd, rec.underlay.netns, (pid) => { rec.etcd!.pid = pid; saveLab(rec); });
  progress(`etcd started, pid ${rec.etcd.pid}`);
}

