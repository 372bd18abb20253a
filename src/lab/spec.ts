// What a lab should contain: nodes, their pods and the pods' labels, from
// flags (`--nodes 2 --pods-per-node 2 --labels pod-1-1=role=web,...`) or a
// lab file (YAML or JSON). Validated completely before anything is created.
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { defaults, MAX_MTU, MIN_MTU } from '../shared/defaults.ts';
import { ConfigError } from '../shared/errors.ts';
import { MAX_NODES, MAX_PODS_PER_NODE, podName } from './layout.ts';
import type { StoreKind } from './record.ts';

export interface PodSpec {
  name: string;
  labels: Record<string, string>;
}

export interface LabSpec {
  store: StoreKind;
  deviceMTU: number;
  /** Every agent's routingMode (default tunnel). */
  routingMode?: 'tunnel' | 'native';
  /** Per node (index i+1), its pods. */
  nodes: PodSpec[][];
}

export interface SpecInput {
  nodes?: number;
  podsPerNode?: number;
  store?: string;
  /** --routing tunnel|native */
  routing?: string;
  labels?: string;
  labFile?: string;
}

const LABEL_PART = /^[A-Za-z0-9]([A-Za-z0-9._/-]{0,61}[A-Za-z0-9])?$/;
const POD_NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * `POD=KEY=VALUE` assignments separated by commas, e.g.
 * `pod-1-1=role=web,pod-2-1=role=db`. Returns labels per pod name.
 */
export function parseLabelFlag(s: string, problems: string[]): Map<string, Record<string, string>> {
  const out = new Map<string, Record<string, string>>();
  for (const item of s.split(',').map((x) => x.trim()).filter(Boolean)) {
    const m = /^([^=]+)=([^=]+)=(.*)$/.exec(item);
    if (!m) {
      problems.push(`--labels: "${item}" is not POD=KEY=VALUE`);
      continue;
    }
    const [, pod, key, value] = m as unknown as [string, string, string, string];
    if (!LABEL_PART.test(key)) problems.push(`--labels: key "${key}" of ${pod} is not a valid label key`);
    if (value !== '' && !LABEL_PART.test(value)) problems.push(`--labels: value "${value}" of ${pod} is not a valid label value`);
    out.set(pod, { ...(out.get(pod) ?? {}), [key]: value });
  }
  return out;
}

/** `KEY=VALUE` pairs separated by commas (one pod's labels, for `lab add-pod`). */
export function parseLabels(s: string): Record<string, string> {
  const problems: string[] = [];
  const out: Record<string, string> = {};
  for (const item of s.split(',').map((x) => x.trim()).filter(Boolean)) {
    const m = /^([^=]+)=(.*)$/.exec(item);
    if (!m) { problems.push(`--labels: "${item}" is not KEY=VALUE`); continue; }
    const [, key, value] = m as unknown as [string, string, string];
    if (!LABEL_PART.test(key)) problems.push(`--labels: "${key}" is not a valid label key`);
    if (value !== '' && !LABEL_PART.test(value)) problems.push(`--labels: "${value}" is not a valid label value`);
    out[key] = value;
  }
  if (problems.length) throw new ConfigError('labels', problems);
  return out;
}

function intIn(v: unknown, lo: number, hi: number, field: string, problems: string[]): number | undefined {
  if (v === undefined) return undefined;
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
  if (!Number.isInteger(n) || (n as number) < lo || (n as number) > hi) {
    problems.push(`${field}: must be an integer in ${lo}..${hi} (got ${JSON.stringify(v)})`);
    return undefined;
  }
  return n as number;
}

function checkLabels(v: unknown, field: string, problems: string[]): Record<string, string> {
  if (v === undefined) return {};
  if (v === null || typeof v !== 'object' || Array.isArray(v)) {
    problems.push(`${field}: must be a mapping of label keys to values`);
    return {};
  }
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(v)) {
    if (!LABEL_PART.test(k)) problems.push(`${field}.${k}: not a valid label key`);
    if (typeof val !== 'string' || (val !== '' && !LABEL_PART.test(val))) problems.push(`${field}.${k}: value must be a valid label value string (got ${JSON.stringify(val)})`);
    else out[k] = val;
  }
  return out;
}

/**
 * Builds the lab spec. A lab file may give `store`, `deviceMTU`, `labels`
 * (per pod name) and `nodes`: a count (with `podsPerNode`) or a list of
 * `{ pods: COUNT | [{ name?, labels? }] }`. Flags override the file's
 * node/pod counts and store. Every pod gets `app=<pod name>` unless it sets `app`.
 * Throws ConfigError listing every problem.
 */
