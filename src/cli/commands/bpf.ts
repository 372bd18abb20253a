// `membrane bpf ...`: listings of attachments and maps, read straight from
// the kernel (the node's pinned maps are found through cilium_host's marker).
// The datapath modules (libbpf and netlink through koffi) are imported when a
// listing runs: the registry reads this module for every command line.
import type { Command } from '../command.ts';
import { json, table } from '../output.ts';

/** The pin directory of the node whose netns this process runs in. */
export async function currentNodeDir(): Promise<string> {
  const { currentNode, markerPinDir } = await import('../../datapath/node-marker.ts');
  return markerPinDir(currentNode());
}

export const bpfNet: Command = {
  path: ['bpf', 'net'],
  summary: 'tc/tcx program attachments of this netns, as `bpftool net` shows them',
  async run(ctx) {
    const { listNodeAttachments } = await import('../../datapath/explain.ts');
    const att = listNodeAttachments();
    if (ctx.json) return void ctx.out(json(att));
    ctx.out('tc:\n');
    for (const a of att) {
      const name = a.hook.startsWith('tcx') ? a.progName : `${a.progName}:[${a.progId}]`;
      ctx.out(`${a.ifname}(${a.ifindex}) ${a.hook} ${name} prog_id ${a.progId}${a.linkId !== undefined ? ` link_id ${a.linkId}` : ''}\n`);
    }
  },
};

export const bpfIpcache: Command = {
  path: ['bpf', 'ipcache', 'list'],
  summary: 'cilium_ipcache_v2: prefix -> identity and tunnel endpoint, and which part of the agent wrote it (node, cluster, endpoint)',
  async run(ctx) {
    const [{ listIpcache }, { ipcacheFlagNames }, { identityName }] = await Promise.all([
      import('../../datapath/ipcache.ts'), import('../../datapath/maps/ipcache.ts'), import('../../datapath/maps/identities.ts')]);
    const rows = listIpcache(await currentNodeDir());
    if (ctx.json) return void ctx.out(json(rows));
    ctx.out(table(['IP PREFIX/ADDRESS', 'IDENTITY', 'SOURCE'], rows.map((r) => [r.prefix,
      `identity=${r.identity} (${identityName(r.identity)}) encryptkey=${r.key ?? 0} tunnelendpoint=${r.tunnelEndpoint ?? '0.0.0.0'} flags=${ipcacheFlagNames(r).join(',') || '<none>'}`, r.owner])));
  },
};

export const bpfEndpoints: Command = {
  path: ['bpf', 'endpoint', 'list'],
  summary: 'cilium_lxc: local endpoint IPs -> ifindex, endpoint id, identity, MACs',
  async run(ctx) {
    const [{ listEndpointMap }, { ENDPOINT_F_HOST }] = await Promise.all([import('../../datapath/node-maps.ts'), import('../../datapath/maps/endpoints.ts')]);
    const rows = listEndpointMap(await currentNodeDir()).sort((a, b) => a.ip.localeCompare(b.ip, undefined, { numeric: true }));
    if (ctx.json) return void ctx.out(json(rows));
    ctx.out(table(['IP ADDRESS', 'LOCAL ENDPOINT INFO'], rows.map((e) => [e.ip, (e.flags & ENDPOINT_F_HOST)
      ? '(localhost)'
      : `id=${e.lxcId} sec_id=${e.secId} flags=0x${e.flags.toString(16).padStart(4, '0')} ifindex=${e.ifindex} mac=${e.mac} nodemac=${e.nodeMac}`])));
  },
};

export const bpfMetrics: Command = {
  path: ['bpf', 'metrics', 'list'],
  summary: 'cilium_metrics: forwarded and dropped packets per reason, direction and source line',
  async run(ctx) {
    const { listMetrics } = await import('../../datapath/node-maps.ts');
    const rows = listMetrics(await currentNodeDir());
    if (ctx.json) return void ctx.out(json(rows));
    ctx.out(table(['REASON', 'DIRECTION', 'PACKETS', 'BYTES', 'LINE'], rows.map((r) => [r.reasonText, r.direction, r.packets, r.bytes, r.site])));
  },
};

