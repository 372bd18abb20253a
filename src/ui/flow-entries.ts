// The map entries that decided each hop of one flow, read from the node's
// pinned maps now, in the words `membrane trace` uses for its hops:
// cilium_lxc for a pod the packet leaves or enters, the ipcache entry
// (longest prefix) of the address a decision was about, the tunnel key of
// an encapsulation, the policy verdict and the policy map entry that
// matched, the conntrack entry of the connection. A flow is past: the
// entries are today's, which is what a reader debugging it wants to see.
import { listConntrack } from '../datapath/conntrack.ts';
import { listIpcache, type IpcacheEntry } from '../datapath/ipcache.ts';
import { identityName } from '../datapath/maps/identities.ts';
import { currentNode, markerPinDir } from '../datapath/node-marker.ts';
import { listEndpointMap } from '../datapath/node-maps.ts';
import { listEndpointPolicy, listHostPolicy } from '../datapath/policy-maps.ts';
import { MembraneError } from '../shared/errors.ts';
import { withNetns } from '../shared/netns.ts';
import type { WireFlow } from './flows.ts';

export interface HopEntries {
  /** The hop's observation point (Hubble's name), or policy-egress / policy-ingress / encap. */
  hop: string;
  decided: string[];
}

const ipNum = (ip: string): number => ip.split('.').reduce((a, o) => a * 256 + Number(o), 0);

/** Longest-prefix match, as the datapath's LPM lookup. */
function lpm(rows: readonly IpcacheEntry[], ip: string): IpcacheEntry | undefined {
  const x = ipNum(ip);
  let best: IpcacheEntry | undefined;
  let bestLen = -1;
  for (const r of rows) {
    const [net, len = '32'] = r.prefix.split('/');
    const l = Number(len);
    const base = ipNum(net!);
    if (x >= base && x < base + 2 ** (32 - l) && l > bestLen) { best = r; bestLen = l; }
  }
  return best;
}

const PROTO: Record<string, number> = { TCP: 6, UDP: 17, ICMPv4: 1 };
const idText = (id: number): string => (id < 256 ? `${id} (${identityName(id)})` : String(id));
const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

/**
 * The deciding entries of `flow`'s hops on its node (netns `netns`). Throws
 * E_BAD_REQUEST for a flow without IPv4 addresses.
 */
