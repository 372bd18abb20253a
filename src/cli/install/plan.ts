// What `membrane install` puts on a host, as data: every file with its path
// on the target system, its mode and its content. Pure (no disk access
// beyond what the caller read), so the unit file and the conflist are
// checked by unit tests and `install --dry-run` shows exactly this.
//
//   /opt/cni/bin/membrane-cni                  the CNI plugin (a copy of cni/membrane-cni)
//   /etc/cni/net.d/10-membrane.conflist        network "membrane", agentSocket = the agent's API socket
//   /etc/membrane/config.yaml                  the node config (only with --config; else it must be there)
//   /etc/systemd/system/membrane-agent.service the agent as a service
import type { NodeConfig } from '../../shared/config.ts';

export const CONFIG_DIR = '/etc/membrane';
export const NODE_CONFIG = `${CONFIG_DIR}/config.yaml`;
/** What install wrote (path, sha256): uninstall removes these, install overwrites only these. */
export const MANIFEST = `${CONFIG_DIR}/install-manifest.json`;
export const UNIT_NAME = 'membrane-agent.service';
export const UNIT_DIR = '/etc/systemd/system';
export const DEFAULT_CNI_BIN_DIR = '/opt/cni/bin';
export const DEFAULT_CNI_CONF_DIR = '/etc/cni/net.d';
export const CONFLIST_NAME = '10-membrane.conflist';
export const NETWORK_NAME = 'membrane';

/**
 * The capabilities the agent runs with (the unit's bounding set: the agent
 * runs as root with these only): NET_ADMIN (devices, addresses, routes, tc
 * and tcx attachments, sysctls of its devices), SYS_ADMIN (setns into pod
 * network namespaces, bpffs, what the agent's own privilege check asks for),
 * BPF and PERFMON (programs and maps). No more: test/privileged/
 * install-agent.test.ts runs the agent with exactly this set and a pod's
 * traffic through it.
 */
export const AGENT_CAPABILITIES = ['CAP_NET_ADMIN', 'CAP_SYS_ADMIN', 'CAP_BPF', 'CAP_PERFMON'] as const;

export interface PlannedFile {
  /** Absolute path on the target system (install --root R writes R + path). */
  path: string;
  mode: number;
  content: Buffer;
  /** For messages: what the file is. */
  what: string;
}

export interface InstallInputs {
  cfg: NodeConfig;
  /** The node config text to write to NODE_CONFIG; undefined: one is already there and is used as it is. */
  configText?: string;
  /** The CNI plugin binary's bytes. */
  cniPlugin: Buffer;
  /** Absolute path of the `membrane` launcher the unit runs. */
  membraneBin: string;
  /** Directory of the `node` binary the launcher runs (put first on the unit's PATH). */
  nodeDir: string;
  cniBinDir?: string;
  cniConfDir?: string;
}

/** The conflist a runtime reads: the agent's socket is the only thing the plugin needs. */
export function conflist(cfg: Pick<NodeConfig, 'paths'>): string {
  // cniVersion 1.0.0 for runtimes whose libcni predates 1.1.0 (podman 4.3 vendors libcni 1.1.2); newer ones pick from cniVersions.
  return `${JSON.stringify({
    cniVersion: '1.0.0',
    cniVersions: ['1.0.0', '1.1.0'],
    name: NETWORK_NAME,
    plugins: [{ type: 'membrane-cni', agentSocket: cfg.paths.apiSocket }],
  }, null, 2)}\n`;
}

/** The command line the unit starts the agent with (also what the end-to-end test runs). */
export function agentCommand(membraneBin: string): string[] {
  return [membraneBin, 'agent', '--config', NODE_CONFIG];
}

/** The environment the unit gives the agent. */
export function agentEnvironment(nodeDir: string): Record<string, string> {
  const std = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];
  return { PATH: (std.includes(nodeDir) ? std : [nodeDir, ...std]).join(':') };
}

/** The shell line that mounts the node's bpffs before the agent starts, unless `dir` is on one already. */
export function bpffsMountCommand(dir: string): string {
  return `mkdir -p -m 0700 ${dir} && { [ "$(stat -f -c %T ${dir})" = bpf_fs ] || mount -t bpf -o mode=700 bpffs ${dir}; }`;
}

