// Text form of `membrane datapath explain`: the seed's device table and the
// routes on cilium_host, rendered from an Explanation (the JSON form is the object itself).
import { HOST_DEVICE } from '../datapath/constants.ts';
import type { ExplainedProgram, Explanation, Route } from '../datapath/explain.ts';
import { table } from './output.ts';

function progText(p: ExplainedProgram[]): string {
  return p.map((x) => `${x.name} (${x.mode === 'tcx' ? 'tcx' : 'tc'})`).join(', ') || '-';
}

export function formatRoute(r: Route, dev: string): string {
  const parts = [r.dst];
  if (r.gateway) parts.push(`via ${r.gateway}`);
  parts.push(`dev ${dev}`);
  if (r.protocol !== undefined && r.protocol !== 'boot') parts.push(`proto ${r.protocol}`);
  if (r.scope === 'link') parts.push('scope link');
  if (r.prefsrc) parts.push(`src ${r.prefsrc}`);
  if (r.metric) parts.push(`metric ${r.metric}`);
  if (r.mtu) parts.push(`mtu ${r.mtu}`);
  return parts.join(' ');
}

export function renderExplain(e: Explanation): string {
  const rows = e.devices.map((d) => d.present
    ? [`${d.name}(${d.ifindex})`, d.type, d.addresses.join(', ') || 'none', d.mtu, `${d.up ? 'UP' : 'DOWN'}${d.noarp ? ',NOARP' : ''}`,
      progText(d.programs.ingress), progText(d.programs.egress), d.callsMap ? `${d.callsMap}${d.callsMapPinned ? '' : ' (not pinned)'}` : '-']
    : [d.name, 'MISSING', '-', '-', '-', '-', '-', '-']);
  let s = `node ${e.nodeName} (pins under ${e.bpffsRoot}/${e.nodeName})\n\n`;
  s += table(['DEVICE', 'TYPE', 'IP', 'MTU', 'STATE', 'INGRESS', 'EGRESS', 'CALLS MAP'], rows);
  s += '\n' + e.devices.map((d) => `${d.name}: ${d.purpose}; traffic: ${d.traffic}`).join('\n') + '\n';
  s += `\nroutes via ${HOST_DEVICE}:\n` + (e.routes.map((r) => `  ${formatRoute(r, HOST_DEVICE)}`).join('\n') || '  none') + '\n';
  s += `\nrouting: ${e.routingMode}${e.routingMode === 'native' ? ` (other nodes' pod CIDRs via their node IPs on ${e.nativeDevice ?? '?'})` : ' (VXLAN through cilium_vxlan)'}; `
    + `masquerade: ${e.masquerade ? `on (pod traffic leaving the cluster gets the node IP on ${e.nativeDevice})` : 'off'}\n`;
  if (e.nativeRoutes.length) s += `routes via ${e.nativeDevice}:\n` + e.nativeRoutes.map((r) => `  ${formatRoute(r, e.nativeDevice!)}`).join('\n') + '\n';
  s += `\nhost routing: ${e.hostRouting}\n` + table(['PATH', 'DELIVERY', 'HOW'], e.paths.map((p) => [p.path, p.mode, p.how]));
  return s;
}