export function flowEntries(netns: string, flow: WireFlow): HopEntries[] {
  const src = flow.IP?.source;
  const dst = flow.IP?.destination;
  if (!src || !dst || !IPV4.test(src) || !IPV4.test(dst)) throw new MembraneError('explain flow', { code: 'E_BAD_REQUEST', cause: 'the flow needs IP.source and IP.destination (IPv4)' });
  const dir = withNetns(netns, () => markerPinDir(currentNode()));
  const ipcache = listIpcache(dir);
  const lxc = listEndpointMap(dir);
  let conns: ReturnType<typeof listConntrack> = [];
  try { conns = listConntrack(dir); } catch { /* no conntrack maps (an older datapath) */ }
  const ipc = (ip: string): string => {
    const r = lpm(ipcache, ip);
    if (!r) return `ipcache: no entry for ${ip}`;
    return `ipcache ${r.prefix}: identity ${idText(r.identity)}${r.tunnelEndpoint && r.tunnelEndpoint !== '0.0.0.0' ? `, tunnel endpoint ${r.tunnelEndpoint}` : ''} [${r.owner}]`;
  };
  const ep = (ip: string): string => {
    const e = lxc.find((x) => x.ip === ip);
    if (!e) return `cilium_lxc: no entry for ${ip}`;
    return e.flags & 1 ? `cilium_lxc ${ip}: this node (host)` : `cilium_lxc ${ip}: endpoint ${e.lxcId}, identity ${e.secId}, ifindex ${e.ifindex}, mac ${e.mac}`;
  };
  const l4 = flow.l4 ?? {};
  const proto = Object.keys(l4).map((k) => PROTO[k]).find((p) => p !== undefined);
  const ctLine = (state: string | undefined): string | undefined => {
    if (!state || state === 'unknown') return undefined;
    const entry = conns.filter((c) => c.proto === proto && ((c.saddr === src && c.daddr === dst) || (c.saddr === dst && c.daddr === src)))
      .sort((x, y) => y.created - x.created)[0];
    return `conntrack: ${state}${entry ? `; entry ${entry.summary} (${entry.table}): ${entry.packets} packets, expires in ${Math.round(entry.expiresIn)} s${entry.flagNames.length ? `, ${entry.flagNames.join(',')}` : ''}` : ''}`;
  };
  const out: HopEntries[] = [];
  const local = (ip: string) => lxc.some((x) => x.ip === ip && !(x.flags & 1));
  const hops = flow.hops ?? [];
  // At trace level 1 the first point a pod's packet crosses (from-endpoint) is not reported: its entries still decided.
  if (local(src) && !hops.some((h) => h.point === 'FROM_ENDPOINT') && flow.traffic_direction !== 'INGRESS' && !hops.some((h) => h.point === 'FROM_OVERLAY')) {
    out.push({ hop: 'FROM_ENDPOINT', decided: [ep(src), ipc(dst)] });
  }
  for (const h of hops) {
    const d: string[] = [];
    switch (h.point) {
      case 'FROM_ENDPOINT': d.push(ep(src), ipc(dst)); break;
      case 'TO_OVERLAY': d.push(ipc(dst)); break;
      case 'FROM_OVERLAY': d.push(ipc(src), `source identity ${(h as { src_identity?: number }).src_identity ?? '?'} from the VNI`); break;
      case 'TO_ENDPOINT': d.push(ep(dst)); break;
      case 'TO_STACK': case 'TO_HOST': case 'FROM_HOST': d.push(ipc(dst)); break;
      case 'DROPPED': if (flow.drop) d.push(`drop: ${flow.drop.reason_desc ?? ''} (${flow.drop.reason_text ?? ''}) at ${flow.drop.file ?? '?'}:${flow.drop.line ?? '?'}`); break;
      default: break;
    }
    const c = ctLine((h as { state?: string }).state);
    if (c) d.push(c);
    if (h.point === 'TO_OVERLAY' && flow.encap) out.push({ hop: 'encap', decided: [`tunnel key: remote ${String((flow.encap as { tunnel_endpoint?: string }).tunnel_endpoint)}, VNI ${String((flow.encap as { vni?: number }).vni)} (the source identity)`] });
    if (d.length) out.push({ hop: h.point, decided: d });
  }
  const pv = flow.policy_verdict as { direction?: string; verdict?: string; match?: string; remote_identity?: number; dport?: number; endpoint?: number; proto_num?: number } | undefined;
  if (pv?.endpoint !== undefined) {
    const epId = pv.endpoint;
    const decided = [`policy ${pv.direction} of endpoint ${epId}${epId === 1 ? ' (host firewall)' : ''}: ${String(pv.verdict).toUpperCase()}, remote identity ${idText(Number(pv.remote_identity))}, match ${pv.match}`];
    try {
      const entries = epId === 1 ? listHostPolicy(dir) ?? [] : listEndpointPolicy(dir, epId);
      const egress = pv.direction === 'egress';
      const remote = Number(pv.remote_identity);
      const port = Number(pv.dport ?? 0);
      const hit = entries.filter((x) => x.egress === egress && (x.identity === remote || x.identity === 0) && (x.protocol === 0 || x.protocol === pv.proto_num)
        && (x.portPrefixLen === 0 || (port >> (16 - x.portPrefixLen)) === (x.port >> (16 - x.portPrefixLen))));
      // The most specific decides (identity, then port, then protocol), as the datapath looks them up.
      hit.sort((a, b) => Number(b.identity !== 0) - Number(a.identity !== 0) || b.portPrefixLen - a.portPrefixLen || Number(b.protocol !== 0) - Number(a.protocol !== 0));
      const h = hit[0];
      decided.push(h ? `policy map ${epId === 1 ? 'host' : `cilium_policy_v2_${String(epId).padStart(5, '0')}`}: ${h.deny ? 'deny' : 'allow'} identity ${h.identity || 'any'} proto ${h.protocol || 'any'} port ${h.portPrefixLen ? h.port : 'any'}`
        : `policy map of endpoint ${epId}: no entry matches (default deny)`);
    } catch { /* the endpoint (and its map) may be gone */ }
    out.push({ hop: `policy-${pv.direction}`, decided });
  }
  return out;
}
