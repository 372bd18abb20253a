// `membrane connectivity test --cluster FILE`: an end-to-end check of a real
// cluster, the way `cilium connectivity test` deploys its own pods. On every
// host it creates two short-lived test pods (a network namespace each),
// attached through the host's installed CNI plugin and conflist exactly as a
// container runtime would attach them (CNI ADD with the CNI_* variables and
// the execution config on stdin); then it checks traffic between them: pod
// to pod on one host, pod to pod across every pair of hosts both ways, host
// to its own and to remote pods, pod to its gateway, and a full-MTU ping with
// DF set (no fragmentation across the tunnel). Whatever happens, every test
// pod is released again through CNI DEL and its namespace removed.
//
// Hosts are reached through a command prefix from the cluster file (`ssh
// root@host`, or `ip netns exec NODE` for lab nodes driven as hosts); only
// `ip`, `ping`, `cat` and `env` are needed there, plus the installed plugin.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { ConfigError, MembraneError } from '../shared/errors.ts';
import type { ScenarioResult, SuiteResult } from './suite.ts';

export interface ClusterHost {
  name: string;
  /** Command prefix that runs a command on the host as root; [] runs it here. */
  exec: string[];
  /** The installed conflist on the host. */
  conflist: string;
  /** The CNI plugin directory on the host (CNI_PATH). */
  cniBinDir: string;
}

export interface ClusterFile { hosts: ClusterHost[] }

export const DEFAULT_CONFLIST = '/etc/cni/net.d/10-membrane.conflist';
export const DEFAULT_CNI_BIN_DIR = '/opt/cni/bin';

/** Reads and checks a cluster file (YAML); every problem listed. */
export function loadClusterFile(path: string): ClusterFile {
  let raw: unknown;
  try {
    raw = parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new MembraneError(`read cluster file ${path}`, { code: 'E_CONFIG', cause: e });
  }
  const problems: string[] = [];
  const hosts: ClusterHost[] = [];
  const list = (raw as { hosts?: unknown })?.hosts;
  if (!Array.isArray(list) || list.length === 0) problems.push('hosts: must be a list of {name, exec, conflist?, cniBinDir?} with at least one host');
  else {
    list.forEach((h: any, i) => {
      const at = `hosts[${i}]`;
      if (typeof h?.name !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(h.name)) problems.push(`${at}.name: must be a host name (got ${JSON.stringify(h?.name)})`);
      if (!Array.isArray(h?.exec) || !h.exec.every((a: unknown) => typeof a === 'string')) problems.push(`${at}.exec: must be a command prefix as a list of words, e.g. [ssh, root@host] ([] for this machine)`);
      for (const k of Object.keys(h ?? {})) if (!['name', 'exec', 'conflist', 'cniBinDir'].includes(k)) problems.push(`${at}.${k}: unknown key (known: name, exec, conflist, cniBinDir)`);
      for (const k of ['conflist', 'cniBinDir']) if (h?.[k] !== undefined && (typeof h[k] !== 'string' || !h[k].startsWith('/'))) problems.push(`${at}.${k}: must be an absolute path`);
      hosts.push({ name: h?.name, exec: h?.exec ?? [], conflist: h?.conflist ?? DEFAULT_CONFLIST, cniBinDir: h?.cniBinDir ?? DEFAULT_CNI_BIN_DIR });
    });
    const names = hosts.map((h) => h.name);
    for (const n of new Set(names.filter((n, i) => names.indexOf(n) !== i))) problems.push(`hosts: ${n} is listed twice`);
  }
  if (problems.length) throw new ConfigError(`invalid cluster file ${path}`, problems);
  return { hosts };
}

interface Run { code: number; stdout: string; stderr: string }

