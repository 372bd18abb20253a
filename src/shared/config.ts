// Node configuration: one schema for `membrane datapath init` and the agent.
// Built once at the edge (the CLI), validated with every problem listed by
// field, completed with the defaults (src/shared/defaults.ts) and the values
// derived from them (route MTU, the node's paths, the store), then frozen
// and passed down. Nothing touches the kernel before this has passed, so bad
// input changes nothing, and no module below re-derives a value.
import { readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
import { apiSocketIn, defaults, MAX_MTU, MIN_MTU } from './defaults.ts';
import { env, type Env } from './env.ts';
import { ConfigError } from './errors.ts';
import { cidrContains, cidrsOverlap, isIPv4, parseCidr, parseIPv4, broadcastOf, type Cidr } from './ip.ts';

export interface RemoteNode {
  podCIDR: string;
  nodeIP: string;
  /** Optional: the remote node's router IP (cilium_host address); adds a remote-node ipcache entry. */
  routerIP?: string;
  name?: string;
}

export interface SqliteStoreConfig {
  backend: 'sqlite';
  /** The database file shared by every agent on this machine (created if missing). */
  path: string;
  /** How often watchers look for new events and expired leases are swept (default 50 ms). */
  pollIntervalMs?: number;
  /** How long events are kept for watchers that fall behind (default 10 minutes). */
  eventRetentionMs?: number;
}

/** Files (absolute paths) the etcd client reads when it connects: PEM, as etcd's own --cacert/--cert/--key. */
export interface EtcdTlsConfig {
  /** The CA that signed the etcd servers' certificates (default: the system's trusted CAs). */
  ca?: string;
  /** This node's client certificate, for etcd's --client-cert-auth; needs `key`. */
  cert?: string;
  key?: string;
}

export interface EtcdStoreConfig {
  backend: 'etcd';
  /** `host:port` or `http(s)://host:port`; https endpoints need TLS (`tls`, or the system's CAs). */
  endpoints: string[];
  tls?: EtcdTlsConfig;
  /** etcd's own authentication (etcdctl user add); needs `password` or `passwordFile`. */
  username?: string;
  /** Inline password: prefer passwordFile, which keeps it out of the node config. */
  password?: string;
  /** A file holding the password (its first line), readable by root only. */
  passwordFile?: string;
  /** Deadline for each request (default 5000 ms). */
  requestTimeoutMs?: number;
}

/** The cluster store, as the node config gives it and src/store opens it. */
export type StoreConfig = SqliteStoreConfig | EtcdStoreConfig;

/** Pod-side and remote-route MTU: the device MTU less the VXLAN overhead (outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14, Cilium's TunnelOverheadIPv4). */
export const TUNNEL_OVERHEAD_IPV4 = 50;

/** Where a node keeps things, all derived from the config in one place. */
export interface NodePaths {
  /** The node's pins: <bpffsRoot>/<nodeName>. */
  readonly pinDir: string;
  /** The agent's runtime directory. */
  readonly stateDir: string;
  /** Endpoints and IPAM, replaced atomically. */
  readonly stateFile: string;
  /** The agent's API (and the CNI plugin's transport). */
  readonly apiSocket: string;
}

export interface NodeConfig {
  readonly nodeName: string;
  readonly routerIP: string;
  readonly podCIDR: string;
  readonly deviceMTU: number;
  readonly tunnelPort: number;
  readonly tunnelSourcePortRange: string;
  readonly tunnelSrcPortLow: number;
  readonly tunnelSrcPortHigh: number;
  readonly enableEndpointRoutes: boolean;
  /** SNAT pod traffic to addresses outside every pod CIDR and node IP to the node IP (BPF, on the native device). */
  readonly enableMasquerade: boolean;
  /** tunnel: VXLAN between nodes; native: other nodes' pod CIDRs routed to their node IPs over the native device (autoDirectNodeRoutes). */
  readonly routingMode: 'tunnel' | 'native';
  /** bpf: bpf_redirect_peer / bpf_redirect_neigh where the hook allows; legacy: bpf_redirect and the stack. */
  readonly hostRouting: 'bpf' | 'legacy';
  readonly routeMetric: number;
  readonly remoteNodes: readonly RemoteNode[];
  /** This node's underlay IP (the tunnel endpoint peers send to). Required by the agent. */
  readonly nodeIP?: string;
  readonly cluster: string;
  readonly bpffsRoot: string;
  readonly store: StoreConfig;
  /**
   * Seconds the node's store entries outlive an agent that stops without leaving
   * (crash, SIGKILL, SIGSTOP, restart); SIGTERM removes them at once (defaults.ts;
   * MEMBRANE_LEASE_TTL overrides).
   */
  readonly leaseTTL: number;
  /** The node's labels, which clusterwide policies' nodeSelector match (the host firewall); kubernetes.io/hostname = nodeName is always added. */
  readonly nodeLabels: Readonly<Record<string, string>>;
  /** Attach as legacy tc filters even where tcx exists (MEMBRANE_FORCE_LEGACY_TC, for tests of the fallback). */
  readonly forceLegacyTc: boolean;
  // Derived: computed here once, used everywhere.
  /** deviceMTU - TUNNEL_OVERHEAD_IPV4 (native routing: deviceMTU): the pods' default route and the remote pod CIDR routes. */
  readonly routeMTU: number;
  readonly paths: NodePaths;
}

type Raw = Record<string, unknown>;
type Check = (v: unknown, field: string, problems: string[]) => unknown;

const bool: Check = (v, f, p) => (typeof v === 'boolean' ? v : void p.push(`${f}: must be true or false (got ${show(v)})`));
const intIn = (lo: number, hi: number): Check => (v, f, p) =>
  Number.isInteger(v) && (v as number) >= lo && (v as number) <= hi ? v : void p.push(`${f}: must be an integer in ${lo}..${hi} (got ${show(v)})`);
const ipv4: Check = (v, f, p) => (isIPv4(v) ? v : void p.push(`${f}: ${JSON.stringify(v)} is not a valid IPv4 address`));
const cidr: Check = (v, f, p) => {
  try { return parseCidr(v as string).text; } catch (e) { p.push(`${f}: ${(e as Error).message}`); return undefined; }
};
const nodeName: Check = (v, f, p) =>
  typeof v === 'string' && /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(v) ? v : void p.push(`${f}: must be a DNS label (lowercase letters, digits, '-', at most 63) (got ${show(v)})`);

const absPath: Check = (v, f, p) => (typeof v === 'string' && v.startsWith('/') ? v : void p.push(`${f}: must be an absolute path (got ${show(v)})`));

function show(v: unknown): string {
  return v === undefined ? 'nothing' : JSON.stringify(v);
}

const TOP_KEYS: Record<string, Check> = {
  nodeName,
  routerIP: ipv4,
  podCIDR: cidr,
  deviceMTU: intIn(MIN_MTU, MAX_MTU),
  tunnelPort: intIn(1, 65535),
  tunnelSourcePortRange: (v, f, p) => (typeof v === 'string' ? v : void p.push(`${f}: must be a string "low-high" (got ${show(v)})`)),
  enableEndpointRoutes: bool,
  enableMasquerade: bool,
  routingMode: (v, f, p) => (v === 'tunnel' || v === 'native' ? v : void p.push(`${f}: must be "tunnel" or "native" (got ${show(v)})`)),
  hostRouting: (v, f, p) => (v === 'bpf' || v === 'legacy' ? v : void p.push(`${f}: must be "bpf" or "legacy" (got ${show(v)})`)),
  routeMetric: intIn(0, 0xffffffff),
  remoteNodes: (v, f, p) => (Array.isArray(v) ? v : void p.push(`${f}: must be a list of { podCIDR, nodeIP } (got ${show(v)})`)),
  nodeIP: ipv4,
  cluster: nodeName,
  bpffsRoot: absPath,
  stateDir: absPath,
  apiSocket: absPath,
  leaseTTL: intIn(1, 86400),
  nodeLabels: (v, f, p) => {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return void p.push(`${f}: must be a mapping of label keys to string values (got ${show(v)})`);
    const bad = Object.entries(v as Raw).filter(([k, val]) => typeof val !== 'string' || k === '' || /[;=]/.test(k) || /;/.test(val as string));
    if (bad.length) return void p.push(`${f}: ${bad.map(([k]) => JSON.stringify(k)).join(', ')}: keys must be non-empty without ';' or '=', values strings without ';'`);
    return v;
  },
  store: (v, f, p) => (v !== null && typeof v === 'object' && !Array.isArray(v) ? v : void p.push(`${f}: must be a mapping { backend, path | endpoints } (got ${show(v)})`)),
};
const REQUIRED = ['nodeName', 'routerIP', 'podCIDR'];
const REMOTE_KEYS: Record<string, Check> = { podCIDR: cidr, nodeIP: ipv4, routerIP: ipv4, name: nodeName };

const STORE_KEYS = { sqlite: ['backend', 'path'], etcd: ['backend', 'endpoints', 'tls', 'username', 'password', 'passwordFile'] } as const;
const TLS_KEYS = ['ca', 'cert', 'key'] as const;

/**
 * The `store` mapping. Only its shape is checked here (the config is built
 * without touching the disk); the etcd client reads and checks the TLS and
 * password files when it connects, naming the key and the file.
 */
function storeConfig(s: Raw, problems: string[]): StoreConfig {
  if (s.backend !== 'sqlite' && s.backend !== 'etcd') {
    problems.push(`store.backend: must be "sqlite" or "etcd" (got ${show(s.backend)})`);
    return { backend: 'sqlite', path: defaults.sqlitePath };
  }
  const known: readonly string[] = STORE_KEYS[s.backend];
  for (const k of Object.keys(s)) if (!known.includes(k)) problems.push(`store.${k}: unknown key for the ${s.backend} store (known: ${known.join(', ')})`);
  if (s.backend === 'sqlite') {
    if (s.path !== undefined && (typeof s.path !== 'string' || !s.path.startsWith('/'))) problems.push(`store.path: must be an absolute path (got ${show(s.path)})`);
    return { backend: 'sqlite', path: (s.path as string | undefined) ?? defaults.sqlitePath };
  }
  const endpoints = Array.isArray(s.endpoints) ? s.endpoints : [];
  if (!Array.isArray(s.endpoints) || endpoints.length === 0 || !endpoints.every((e) => typeof e === 'string' && /^https?:\/\/[^/\s]+\/?$/.test(e))) {
    problems.push(`store.endpoints: must be a list of http(s)://host:port URLs (got ${show(s.endpoints)})`);
  }
  const schemes = new Set(endpoints.map((e) => String(e).split(':')[0]));
  // One client serves every endpoint with one set of credentials: TLS for all or for none.
  if (schemes.size > 1) problems.push('store.endpoints: mixes http:// and https:// (one client talks to all of them: use https:// for every endpoint, or for none)');
  const cfg: EtcdStoreConfig = { backend: 'etcd', endpoints: endpoints.map(String) };
  if (s.tls !== undefined) {
    if (s.tls === null || typeof s.tls !== 'object' || Array.isArray(s.tls)) problems.push(`store.tls: must be a mapping { ca, cert, key } of file paths (got ${show(s.tls)})`);
    else {
      const t = s.tls as Raw;
      const tls: EtcdTlsConfig = {};
      for (const k of Object.keys(t)) if (!(TLS_KEYS as readonly string[]).includes(k)) problems.push(`store.tls.${k}: unknown key (known: ${TLS_KEYS.join(', ')})`);
      for (const k of TLS_KEYS) if (t[k] !== undefined) tls[k] = absPath(t[k], `store.tls.${k}`, problems) as string;
      if ((t.cert === undefined) !== (t.key === undefined)) problems.push(`store.tls: ${t.cert === undefined ? 'key' : 'cert'} without ${t.cert === undefined ? 'cert' : 'key'} (a client certificate needs both)`);
      if (schemes.has('http')) problems.push('store.tls: given, but the endpoints are http:// (TLS endpoints are https://)');
      cfg.tls = tls;
    }
  }
  if (s.username !== undefined || s.password !== undefined || s.passwordFile !== undefined) {
    if (typeof s.username !== 'string' || s.username === '') problems.push(`store.username: must be a non-empty string when a password is given (got ${show(s.username)})`);
    else cfg.username = s.username;
    if ((s.password === undefined) === (s.passwordFile === undefined)) problems.push('store: give the password as exactly one of store.password and store.passwordFile');
    if (s.password !== undefined) {
      if (typeof s.password !== 'string' || s.password === '') problems.push('store.password: must be a non-empty string');
      else cfg.password = s.password;
    }
    if (s.passwordFile !== undefined) cfg.passwordFile = absPath(s.passwordFile, 'store.passwordFile', problems) as string;
  }
  return cfg;
}

/** Parses YAML text; a syntax error becomes a ConfigError naming the line. */
export function parseConfigText(text: string, source: string): Raw {
  const doc = parseDocument(text, { uniqueKeys: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0];
    const line = e.linePos?.[0]?.line;
    throw new ConfigError(`load config ${source}`, [`malformed YAML${line ? ` at line ${line}` : ''}: ${e.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '')}`]);
  }
  const v = doc.toJS();
  if (v === null || typeof v !== 'object' || Array.isArray(v)) {
    throw new ConfigError(`load config ${source}`, ['must be a YAML mapping of keys (nodeName, routerIP, podCIDR, ...)']);
  }
  return v as Raw;
}

export function readConfigFile(path: string): Raw {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError(`load config ${path}`, [`cannot read file: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`]);
  }
  return parseConfigText(text, path);
}