export function buildSpec(input: SpecInput): LabSpec {
  const problems: string[] = [];
  let file: Record<string, any> = {};
  if (input.labFile) {
    try {
      const v = parse(readFileSync(input.labFile, 'utf8'));
      if (v === null || typeof v !== 'object' || Array.isArray(v)) problems.push(`${input.labFile}: must be a mapping (store, deviceMTU, routingMode, nodes, podsPerNode, labels)`);
      else file = v;
    } catch (e) {
      throw new ConfigError(`read lab file ${input.labFile}`, [(e as Error).message.split('\n')[0]!]);
    }
    for (const k of Object.keys(file)) if (!['store', 'deviceMTU', 'routingMode', 'nodes', 'podsPerNode', 'labels'].includes(k)) problems.push(`${k}: unknown key (known: store, deviceMTU, routingMode, nodes, podsPerNode, labels)`);
  }
  const store = (input.store ?? file.store ?? 'sqlite') as string;
  if (store !== 'sqlite' && store !== 'etcd') problems.push(`store: must be sqlite or etcd (got ${JSON.stringify(store)})`);
  const deviceMTU = intIn(file.deviceMTU, MIN_MTU, MAX_MTU, 'deviceMTU', problems) ?? defaults.deviceMTU;
  const routingMode = (input.routing ?? file.routingMode ?? defaults.routingMode) as string;
  if (routingMode !== 'tunnel' && routingMode !== 'native') problems.push(`${input.routing !== undefined ? '--routing' : 'routingMode'}: must be tunnel or native (got ${JSON.stringify(routingMode)})`);

  const podsPerNode = intIn(input.podsPerNode ?? file.podsPerNode, 0, MAX_PODS_PER_NODE, input.podsPerNode !== undefined ? '--pods-per-node' : 'podsPerNode', problems) ?? 2;
  let layout: (number | { name?: unknown; labels?: unknown }[])[] = [];
  if (input.nodes !== undefined || !Array.isArray(file.nodes)) {
    const n = intIn(input.nodes ?? file.nodes, 1, MAX_NODES, input.nodes !== undefined ? '--nodes' : 'nodes', problems) ?? 2;
    layout = Array.from({ length: n }, () => podsPerNode);
  } else {
    if (file.nodes.length < 1 || file.nodes.length > MAX_NODES) problems.push(`nodes: must list 1..${MAX_NODES} nodes`);
    layout = file.nodes.map((n: any, i: number) => {
      const pods = n?.pods ?? podsPerNode;
      if (typeof pods === 'number') return intIn(pods, 0, MAX_PODS_PER_NODE, `nodes[${i}].pods`, problems) ?? 0;
      if (!Array.isArray(pods)) { problems.push(`nodes[${i}].pods: must be a count or a list of { name, labels }`); return 0; }
      return pods;
    });
  }

  const extra = new Map<string, Record<string, string>>();
  if (file.labels !== undefined) {
    if (file.labels === null || typeof file.labels !== 'object') problems.push('labels: must map pod names to label mappings');
    else for (const [pod, l] of Object.entries(file.labels)) extra.set(pod, checkLabels(l, `labels.${pod}`, problems));
  }
  if (input.labels) for (const [pod, l] of parseLabelFlag(input.labels, problems)) extra.set(pod, { ...(extra.get(pod) ?? {}), ...l });

  const seen = new Set<string>();
  const nodes: PodSpec[][] = layout.map((entry, i) => {
    const list = typeof entry === 'number' ? Array.from({ length: entry }, () => ({})) : entry;
    return list.map((p: { name?: unknown; labels?: unknown }, j: number) => {
      const name = p?.name === undefined ? podName(i + 1, j + 1) : p.name;
      if (typeof name !== 'string' || !POD_NAME.test(name)) problems.push(`nodes[${i}].pods[${j}].name: must be a DNS label (got ${JSON.stringify(name)})`);
      if (seen.has(String(name))) problems.push(`pod name ${name} is used twice`);
      seen.add(String(name));
      const labels = { app: String(name), ...checkLabels(p?.labels, `nodes[${i}].pods[${j}].labels`, problems), ...(extra.get(String(name)) ?? {}) };
      return { name: String(name), labels };
    });
  });
  for (const pod of extra.keys()) if (!seen.has(pod)) problems.push(`labels: no pod named ${pod} in this lab (pods: ${[...seen].join(', ') || 'none'})`);
  if (problems.length) throw new ConfigError('lab spec', problems);
  return { store: store as StoreKind, deviceMTU, routingMode: routingMode as 'tunnel' | 'native', nodes };
}
