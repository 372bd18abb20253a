// `membrane lab status`: the lab's stable JSON interface (docs/lab.md).
// From lab.json, with each pod's identity and endpoint ID refreshed from its
// node's agent when that agent answers. Fields are only ever added.
import { metricsURL } from '../agent/observe/constants.ts';
import { agentEndpoints, liveAgentPid } from './agents.ts';
import { labDir } from './layout.ts';
import { isOurs, processState } from './processes.ts';
import { loadLab, type LabRecord } from './record.ts';
import { liveUiURL } from './ui-process.ts';

export interface LabStatusNode {
  name: string;
  netns: string;
  nodeIP: string;
  podCIDR: string;
  routerIP: string;
  /** The live agent's pid (found by its node lock), else the recorded one. */
  agentPid: number | null;
  apiSocket: string;
  /** Added: whether the agent process is alive. */
  running: boolean;
  /** Added: the agent is alive but stopped (SIGSTOP): it answers nothing until continued. */
  stopped: boolean;
  logFile: string;
  configFile: string;
  /** Added: the agent's Prometheus metrics (reachable from inside the lab: `ip netns exec NETNS curl URL`; docs/observability.md). */
  metricsURL: string;
}

export interface LabStatusPod {
  name: string;
  node: string;
  netns: string;
  ifname: string;
  ip: string | null;
  labels: Record<string, string>;
  identity: number | null;
  endpointID: number | null;
}

export interface LabStatus {
  name: string;
  store: 'sqlite' | 'etcd';
  nodes: LabStatusNode[];
  pods: LabStatusPod[];
  /** Added: creating | ready | failed. */
  state: string;
  underlay: { netns: string; bridge: string; gateway: string };
  deviceMTU: number;
  /** Added: the lab's bpffs root (one directory per node below it). */
  pinRoot: string;
  etcd?: { endpoint: string; pid: number | null; running: boolean };
  /** Added: the web UI's URL (loopback) while `membrane ui` started by lab up runs, else null. */
  uiURL: string | null;
  /** Added: a host on the underlay outside the cluster, with no route to any pod CIDR (pod-to-world; docs/lab.md). */
  externalHost?: { name: string; netns: string; ip: string };
  /** Added: tunnel or native. */
  routingMode: 'tunnel' | 'native';
}

export async function labStatus(name: string): Promise<LabStatus> {
  return statusOf(loadLab(name));
}

export async function statusOf(rec: LabRecord): Promise<LabStatus> {
  const marker = `${labDir(rec.name)}/`;
  // The live agent, not the recorded pid: an agent restarted by hand is not in lab.json.
  const live = new Map(rec.nodes.map((n) => [n.name, liveAgentPid(n)]));
  const running = new Map(rec.nodes.map((n) => [n.name, live.get(n.name) !== undefined]));
  // A stopped agent is not asked anything: its socket accepts, but no answer would come.
  const stopped = new Map(rec.nodes.map((n) => [n.name, live.get(n.name) !== undefined && processState(live.get(n.name)!) === 'T']));
  // Identities and endpoint IDs as the agents see them now (a restarted agent keeps them, but ask anyway).
  const eps = new Map<string, { identity: number; id: number; ip: string }>();
  await Promise.all(rec.nodes.filter((n) => running.get(n.name) && !stopped.get(n.name)).map(async (n) => {
    try {
      for (const e of await agentEndpoints(n)) eps.set(e.containerID, { identity: e.identity, id: e.id, ip: e.ip });
    } catch { /* agent not answering: keep what lab.json has */ }
  }));
  return {
    name: rec.name,
    store: rec.store,
    nodes: rec.nodes.map((n) => ({
      name: n.name, netns: n.netns, nodeIP: n.nodeIP, podCIDR: n.podCIDR, routerIP: n.routerIP, agentPid: live.get(n.name) ?? n.agentPid ?? null,
      apiSocket: n.apiSocket, running: running.get(n.name) ?? false, stopped: stopped.get(n.name) ?? false, logFile: n.logFile, configFile: n.configFile,
      metricsURL: metricsURL(n.nodeIP),
    })),
    pods: rec.pods.map((p) => {
      const l = eps.get(p.containerID);
      return {
        name: p.name, node: p.node, netns: p.netns, ifname: p.ifname, ip: l?.ip ?? p.ip ?? null, labels: p.labels,
        identity: l?.identity ?? p.identity ?? null, endpointID: l?.id ?? p.endpointID ?? null,
      };
    }),
    state: rec.state,
    underlay: rec.underlay,
    deviceMTU: rec.deviceMTU,
    pinRoot: rec.pinRoot,
    uiURL: liveUiURL(rec),
    routingMode: rec.routingMode ?? 'tunnel',
    ...(rec.externalHost ? { externalHost: rec.externalHost } : {}),
    ...(rec.etcd ? { etcd: { endpoint: rec.etcd.endpoint, pid: rec.etcd.pid ?? null, running: isOurs(rec.etcd.pid, marker) } } : {}),
  };
}