/**
 * The systemd unit. Ordered before the container runtimes (a runtime's first
 * CNI ADD finds the agent); restarts on failure; stops with SIGHUP, which
 * the agent takes as "restart": the node's store entries stay for leaseTTL
 * and its datapath keeps forwarding, so `systemctl restart` (an upgrade)
 * does not disturb traffic. Leaving the cluster for good is SIGTERM
 * (`systemctl kill -s TERM membrane-agent`) or `membrane node delete`.
 */
export function unitFile(i: Pick<InstallInputs, 'cfg' | 'membraneBin' | 'nodeDir'>): string {
  const env = agentEnvironment(i.nodeDir);
  const caps = AGENT_CAPABILITIES.join(' ');
  return [
    '# Written by membrane install; membrane uninstall removes it.',
    '[Unit]',
    'Description=Membrane agent (eBPF pod network)',
    `Documentation=file://${i.membraneBin.replace(/\/bin\/membrane$/, '')}/docs/deploy.md`,
    'After=network-online.target local-fs.target',
    'Wants=network-online.target',
    'Before=containerd.service crio.service podman.service kubelet.service',
    '',
    '[Service]',
    'Type=simple',
    ...Object.entries(env).map(([k, v]) => `Environment=${k}=${v}`),
    `ExecStartPre=${systemdEscape(`/bin/sh -c '${bpffsMountCommand(i.cfg.bpffsRoot)}'`)}`,
    `ExecStart=${agentCommand(i.membraneBin).join(' ')}`,
    'KillSignal=SIGHUP',
    'TimeoutStopSec=30',
    'Restart=on-failure',
    'RestartSec=2',
    'LimitNOFILE=1048576',
    'LimitMEMLOCK=infinity',
    `CapabilityBoundingSet=${caps}`,
    `AmbientCapabilities=${caps}`,
    'NoNewPrivileges=yes',
    '',
    '[Install]',
    'WantedBy=multi-user.target',
    '',
  ].join('\n');
}

/** A command line as systemd reads it: `%` starts a specifier (`%T` is the temp dir) and `$` a variable, so both are doubled. */
export function systemdEscape(cmd: string): string {
  return cmd.replace(/[%$]/g, (c) => c + c);
}

/** What systemd runs for an escaped command line (systemdEscape undone). */
export function systemdUnescape(cmd: string): string {
  return cmd.replace(/%%|\$\$/g, (m) => m[0]!);
}

/** Reads the unit's ExecStart, ExecStartPre (as systemd runs it), Environment and capabilities back (what the end-to-end tests run). */
export function parseUnit(text: string): { execStart: string[]; env: Record<string, string>; execStartPre?: string; capabilities: string[] } {
  const line = (k: string) => text.split('\n').find((l) => l.startsWith(`${k}=`))?.slice(k.length + 1);
  const env: Record<string, string> = {};
  for (const l of text.split('\n').filter((x) => x.startsWith('Environment='))) {
    const [k, ...v] = l.slice('Environment='.length).split('=');
    env[k!] = v.join('=');
  }
  const pre = line('ExecStartPre');
  return {
    execStart: (line('ExecStart') ?? '').split(' ').filter(Boolean),
    env,
    ...(pre ? { execStartPre: systemdUnescape(pre) } : {}),
    capabilities: (line('CapabilityBoundingSet') ?? '').split(' ').filter(Boolean),
  };
}

/** Every file install writes, in the order it writes them. */
export function planInstall(i: InstallInputs): PlannedFile[] {
  const cniBin = i.cniBinDir ?? DEFAULT_CNI_BIN_DIR;
  const cniConf = i.cniConfDir ?? DEFAULT_CNI_CONF_DIR;
  return [
    { path: `${cniBin}/membrane-cni`, mode: 0o755, content: i.cniPlugin, what: 'CNI plugin' },
    ...(i.configText !== undefined ? [{ path: NODE_CONFIG, mode: 0o600, content: Buffer.from(i.configText), what: 'node config' }] : []),
    { path: `${cniConf}/${CONFLIST_NAME}`, mode: 0o644, content: Buffer.from(conflist(i.cfg)), what: 'CNI network config' },
    { path: `${UNIT_DIR}/${UNIT_NAME}`, mode: 0o644, content: Buffer.from(unitFile(i)), what: 'systemd unit' },
  ];
}
