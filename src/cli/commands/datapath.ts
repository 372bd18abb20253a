// `membrane datapath init` and `membrane datapath explain`, and the config
// flags the agent shares. Read for every command line (the registry lists
// these commands): the config parser (yaml) and the datapath (netlink, libbpf
// through koffi) are imported inside the functions that use them.
import type { NodeConfig } from '../../shared/config.ts';
import { defaults } from '../../shared/defaults.ts';
import { MembraneError } from '../../shared/errors.ts';
import type { FlagSpec } from '../args.ts';
import type { Command, CommandContext } from '../command.ts';
import { json } from '../output.ts';

/** Flags that mirror config keys; a flag overrides the file. */
const CONFIG_FLAGS: Record<string, FlagSpec & { key: string; parse?: (s: string) => unknown }> = {
  config: { type: 'string', help: 'YAML node config (keys: nodeName, routerIP, podCIDR, deviceMTU, tunnelPort, tunnelSourcePortRange, enableEndpointRoutes, enableMasquerade, routingMode, hostRouting, routeMetric, remoteNodes, nodeIP, cluster, bpffsRoot, stateDir, apiSocket, leaseTTL, store; see README)', key: '' },
  nodeName: { type: 'string', help: 'node name', key: 'nodeName' },
  routerIP: { type: 'string', help: 'router IP (cilium_host address, the pods\' gateway)', key: 'routerIP' },
  podCIDR: { type: 'string', help: 'this node\'s pod CIDR', key: 'podCIDR' },
  deviceMTU: { type: 'string', help: `device MTU (default ${defaults.deviceMTU})`, key: 'deviceMTU', parse: num },
  tunnelPort: { type: 'string', help: `VXLAN UDP port (default ${defaults.tunnelPort})`, key: 'tunnelPort', parse: num },
  tunnelSourcePortRange: { type: 'string', help: `VXLAN source port range low-high (default ${defaults.tunnelSourcePortRange}: kernel default)`, key: 'tunnelSourcePortRange' },
  enableEndpointRoutes: { type: 'boolean', help: 'per-pod /32 routes to the lxc device instead of via cilium_host', key: 'enableEndpointRoutes' },
  routingMode: { type: 'string', help: `tunnel (VXLAN) or native (pod CIDRs routed to their node IPs) (default ${defaults.routingMode})`, key: 'routingMode' },
  hostRouting: { type: 'string', help: `bpf (bpf_redirect_peer/_neigh) or legacy (bpf_redirect and the stack) (default ${defaults.hostRouting})`, key: 'hostRouting' },
  routeMetric: { type: 'string', help: `metric of the routes on cilium_host (default ${defaults.routeMetric})`, key: 'routeMetric', parse: num },
  nodeIP: { type: 'string', help: 'this node\'s underlay IP', key: 'nodeIP' },
  bpffsRoot: { type: 'string', help: `bpffs directory for pins (default ${defaults.bpffsRoot})`, key: 'bpffsRoot' },
  stateDir: { type: 'string', help: `the agent's runtime directory: state file and API socket (default ${defaults.stateDir})`, key: 'stateDir' },
};

function num(s: string): unknown {
  return /^-?\d+$/.test(s) ? Number(s) : s;
}

/** Reads --config (if given) and applies flag overrides, then validates. */
export async function configFromArgs(ctx: CommandContext, what = 'datapath init'): Promise<NodeConfig> {
  const { readConfigFile, validateNodeConfig } = await import('../../shared/config.ts');
  const f = ctx.args.flags;
  const path = f.config as string | undefined;
  const raw: Record<string, unknown> = path ? readConfigFile(path) : {};
  for (const [name, spec] of Object.entries(CONFIG_FLAGS)) {
    if (!spec.key || f[name] === undefined) continue;
    raw[spec.key] = spec.parse ? spec.parse(f[name] as string) : f[name];
  }
  if (!path && Object.keys(raw).length === 0) {
    throw new MembraneError(what, { code: 'E_USAGE', cause: 'no configuration: give --config FILE or the flags (--node-name, --router-ip, --pod-cidr, ...)' });
  }
  return validateNodeConfig(raw, path ?? 'flags');
}

export const CONFIG_FLAG_SPECS: Record<string, FlagSpec> = Object.fromEntries(Object.entries(CONFIG_FLAGS).map(([k, { key: _k, parse: _p, ...spec }]) => [k, spec]));

export const datapathInit: Command = {
  path: ['datapath', 'init'],
  summary: 'create/update this node\'s devices, addresses, routes and host programs (run inside the node\'s netns; idempotent)',
  usage: '--config FILE [flags]',
  flags: CONFIG_FLAG_SPECS,
  async run(ctx) {
    const cfg = await configFromArgs(ctx);
    const { initNode } = await import('../../datapath/init.ts');
    const r = initNode(cfg);
    if (ctx.json) {
      ctx.out(json(r));
      return;
    }
    const created = r.devices.filter((d) => d.created).map((d) => d.name);
    ctx.out(`node ${r.nodeName}: ${created.length ? `created ${created.join(', ')}` : 'devices up to date'}${r.vxlanRecreated ? ' (cilium_vxlan recreated for the new port)' : ''}; ` +
      `routes +${r.routes.added} -${r.routes.removed}; ${r.programs.length} programs attached (${[...new Set(r.programs.map((p) => p.mode))].join(', ')})\n`);
    for (const n of r.notes) ctx.out(`note: ${n}\n`);
  },
};

export const datapathExplain: Command = {
  path: ['datapath', 'explain'],
  summary: 'the seed\'s device table from live state: type, addresses, MTU, programs per hook, calls maps, routes',
  async run(ctx) {
    const [{ explainNode }, { renderExplain }] = await Promise.all([import('../../datapath/explain.ts'), import('../render-explain.ts')]);
    const e = explainNode();
    ctx.out(ctx.json ? json(e) : renderExplain(e));
  },
};
