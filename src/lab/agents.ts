// One `membrane agent` per lab node: its config file, the detached process
// (started by agent-process.ts, log in the node's directory), and waiting
// until it serves its API and has learned the rest of the lab from the store.
import { mkdirSync, writeFileSync } from 'node:fs';
import { stringify } from 'yaml';
import { apiCall } from '../api/client.ts';
import { agentHolding } from '../agent/lock.ts';
import type { StatusReply } from '../agent/routes.ts';
import type { EndpointState } from '../agent/state-file.ts';
import { MembraneError } from '../shared/errors.ts';
import { agentReady, spawnAgentProcess } from './agent-process.ts';
import { labPinRoot, nodeDirOf } from './layout.ts';
import { detachedProcess, findProcessesWithArg, isOurs, sleep, throwIfAborted } from './processes.ts';
import type { LabRecord, NodeRecord } from './record.ts';

/** The node's agent config (YAML), written into its directory. */
export function writeAgentConfig(rec: LabRecord, n: NodeRecord): void {
  mkdirSync(nodeDirOf(rec.name, n.name), { recursive: true, mode: 0o700 });
  const store = rec.store === 'etcd'
    ? { backend: 'etcd', endpoints: [rec.etcd!.endpoint], ...(rec.etcd!.tls ? { tls: rec.etcd!.tls } : {}) }
    : { backend: 'sqlite', path: rec.storePath };
  writeFileSync(n.configFile, stringify({
    nodeName: n.name, nodeIP: n.nodeIP, routerIP: n.routerIP, podCIDR: n.podCIDR, deviceMTU: rec.deviceMTU,
    stateDir: n.stateDir, bpffsRoot: labPinRoot(rec.name), store, ...(rec.routingMode ? { routingMode: rec.routingMode } : {}),
  }), { mode: 0o600 });
}

/**
 * The pid of the node's live agent, whoever started it: the holder of its
 * node lock (the kernel's answer, right also after a restart by hand, when
 * lab.json still names the old pid), else the recorded pid while it still
 * runs an agent of this node's config, else one found by its command line
 * (an agent still starting, before it takes its lock). Undefined if none runs.
 */
export function liveAgentPid(n: NodeRecord): number | undefined {
  const holder = agentHolding(n.stateDir);
  if (holder) return holder;
  if (isOurs(n.agentPid, n.configFile)) return n.agentPid;
  return findProcessesWithArg('--config', n.configFile)[0];
}

/**
 * Spawns the agent detached; returns its pid (also its process group).
 * The environment passes through, plus the lab's recorded agentEnv where
 * this process does not set the variable itself.
 */
export function spawnAgent(rec: LabRecord, n: NodeRecord): number {
  const env = { ...process.env };
  for (const [k, v] of Object.entries(rec.agentEnv ?? {})) env[k] ??= v;
  const a = spawnAgentProcess({ name: n.name, netns: n.netns, configFile: n.configFile, apiSocket: n.apiSocket, env, logFile: n.logFile });
  return a.pid;
}

/**
 * Resolves once the node's agent answers /v1/healthz with ok; throws (with
 * its log's tail) if it exits or times out. Works from the record alone, so
 * any later command can wait for an agent an earlier one started.
 */
export function waitAgentReady(n: NodeRecord, timeoutMs = 30_000, signal?: AbortSignal): Promise<void> {
  return agentReady({ ...detachedProcess(n.agentPid, n.logFile), name: n.name, apiSocket: n.apiSocket }, timeoutMs, signal);
}

/** How long a lab poll waits for one agent's answer: a stopped agent must not hold a command for a minute. */
const POLL_TIMEOUT_MS = 2_000;

export function agentStatus(n: NodeRecord): Promise<StatusReply> {
  return apiCall<StatusReply>(n.apiSocket, 'GET', '/v1/status', undefined, { timeoutMs: POLL_TIMEOUT_MS });
}

export function agentEndpoints(n: NodeRecord): Promise<EndpointState[]> {
  return apiCall<EndpointState[]>(n.apiSocket, 'GET', '/v1/endpoints');
}

export async function agentRemoteNodes(n: NodeRecord): Promise<string[]> {
  const r = await apiCall<{ remote: { name: string }[] }>(n.apiSocket, 'GET', '/v1/nodes', undefined, { timeoutMs: POLL_TIMEOUT_MS });
  return r.remote.map((x) => x.name);
}

/**
 * Waits until every node's agent knows every other node and at least
 * `podIPs` pod IPs from the store (the cluster has converged).
 */
export async function waitConverged(nodes: NodeRecord[], podIPs: number, timeoutMs = 15_000, signal?: AbortSignal): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let missing = '';
  while (Date.now() < deadline) {
    throwIfAborted(signal, 'wait for the lab to converge');
    missing = '';
    for (const n of nodes) {
      const [remote, st] = await Promise.all([agentRemoteNodes(n), agentStatus(n)]).catch((): [string[], StatusReply | undefined] => [[], undefined]);
      const want = nodes.filter((o) => o !== n).map((o) => o.name).filter((o) => !remote.includes(o));
      if (want.length || !st || st.cluster.podIPs < podIPs) {
        missing = `${n.name} knows ${remote.length}/${nodes.length - 1} nodes${want.length ? ` (not ${want.join(', ')})` : ''}, ${st?.cluster.podIPs ?? '?'}/${podIPs} pod IPs`;
        break;
      }
    }
    if (!missing) return;
    await sleep(20);
  }
  throw new MembraneError('wait for the lab to converge', { code: 'E_LAB', cause: `after ${timeoutMs} ms ${missing}` });
}
