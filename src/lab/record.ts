// lab.json: everything a lab made, written as it is made (before or right
// after each creation), so `lab down` can remove a lab whose `lab up` was
// killed half way. Replaced atomically (temp file + rename): a crash leaves
// the old or the new record, never half of one.
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { MembraneError } from '../shared/errors.ts';
import { labDir, labFile } from './layout.ts';
import type { LabUiRecord } from './ui-process.ts';

export type StoreKind = 'sqlite' | 'etcd';

export interface NodeRecord {
  name: string;
  /** 1-based; decides the node's addresses (layout.ts nodeAddressing). */
  index: number;
  netns: string;
  nodeIP: string;
  podCIDR: string;
  routerIP: string;
  configFile: string;
  stateDir: string;
  apiSocket: string;
  logFile: string;
  /** Set once the agent process is spawned (its process group id too: it runs detached). */
  agentPid?: number;
  /** Wall-clock ms when the agent answered on its socket. */
  readyAt?: number;
}

export interface PodRecord {
  name: string;
  node: string;
  nodeIndex: number;
  /** Index on its node (netns <lab>-pod-<node>-<j>). */
  index: number;
  netns: string;
  containerID: string;
  ifname: string;
  labels: Record<string, string>;
  /** Filled once CNI ADD succeeded. */
  ip?: string;
  identity?: number;
  endpointID?: number;
  /** Wall-clock ms when CNI ADD returned. */
  createdAt?: number;
}

export interface EtcdRecord {
  pid?: number;
  /** Client URL the agents use (on the underlay bridge). */
  endpoint: string;
  dataDir: string;
  logFile: string;
  /** The full command, so `lab etcd start` restarts it identically. */
  argv: string[];
  /** `lab up --etcd-tls`: the CA and the agents' client certificate and key (PEM files in the lab dir). */
  tls?: { ca: string; cert: string; key: string };
}

export interface LabRecord {
  version: 1;
  name: string;
  state: 'creating' | 'ready' | 'failed';
  store: StoreKind;
  createdAt: string;
  deviceMTU: number;
  underlay: { netns: string; bridge: string; gateway: string };
  /** A host on the underlay outside the cluster (no route to pod CIDRs): the world of pod-to-world. Labs made before it have none. */
  externalHost?: { name: string; netns: string; ip: string };
  /** tunnel (default) or native: every agent's routingMode. */
  routingMode?: 'tunnel' | 'native';
  pinRoot: string;
  storePath?: string;
  etcd?: EtcdRecord;
  nodes: NodeRecord[];
  pods: PodRecord[];
  /** Highest node index ever used: indexes of stopped nodes are not reused. */
  lastNodeIndex?: number;
  /** Agent environment chosen at `lab up` (MEMBRANE_* variables), given to agents added later too. */
  agentEnv?: Record<string, string>;
  /** Netns names in creation order (also those not yet filled in above). */
  namespaces: string[];
  /** The lab's web UI (`membrane ui`), started by lab up. */
  ui?: LabUiRecord;
}

export function labExists(lab: string): boolean {
  return existsSync(labFile(lab));
}

/** Reads lab.json; throws E_LAB_NOT_FOUND when there is none. */
export function loadLab(lab: string): LabRecord {
  let text: string;
  try {
    text = readFileSync(labFile(lab), 'utf8');
  } catch {
    throw new MembraneError(`lab ${lab}`, { code: 'E_LAB_NOT_FOUND', cause: `no such lab (${labFile(lab)} does not exist)`, hint: `create it with: membrane lab up --name ${lab}` });
  }
  try {
    return JSON.parse(text) as LabRecord;
  } catch (e) {
    throw new MembraneError(`read ${labFile(lab)}`, { code: 'E_LAB', cause: e, hint: `membrane lab down --name ${lab} still removes it` });
  }
}

/** lab.json if it is there and readable, else undefined (for `lab down` after a crash). */
export function tryLoadLab(lab: string): LabRecord | undefined {
  try {
    return loadLab(lab);
  } catch {
    return undefined;
  }
}

export function saveLab(rec: LabRecord): void {
  mkdirSync(labDir(rec.name), { recursive: true, mode: 0o700 });
  const path = labFile(rec.name);
  writeFileSync(`${path}.tmp`, JSON.stringify(rec, null, 1) + '\n', { mode: 0o600 });
  renameSync(`${path}.tmp`, path);
}
