// The agent's persisted state: one JSON file per node, replaced atomically
// (write to a temp file, rename) so a crash of the agent at any moment
// leaves either the old or the new state, never half of one. No fsync: the
// file describes kernel state (veths, pinned maps and links) that a power
// cut or reboot loses too, after which restore finds every recorded veth
// gone and starts empty; what must survive is a crash of the process, and
// the page cache does. (It cost 1-3 ms per pod add, and lives on tmpfs by
// default anyway.)
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { MembraneError } from '../shared/errors.ts';
import type { IpamState } from './ipam.ts';

export interface EndpointState {
  id: number;
  containerID: string;
  ifname: string;
  netns: string;
  podName?: string;
  podNamespace?: string;
  labels: Record<string, string>;
  identity: number;
  ip: string;
  podMac: string;
  hostIfname: string;
  hostIfindex: number;
  hostMac: string;
  /** sha256 of the bpf_lxc.o the endpoint's program was loaded from: restore reloads only when it changed. */
  objectHash: string;
  state: 'ready';
  createdAt: string;
}

export interface AgentState {
  version: 1;
  nodeName: string;
  ipam: IpamState;
  endpoints: EndpointState[];
}

export function loadState(path: string, nodeName: string): AgentState {
  if (!existsSync(path)) return { version: 1, nodeName, ipam: { allocated: {}, cursor: 1 }, endpoints: [] };
  let s: AgentState;
  try {
    s = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new MembraneError(`load agent state ${path}`, { code: 'E_STATE', cause: e, hint: 'the file is corrupt; move it away to start with no endpoints (their devices are then cleaned up)' });
  }
  if (s.version !== 1 || s.nodeName !== nodeName) {
    throw new MembraneError(`load agent state ${path}`, { code: 'E_STATE', cause: `state belongs to node "${s.nodeName}" (version ${s.version}), not "${nodeName}"` });
  }
  return s;
}

export function saveState(path: string, s: AgentState): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.tmp`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, JSON.stringify(s, null, 1));
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}