export const bpfPolicy: Command = {
  path: ['bpf', 'policy', 'get'],
  summary: 'an endpoint\'s policy map (cilium_policy_v2_<ID>), or the host firewall\'s ("host"): remote identity, direction, port, allow/deny',
  usage: 'ENDPOINT_ID | host',
  async run(ctx) {
    const { positional } = await import('../command.ts');
    const which = positional(ctx, 'bpf policy get', 'ENDPOINT_ID | host');
    const [pm, { formatBlock }, { identityName }, { MembraneError }] = await Promise.all([
      import('../../datapath/policy-maps.ts'), import('../../policy/ports.ts'), import('../../datapath/maps/identities.ts'), import('../../shared/errors.ts')]);
    const dir = await currentNodeDir();
    let entries;
    if (which === 'host') {
      entries = pm.listHostPolicy(dir);
      if (!entries) {
        if (ctx.json) return void ctx.out(json(null));
        return void ctx.out('host firewall off: no policy selects this node (everything to and from the host is allowed)\n');
      }
    } else {
      if (!/^\d+$/.test(which)) throw new MembraneError(`bpf policy get ${which}`, { code: 'E_USAGE', cause: 'give an endpoint id (membrane endpoint list) or "host"' });
      entries = pm.listEndpointPolicy(dir, Number(which));
    }
    if (ctx.json) return void ctx.out(json(entries));
    ctx.out(table(['DIRECTION', 'IDENTITY', 'PORT/PROTO', 'VERDICT'], entries.map((e) => [
      e.egress ? 'egress' : 'ingress',
      e.identity === 0 ? 'ANY' : `${e.identity} (${identityName(e.identity)})`,
      formatBlock({ protocol: e.protocol, port: e.port, prefixLen: e.portPrefixLen }),
      e.deny ? 'deny' : 'allow',
    ])));
  },
};

export const bpfCt: Command = {
  path: ['bpf', 'ct', 'list'],
  summary: 'conntrack (cilium_ct4_global, cilium_ct_any4_global): tuple, direction, state, seconds left, source identity',
  async run(ctx) {
    const { listConntrack } = await import('../../datapath/conntrack.ts');
    const rows = listConntrack(await currentNodeDir());
    if (ctx.json) return void ctx.out(json(rows));
    ctx.out(table(['TUPLE', 'EXPIRES', 'FLAGS', 'SRC IDENTITY'], rows.map((r) => [
      r.summary, r.expiresIn > 0 ? `${r.expiresIn} s` : 'expired', [...r.flagNames, ...(r.txFlagNames.length ? [`tx:${r.txFlagNames.join('|')}`] : []), ...(r.rxFlagNames.length ? [`rx:${r.rxFlagNames.join('|')}`] : [])].join(',') || undefined,
      r.srcSecId,
    ])));
  },
};

export const bpfNat: Command = {
  path: ['bpf', 'nat', 'list'],
  summary: 'masquerade translations (cilium_snat_v4_external): egress = pod tuple -> node IP and port, ingress = reply tuple -> pod IP and port',
  async run(ctx) {
    const { listNat } = await import('../../datapath/conntrack.ts');
    const rows = listNat(await currentNodeDir());
    if (ctx.json) return void ctx.out(json(rows));
    ctx.out(table(['TUPLE', 'TRANSLATED TO', 'CREATED'], rows.map((r) => [
      `${r.proto === 6 ? 'TCP' : r.proto === 17 ? 'UDP' : r.proto === 1 ? 'ICMP' : r.proto} ${r.dir.toUpperCase()} ${r.saddr}:${r.sport} -> ${r.daddr}:${r.dport}`,
      `${r.dir === 'egress' ? 'source' : 'destination'} ${r.toAddr}:${r.toPort}`, r.created,
    ])));
  },
};