/** Runs argv on `host` (through its prefix), with optional stdin and extra environment. */
function onHost(host: ClusterHost, argv: string[], o: { input?: string; env?: Record<string, string>; timeoutMs?: number } = {}): Promise<Run> {
  const envWords = o.env ? ['env', ...Object.entries(o.env).map(([k, v]) => `${k}=${v}`)] : [];
  const full = [...host.exec, ...envWords, ...argv];
  return new Promise((resolve) => {
    const child = spawn(full[0]!, full.slice(1), { stdio: [o.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    // A command that exits without reading all of stdin (an early error) must not crash us with EPIPE.
    child.stdin?.on('error', () => {});
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (c) => { stdout += c; });
    child.stderr!.on('data', (c) => { stderr += c; });
    const timer = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs ?? 30_000);
    child.on('error', (e) => { clearTimeout(timer); resolve({ code: -1, stdout, stderr: `${full[0]}: ${e.message}` }); });
    child.on('close', (code) => { clearTimeout(timer); resolve({ code: code ?? -1, stdout, stderr }); });
    child.stdin?.end(o.input);
  });
}

async function onHostOk(host: ClusterHost, argv: string[], what: string, o: Parameters<typeof onHost>[2] = {}): Promise<string> {
  const r = await onHost(host, argv, o);
  if (r.code !== 0) throw new MembraneError(`${what} on ${host.name}`, { code: 'E_UNAVAILABLE', cause: `${argv[0]} exited ${r.code}: ${(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ')}` });
  return r.stdout;
}

interface TestPod {
  host: ClusterHost;
  name: string;
  netns: string;
  containerID: string;
  ip?: string;
  gateway?: string;
  mtu?: number;
  /** Each plugin's ADD result, for DEL's prevResult. */
  result?: unknown;
}

/** A conflist read from the host: name, version, plugins. */
interface Conflist { cniVersion: string; name: string; plugins: Record<string, unknown>[] }

async function readConflist(host: ClusterHost): Promise<Conflist> {
  const text = await onHostOk(host, ['cat', host.conflist], `read ${host.conflist}`);
  let c: Conflist;
  try {
    c = JSON.parse(text);
  } catch (e) {
    throw new MembraneError(`read ${host.conflist} on ${host.name}`, { code: 'E_CNI_CONFIG', cause: (e as Error).message });
  }
  if (typeof c.cniVersion !== 'string' || typeof c.name !== 'string' || !Array.isArray(c.plugins) || c.plugins.length === 0) {
    throw new MembraneError(`read ${host.conflist} on ${host.name}`, { code: 'E_CNI_CONFIG', cause: 'not a conflist (cniVersion, name, plugins)' });
  }
  return c;
}

/** One CNI command through every plugin of the list (ADD in order, DEL in reverse), as a runtime does. */
async function cni(pod: TestPod, list: Conflist, command: 'ADD' | 'DEL'): Promise<unknown> {
  const plugins = command === 'ADD' ? list.plugins : [...list.plugins].reverse();
  let prev: unknown = command === 'DEL' ? pod.result : undefined;
  let last: unknown;
  for (const p of plugins) {
    const { capabilities: _c, ...rest } = p as { capabilities?: unknown };
    const conf = { ...rest, cniVersion: list.cniVersion, name: list.name, ...(prev !== undefined ? { prevResult: prev } : {}) };
    const r = await onHost(pod.host, [`${pod.host.cniBinDir}/${p.type}`], {
      input: JSON.stringify(conf),
      env: {
        CNI_COMMAND: command, CNI_CONTAINERID: pod.containerID, CNI_NETNS: `/run/netns/${pod.netns}`, CNI_IFNAME: 'eth0',
        CNI_PATH: pod.host.cniBinDir, CNI_ARGS: `K8S_POD_NAMESPACE=membrane-check;K8S_POD_NAME=${pod.name}`,
      },
    });
    let out: any;
    try { out = r.stdout.trim() ? JSON.parse(r.stdout) : undefined; } catch { out = undefined; }
    if (r.code !== 0) {
      throw new MembraneError(`CNI ${command} ${pod.name} on ${pod.host.name} (plugin ${String(p.type)})`, {
        code: 'E_CNI_NOT_AVAILABLE', cause: out?.msg ? `CNI error ${out.code}: ${out.msg}` : (r.stderr || r.stdout).trim() || `exit ${r.code}`,
      });
    }
    if (command === 'ADD') prev = out;
    last = out;
  }
  return command === 'ADD' ? prev : last;
}

interface PingOut { ok: boolean; received: number; sent: number; measured: string }

async function ping(host: ClusterHost, fromNetns: string | undefined, ip: string, o: { size?: number; df?: boolean } = {}): Promise<PingOut> {
  const argv = ['ping', '-n', '-c', '3', '-i', '0.2', '-W', '2', ...(o.size ? ['-s', String(o.size)] : []), ...(o.df ? ['-M', 'do'] : []), ip];
  const r = await onHost(host, fromNetns ? ['ip', 'netns', 'exec', fromNetns, ...argv] : argv, { timeoutMs: 15_000 });
  const m = /(\d+) packets transmitted, (\d+) received/.exec(r.stdout);
  const rtt = /= [\d.]+\/([\d.]+)\//.exec(r.stdout);
  const sent = m ? Number(m[1]) : 0;
  const received = m ? Number(m[2]) : 0;
  const err = (r.stderr.trim() || (!m ? r.stdout.trim() : '')).split('\n')[0];
  return { ok: r.code === 0 && sent > 0 && received === sent, sent, received, measured: m ? `${received}/${sent} replies${rtt ? `, rtt ${rtt[1]} ms` : ''}${err ? ` (${err})` : ''}` : `no ping result: ${err}` };
}

export interface ClusterCheckOptions {
  onResult?: (r: ScenarioResult) => void;
  /** Test pods per host (default 2: the same-host scenario needs two). */
  podsPerHost?: number;
}

/**
 * Runs the check against the hosts of `file`. Never leaves a test pod behind:
 * DEL and netns removal run for every pod that was created, also when a
 * step fails (a failure to create pods is thrown after the cleanup).
 */
export async function runClusterCheck(file: ClusterFile, label: string, o: ClusterCheckOptions = {}): Promise<SuiteResult & { cleanup: string[] }> {
  const t0 = Date.now();
  const run = randomBytes(3).toString('hex');
  const scenarios: ScenarioResult[] = [];
  const cleanup: string[] = [];
  const pods: TestPod[] = [];
  const lists = new Map<string, Conflist>();
  const record = (r: ScenarioResult) => { scenarios.push(r); o.onResult?.(r); };
  const check = async (scenario: string, protocol: string, from: string, to: string, p: Promise<PingOut>) => {
    const s = Date.now();
    const r = await p;
    record({ scenario, protocol, from, to, pass: r.ok, status: r.ok ? 'pass' : 'fail', measured: r.measured, values: { sent: r.sent, received: r.received }, ms: Date.now() - s });
  };
  try {
    for (const host of file.hosts) lists.set(host.name, await readConflist(host));
    // Create the pods: a netns each, then CNI ADD through the installed plugin.
    for (const [hi, host] of file.hosts.entries()) {
      for (let j = 1; j <= (o.podsPerHost ?? 2); j++) {
        const pod: TestPod = { host, name: `check-${host.name}-${j}`, netns: `mbcheck-${run}-${hi + 1}-${j}`, containerID: `membrane-check-${run}-${hi + 1}-${j}` };
        await onHostOk(host, ['ip', 'netns', 'add', pod.netns], 'create test pod netns');
        pods.push(pod);
        await onHostOk(host, ['ip', '-n', pod.netns, 'link', 'set', 'lo', 'up'], 'set lo up');
        const res = await cni(pod, lists.get(host.name)!, 'ADD') as { ips?: { address: string; gateway?: string }[] };
        pod.result = res;
        const addr = res?.ips?.[0];
        if (!addr) throw new MembraneError(`CNI ADD ${pod.name} on ${host.name}`, { code: 'E_CNI_NOT_AVAILABLE', cause: 'no IP in the result' });
        pod.ip = addr.address.split('/')[0];
        pod.gateway = addr.gateway;
        // The path MTU is the smaller of eth0's and the default route's (the agent gives pods a route MTU below the device MTU for the tunnel).
        const link = JSON.parse(await onHostOk(host, ['ip', '-j', '-n', pod.netns, 'link', 'show', 'eth0'], 'read the pod\'s eth0'))[0];
        const route = /\bmtu (\d+)/.exec(await onHostOk(host, ['ip', '-n', pod.netns, 'route', 'show', 'default'], 'read the pod\'s default route'));
        pod.mtu = Math.min(link?.mtu ?? Infinity, route ? Number(route[1]) : Infinity);
        if (!Number.isFinite(pod.mtu)) pod.mtu = undefined;
      }
    }
    const byHost = (h: ClusterHost) => pods.filter((p) => p.host === h);
    for (const host of file.hosts) {
      const [a, b] = byHost(host);
      if (a && b) await check('pod-to-pod/same-node', 'ICMP', a.name, `${b.name} ${b.ip}`, ping(host, a.netns, b.ip!));
      if (a?.gateway) await check('pod-to-gateway', 'ICMP', a.name, `${host.name} ${a.gateway}`, ping(host, a.netns, a.gateway));
      if (a) await check('host-to-pod/same-node', 'ICMP', host.name, `${a.name} ${a.ip}`, ping(host, undefined, a.ip!));
    }
    for (const ha of file.hosts) {
      for (const hb of file.hosts.filter((h) => h !== ha)) {
        const a = byHost(ha)[0]!;
        const b = byHost(hb)[0]!;
        await check('pod-to-pod/cross-node', 'ICMP', a.name, `${b.name} ${b.ip}`, ping(ha, a.netns, b.ip!));
        await check('host-to-pod/cross-node', 'ICMP', ha.name, `${b.name} ${b.ip}`, ping(ha, undefined, b.ip!));
        // The largest packet the pod's MTU allows, DF set: must arrive whole through the tunnel.
        if (a.mtu) await check('pod-to-pod/full-mtu', `ICMP ${a.mtu}`, a.name, `${b.name} ${b.ip}`, ping(ha, a.netns, b.ip!, { size: a.mtu - 28, df: true }));
      }
    }
  } finally {
    // Release everything that was made, in reverse: DEL through the plugin, then the netns.
    for (const pod of [...pods].reverse()) {
      try {
        // Also after a failed ADD (the CNI spec asks runtimes to DEL then too).
        await cni(pod, lists.get(pod.host.name)!, 'DEL');
        cleanup.push(`${pod.host.name}: CNI DEL ${pod.containerID}`);
      } catch (e) {
        cleanup.push(`${pod.host.name}: CNI DEL ${pod.containerID} FAILED: ${(e as Error).message}`);
      }
      const r = await onHost(pod.host, ['ip', 'netns', 'del', pod.netns]);
      cleanup.push(`${pod.host.name}: netns ${pod.netns} ${r.code === 0 ? 'removed' : `NOT removed: ${r.stderr.trim()}`}`);
    }
  }
  const passed = scenarios.filter((s) => s.status === 'pass').length;
  const failed = scenarios.filter((s) => s.status === 'fail').length;
  return { lab: label, passed, failed, skipped: 0, durationMs: Date.now() - t0, scenarios, cleanup };
}