function parsePortRange(v: string, problems: string[]): [number, number] {
  const m = /^(\d{1,5})-(\d{1,5})$/.exec(v);
  const lo = m ? Number(m[1]) : NaN;
  const hi = m ? Number(m[2]) : NaN;
  if (!m || lo > 65535 || hi > 65535 || lo > hi || (lo === 0) !== (hi === 0)) {
    problems.push(`tunnelSourcePortRange: ${JSON.stringify(v)} must be "low-high" with 1 <= low <= high <= 65535, or "0-0" for the kernel default`);
    return [0, 0];
  }
  return [lo, hi];
}

/**
 * Validates a raw config object (from YAML and/or flags) and returns a frozen
 * NodeConfig with defaults applied. Throws ConfigError listing every problem.
 */
export function validateNodeConfig(raw: Raw, source = 'config', switches: Pick<Env, 'leaseTTL' | 'forceLegacyTc'> = env()): NodeConfig {
  const problems: string[] = [];
  const out: Raw = {};
  for (const key of Object.keys(raw)) {
    const check = TOP_KEYS[key];
    if (!check) {
      problems.push(`${key}: unknown key (known: ${Object.keys(TOP_KEYS).join(', ')})`);
      continue;
    }
    if (raw[key] === undefined) continue;
    out[key] = check(raw[key], key, problems);
  }
  for (const key of REQUIRED) if (raw[key] === undefined) problems.push(`${key}: required`);

  let local: Cidr | undefined;
  if (typeof out.podCIDR === 'string') local = parseCidr(out.podCIDR);
  if (local && typeof out.routerIP === 'string') {
    const r = parseIPv4(out.routerIP);
    if (!cidrContains(local, r)) problems.push(`routerIP: ${out.routerIP} is outside podCIDR ${local.text}`);
    else if (local.prefixLen < 31 && (r === local.network || r === broadcastOf(local))) {
      problems.push(`routerIP: ${out.routerIP} is the ${r === local.network ? 'network' : 'broadcast'} address of podCIDR ${local.text}`);
    }
  }
  if (out.routingMode === 'native' && raw.nodeIP === undefined) problems.push('nodeIP: required with routingMode native (other nodes route this node\'s pods to it)');
  if (local && local.prefixLen > 30) problems.push(`podCIDR: ${local.text} is too small for pods (at most /30)`);
  if (local && typeof out.nodeIP === 'string' && cidrContains(local, parseIPv4(out.nodeIP))) {
    problems.push(`nodeIP: ${out.nodeIP} is inside podCIDR ${local.text}`);
  }

  const [lo, hi] = parsePortRange((out.tunnelSourcePortRange as string | undefined) ?? defaults.tunnelSourcePortRange, problems);

  const remotes: RemoteNode[] = [];
  if (Array.isArray(out.remoteNodes)) {
    const seen: { cidr: Cidr; field: string }[] = [];
    out.remoteNodes.forEach((r: unknown, i: number) => {
      const field = `remoteNodes[${i}]`;
      if (r === null || typeof r !== 'object' || Array.isArray(r)) {
        problems.push(`${field}: must be a mapping { podCIDR, nodeIP } (got ${show(r)})`);
        return;
      }
      const rr = r as Raw;
      const node: Raw = {};
      for (const k of Object.keys(rr)) {
        const check = REMOTE_KEYS[k];
        if (!check) problems.push(`${field}.${k}: unknown key (known: ${Object.keys(REMOTE_KEYS).join(', ')})`);
        else node[k] = check(rr[k], `${field}.${k}`, problems);
      }
      for (const k of ['podCIDR', 'nodeIP']) if (rr[k] === undefined) problems.push(`${field}.${k}: required`);
      if (typeof node.podCIDR === 'string') {
        const c = parseCidr(node.podCIDR);
        if (local && cidrsOverlap(c, local)) problems.push(`${field}.podCIDR: ${c.text} overlaps the local podCIDR ${local.text}`);
        for (const s of seen) if (cidrsOverlap(c, s.cidr)) problems.push(`${field}.podCIDR: ${c.text} overlaps ${s.field}.podCIDR ${s.cidr.text}`);
        seen.push({ cidr: c, field });
      }
      if (node.routerIP !== undefined && typeof node.podCIDR === 'string' && typeof node.routerIP === 'string'
          && !cidrContains(parseCidr(node.podCIDR), parseIPv4(node.routerIP))) {
        problems.push(`${field}.routerIP: ${node.routerIP} is outside ${field}.podCIDR ${node.podCIDR}`);
      }
      remotes.push(node as unknown as RemoteNode);
    });
  }

  let store: StoreConfig = { backend: 'sqlite', path: defaults.sqlitePath };
  if (out.store !== undefined && typeof out.store === 'object') store = storeConfig(out.store as Raw, problems);

  if (problems.length > 0) throw new ConfigError(`invalid ${source}`, problems);

  const nodeName = out.nodeName as string;
  const bpffsRoot = (out.bpffsRoot as string | undefined) ?? defaults.bpffsRoot;
  const stateDir = (out.stateDir as string | undefined) ?? defaults.stateDir;
  const deviceMTU = (out.deviceMTU as number | undefined) ?? defaults.deviceMTU;
  const cfg: NodeConfig = {
    nodeName,
    routerIP: out.routerIP as string,
    podCIDR: out.podCIDR as string,
    deviceMTU,
    tunnelPort: (out.tunnelPort as number | undefined) ?? defaults.tunnelPort,
    tunnelSourcePortRange: (out.tunnelSourcePortRange as string | undefined) ?? defaults.tunnelSourcePortRange,
    tunnelSrcPortLow: lo,
    tunnelSrcPortHigh: hi,
    enableEndpointRoutes: (out.enableEndpointRoutes as boolean | undefined) ?? defaults.enableEndpointRoutes,
    enableMasquerade: (out.enableMasquerade as boolean | undefined) ?? defaults.enableMasquerade,
    routingMode: (out.routingMode as 'tunnel' | 'native' | undefined) ?? defaults.routingMode,
    hostRouting: (out.hostRouting as 'bpf' | 'legacy' | undefined) ?? defaults.hostRouting,
    routeMetric: (out.routeMetric as number | undefined) ?? defaults.routeMetric,
    remoteNodes: Object.freeze(remotes.map((r) => Object.freeze({ ...r }))),
    nodeIP: out.nodeIP as string | undefined,
    cluster: (out.cluster as string | undefined) ?? defaults.cluster,
    bpffsRoot,
    store: Object.freeze(store.backend === 'etcd' && store.tls ? { ...store, tls: Object.freeze({ ...store.tls }) } : store),
    leaseTTL: switches.leaseTTL ?? (out.leaseTTL as number | undefined) ?? defaults.leaseTTL,
    nodeLabels: Object.freeze({ ...(out.nodeLabels as Record<string, string> | undefined), 'kubernetes.io/hostname': nodeName }),
    forceLegacyTc: switches.forceLegacyTc,
    // Native routing adds no header: pods get the device MTU.
    routeMTU: out.routingMode === 'native' ? deviceMTU : deviceMTU - TUNNEL_OVERHEAD_IPV4,
    paths: Object.freeze({
      pinDir: `${bpffsRoot}/${nodeName}`,
      stateDir,
      stateFile: `${stateDir}/endpoints.json`,
      apiSocket: (out.apiSocket as string | undefined) ?? apiSocketIn(stateDir),
    }),
  };
  return Object.freeze(cfg);
}

export { apiSocketIn };
