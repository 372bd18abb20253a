// `membrane trace SRC DST`: where a packet goes, hop by hop, and where and
// why it stops. It sends one real probe (ICMP echo, or a TCP SYN / UDP
// datagram to --port) from SRC to DST while every node of the lab traces
// every packet (trace level 2, held by this command's event streams only
// for as long as it runs), collects the probe's events from every node, and
// orders them by their timestamps (one CLOCK_MONOTONIC for every node of a
// machine). For each hop it shows the node, the observation point, the
// device, the BPF program, and the map entry that decided it, read from that
// node's maps right after the probe: the endpoint entry (cilium_lxc) of a
// pod the packet leaves or enters, the ipcache entry (cilium_ipcache_v2,
// longest prefix) of the address the decision was about, the conntrack
// entry of the probe's connection, the tunnel key and VNI of an
// encapsulation, the policy verdict and the policy map entry that matched. A drop names its node, device, reason and source line.
//
// SRC and DST: a pod (NAME or NAMESPACE/NAME), a node (its netns sends from
// the host; as a destination its node IP), the lab's external host (by its
// name), or an IP address (destination).
import type { Command } from '../command.ts';
import { TARGET_FLAGS } from '../target.ts';

interface Hop {
  node: string;
  timeNs: bigint;
  kind: 'trace' | 'policy' | 'drop' | 'encap';
  point: string;
  device?: string;
  program?: string;
  decided: string[];
  reply: boolean;
}

export interface TraceResult {
  source: { name: string; ip: string; node?: string };
  destination: { name: string; ip: string; node?: string };
  protocol: 'icmp' | 'tcp' | 'udp';
  port?: number;
  hops: Omit<Hop, 'timeNs'>[];
  verdict: 'DELIVERED' | 'DROPPED' | 'NO_EVENTS' | 'LEFT_NODE';
  drop?: { node: string; point: string; device?: string; reason: number; reasonText: string; file: string; line: number };
  replySeen: boolean;
  lost: number;
  probe: { exitCode: number; output: string };
}

type Ev = Record<string, unknown> & { node: string; type: string };

const ipToNum = (ip: string): number => ip.split('.').reduce((a, o) => a * 256 + Number(o), 0);

/** Longest-prefix match in a listing of ipcache rows. */
function lpm<T extends { prefix: string }>(rows: T[], ip: string): T | undefined {
  const x = ipToNum(ip);
  let best: T | undefined;
  let bestLen = -1;
  for (const r of rows) {
    const [net, lenS] = r.prefix.split('/');
    const len = lenS === undefined ? 32 : Number(lenS);
    const size = 2 ** (32 - len);
    const base = ipToNum(net!);
    if (x >= base && x < base + size && len > bestLen) { best = r; bestLen = len; }
  }
  return best;
}

function parseIPv4(packetB64: unknown): { src: string; dst: string; proto: number } | undefined {
  if (typeof packetB64 !== 'string') return undefined;
  const b = Buffer.from(packetB64, 'base64');
  if (b.length < 34 || b.readUInt16BE(12) !== 0x0800) return undefined;
  const ip = (o: number) => `${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}`;
  return { src: ip(26), dst: ip(30), proto: b[23]! };
}

const PROGRAM: Record<string, string> = {
  'from-endpoint': 'cil_from_container', 'to-overlay': 'cil_to_overlay', 'from-overlay': 'cil_from_overlay', 'from-host': 'cil_from_host',
  'from-stack': 'cil_to_container', 'from-network': 'cil_from_netdev', 'to-network': 'cil_to_netdev',
};

export const traceCmd: Command = {
  path: ['trace'],
  summary: 'send one probe between two pods (or a node, or an IP) and print its path hop by hop: node, device, program, the deciding map entry; where and why it was dropped',
  usage: 'SRC DST [--proto icmp|tcp|udp] [--port N] [-o json]   (SRC, DST: pod NAME or NAMESPACE/NAME, node NAME, or DST an IP)',
  flags: {
    ...TARGET_FLAGS,
    proto: { type: 'string', help: 'icmp (default), tcp or udp' },
    port: { type: 'string', help: 'destination port for tcp/udp (default 80)' },
    src: { type: 'string', help: 'the source (instead of the first argument)' },
    dst: { type: 'string', help: 'the destination (instead of the second argument)' },
    dport: { type: 'string', help: 'N/PROTO, e.g. 80/tcp (the same as --port N --proto PROTO)' },
  },
  async run(ctx) {
    const [{ MembraneError }, { resolveTarget }, { labStatus }, { openStream }, { spawn }, ipc, nm, pm, { identityName }, { dropReasonText }] = await Promise.all([
      import('../../shared/errors.ts'), import('../target.ts'), import('../../lab/status.ts'), import('../../api/stream.ts'), import('node:child_process'),
      import('../../datapath/ipcache.ts'), import('../../datapath/node-maps.ts'), import('../../datapath/policy-maps.ts'), import('../../datapath/maps/identities.ts'),
      import('../../datapath/maps/drop-reasons.ts')]);
    const ctm = await import('../../datapath/conntrack.ts');
    const f = ctx.args.flags;
    const usage = (cause: string) => new MembraneError('read arguments', { code: 'E_USAGE', cause, hint: `usage: membrane trace ${traceCmd.usage}` });
    const srcRef = (f.src as string | undefined) ?? ctx.args.positionals[0];
    const dstRef = (f.dst as string | undefined) ?? ctx.args.positionals[f.src ? 0 : 1];
    if (!srcRef || !dstRef) throw usage('give a source and a destination');
    let proto = ((f.proto as string | undefined) ?? 'icmp').toLowerCase();
    let portS = f.port as string | undefined;
    if (typeof f.dport === 'string') {
      const m = /^(\d{1,5})(?:\/(tcp|udp))?$/i.exec(f.dport);
      if (!m) throw usage(`--dport: must be N or N/tcp or N/udp (got ${JSON.stringify(f.dport)})`);
      portS = m[1];
      proto = (m[2] ?? (f.proto as string | undefined) ?? 'tcp').toLowerCase();
    }
    if (proto !== 'icmp' && proto !== 'tcp' && proto !== 'udp') throw usage(`--proto: must be icmp, tcp or udp (got ${JSON.stringify(proto)})`);
    const port = proto === 'icmp' ? undefined : Number(portS ?? 80);
    if (port !== undefined && !(Number.isInteger(port) && port > 0 && port < 65536)) throw usage(`--port: must be 1..65535 (got ${JSON.stringify(portS)})`);

    const target = await resolveTarget(ctx);
    if (target.kind !== 'lab') {
      throw new MembraneError('trace', { code: 'E_USAGE', cause: `trace sends its probe from a lab's pod and reads every node's maps: it needs a lab (got ${target.kind} ${target.name})`, hint: 'membrane trace --lab NAME SRC DST' });
    }
    const s = await labStatus(target.name);
    const nodeDir = (node: string) => `${s.pinRoot}/${node}`;
    type End = { name: string; ip: string; node?: string; netns?: string; ips: string[] };
    const find = (ref: string, role: 'source' | 'destination'): End => {
      const slash = ref.indexOf('/');
      const pod = s.pods.find((p) => p.ip === ref || p.name === (slash < 0 ? ref : ref.slice(slash + 1)));
      // A pod's packets to the world leave its node masqueraded to the node IP.
      if (pod?.ip) return { name: pod.name, ip: pod.ip, node: pod.node, netns: pod.netns, ips: [pod.ip, ...s.nodes.filter((n) => n.name === pod.node).map((n) => n.nodeIP)] };
      const ext = s.externalHost;
      if (ext && (ref === ext.name || ref === ext.ip)) return { name: ext.name, ip: ext.ip, netns: ext.netns, ips: [ext.ip] };
      const node = s.nodes.find((n) => n.name === ref || n.nodeIP === ref);
      // A node sends to its pods from its router IP (cilium_host's address), elsewhere from its node IP.
      if (node) return { name: node.name, ip: node.nodeIP, node: node.name, netns: node.netns, ips: [node.nodeIP, node.routerIP] };
      if (role === 'destination' && /^\d+\.\d+\.\d+\.\d+$/.test(ref)) {
        const owner = s.nodes.find((n) => n.routerIP === ref);
        return { name: ref, ip: ref, node: owner?.name, ips: [ref] };
      }
      throw new MembraneError(`trace ${role} ${ref}`, { code: 'E_NOT_FOUND', cause: `no pod or node ${ref} in lab ${s.name}${role === 'destination' ? ' (and not an IPv4 address)' : ''}`, hint: 'membrane lab status lists the pods and nodes' });
    };
    const src = find(srcRef, 'source');
    const dst = find(dstRef, 'destination');
    if (src.ip === dst.ip) throw usage('source and destination are the same');

    // Every node traces every packet while our streams are open.
    const events: Ev[] = [];
    const offsets = new Map<string, bigint>();
    let lost = 0;
    const hellos = new Set<string>();
    const streams = s.nodes.filter((n) => n.running).map((n) => openStream(n.apiSocket, '/v1/events?level=2', (v) => {
      if (v.kind === 'hello') { hellos.add(String(v.node)); offsets.set(String(v.node), BigInt(String(v.clockOffsetNs ?? 0))); }
      else if (v.kind === 'lost') lost += Number(v.count ?? 0);
      else if (v.kind === 'event') events.push(v as Ev);
    }));
    let probe = { exitCode: -1, output: '' };
    try {
      await Promise.all(streams.map((x) => x.opened));
      const t0 = Date.now();
      while (hellos.size < streams.length && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 10));
      const argv = proto === 'icmp' ? ['ping', '-n', '-c', '1', '-W', '1', dst.ip]
        : proto === 'tcp' ? ['nc', '-z', '-n', '-w', '1', dst.ip, String(port)]
          : ['sh', '-c', `printf membrane-trace | nc -u -n -w 1 ${dst.ip} ${port}`];
      probe = await new Promise((resolve) => {
        const c = spawn('ip', ['netns', 'exec', src.netns!, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        c.stdout.on('data', (d) => { out += d; });
        c.stderr.on('data', (d) => { out += d; });
        const timer = setTimeout(() => c.kill('SIGKILL'), 5000);
        c.on('error', (e) => { clearTimeout(timer); resolve({ exitCode: -1, output: e.message }); });
        c.on('close', (code) => { clearTimeout(timer); resolve({ exitCode: code ?? -1, output: out.trim() }); });
      });
      // The agents read their rings every few ms; give the last events time to arrive.
      await new Promise((r) => setTimeout(r, 300));
    } finally {
      for (const x of streams) x.close();
    }

    // The probe's packets: request src->dst, reply dst->src, of the probe's protocol.
    const wantProto = proto === 'icmp' ? 1 : proto === 'tcp' ? 6 : 17;
    const mine = events.map((e) => ({ e, ip: parseIPv4(e.packet) })).filter((x) => x.ip && x.ip.proto === wantProto
      && ((src.ips.includes(x.ip.src) && dst.ips.includes(x.ip.dst)) || (dst.ips.includes(x.ip.src) && src.ips.includes(x.ip.dst))));
    mine.sort((a, b) => {
      const ta = BigInt(String(a.e.timeNs));
      const tb = BigInt(String(b.e.timeNs));
      return ta < tb ? -1 : ta > tb ? 1 : 0;
    });
    // The request's first pass only (ping may retry nothing; TCP may retransmit): stop at the first reply or drop.
    const maps = new Map<string, { ipcache: ReturnType<typeof ipc.listIpcache>; lxc: ReturnType<typeof nm.listEndpointMap>; ct: ReturnType<typeof ctm.listConntrack> }>();
    const mapsOf = (node: string) => {
      let m = maps.get(node);
      if (!m) {
        let conns: ReturnType<typeof ctm.listConntrack> = [];
        try { conns = ctm.listConntrack(nodeDir(node)); } catch { /* no conntrack maps (an older datapath) */ }
        m = { ipcache: ipc.listIpcache(nodeDir(node)), lxc: nm.listEndpointMap(nodeDir(node)), ct: conns };
        maps.set(node, m);
      }
      return m;
    };
    const idText = (id: number): string => (id < 256 ? `${id} (${identityName(id)})` : String(id));
    const ipcText = (node: string, ip: string): string => {
      const r = lpm(mapsOf(node).ipcache, ip);
      if (!r) return `ipcache: no entry for ${ip}`;
      return `ipcache ${r.prefix}: identity ${idText(r.identity)}${r.tunnelEndpoint && r.tunnelEndpoint !== '0.0.0.0' ? `, tunnel endpoint ${r.tunnelEndpoint}` : ''} [${r.owner}]`;
    };
    const lxcText = (node: string, ip: string): string => {
      const e = mapsOf(node).lxc.find((x) => x.ip === ip);
      if (!e) return `cilium_lxc: no entry for ${ip}`;
      return e.flags & 1 ? `cilium_lxc ${ip}: this node (host)` : `cilium_lxc ${ip}: endpoint ${e.lxcId}, identity ${e.secId}, ifindex ${e.ifindex}, mac ${e.mac}`;
    };
    const hops: Hop[] = [];
    let drop: TraceResult['drop'];
    let replySeen = false;
    for (const { e, ip } of mine) {
      const reply = dst.ips.includes(ip!.src);
      const from = ip!.src;
      if (reply) { replySeen = true; continue; }
      if (drop) break;
      const node = e.node;
      const time = BigInt(String(e.timeNs));
      const dev = e.ifname as string | undefined ?? (e.ifindex ? `ifindex ${String(e.ifindex)}` : undefined);
      if (e.type === 'trace') {
        const point = String(e.pointText);
        const decided: string[] = [];
        const prev = [...hops].reverse().find((h) => h.kind === 'trace' && h.node === node);
        let program = PROGRAM[point];
        if (point === 'to-endpoint') program = prev?.point === 'from-overlay' ? 'tail_ipv4_from_overlay' : prev?.point === 'from-host' ? 'tail_ipv4_from_host' : 'tail_ipv4_from_lxc';
        if (point === 'to-stack' || point === 'to-host') program = prev?.point === 'from-endpoint' ? 'tail_ipv4_from_lxc' : prev?.point === 'from-host' ? 'tail_ipv4_from_host' : prev?.point === 'from-overlay' ? 'tail_ipv4_from_overlay' : 'cil_to_host';
        if (point === 'from-endpoint') decided.push(lxcText(node, from), ipcText(node, dst.ip));
        else if (point === 'to-overlay') decided.push(ipcText(node, dst.ip));
        else if (point === 'from-overlay') decided.push(ipcText(node, from), `source identity ${String(e.srcLabel)} from the VNI`);
        else if (point === 'to-endpoint') decided.push(lxcText(node, dst.ip));
        else if (point === 'to-stack' || point === 'to-host' || point === 'from-host') decided.push(ipcText(node, dst.ip));
        else if (point === 'to-network') decided.push(ipcText(node, dst.ip), from === src.ip ? `source ${from}` : `source ${from}: masqueraded (was ${src.ip})`);
        else if (point === 'from-network') decided.push(ipcText(node, from));
        if (e.reasonText !== 'unknown') {
          // The entry the conntrack lookup found or made for the probe's connection (the newest of its addresses and protocol).
          const entry = mapsOf(node).ct.filter((c) => c.proto === wantProto && ((src.ips.includes(c.saddr) && c.daddr === dst.ip) || (c.saddr === dst.ip && src.ips.includes(c.daddr))))
            .sort((x, y) => y.created - x.created)[0];
          decided.push(`conntrack: ${String(e.reasonText)}${entry ? `; entry ${entry.summary} (${entry.table}): ${entry.packets ? `${entry.packets} packets, ` : ''}expires in ${Math.round(entry.expiresIn)} s${entry.flagNames.length ? `, ${entry.flagNames.join(',')}` : ''}` : ''}`);
        }
        hops.push({ node, timeNs: time, kind: 'trace', point, device: dev, program, decided, reply });
      } else if (e.type === 'debug' && e.tunnelEndpoint) {
        hops.push({ node, timeNs: time, kind: 'encap', point: 'encap', device: dev, decided: [`tunnel key: remote ${String(e.tunnelEndpoint)}, VNI ${String(e.vni)} (the source identity)`], reply });
      } else if (e.type === 'policy-verdict') {
        const epId = Number(e.endpointId);
        const decided = [`policy ${String(e.direction)} of endpoint ${epId}${epId === 1 ? ' (host firewall)' : ''}: ${String(e.verdict).toUpperCase()}, remote identity ${idText(Number(e.remoteLabel))}, match ${String(e.matchText)}${Number(e.cookie) ? `, rule cookie ${String(e.cookie)}` : ''}`];
        try {
          const entries = epId === 1 ? pm.listHostPolicy(nodeDir(node)) ?? [] : pm.listEndpointPolicy(nodeDir(node), epId);
          const egress = e.direction === 'egress';
          const remote = Number(e.remoteLabel);
          const port = Number(e.dstPort);
          const hit = entries.filter((x) => x.egress === egress && (x.identity === remote || x.identity === 0) && (x.protocol === 0 || x.protocol === Number(e.proto))
            && (x.portPrefixLen === 0 || (port >> (16 - x.portPrefixLen)) === (x.port >> (16 - x.portPrefixLen))));
          // The most specific one decides (identity, then protocol, then port), as the datapath looks them up.
          hit.sort((a, b) => Number(b.identity !== 0) - Number(a.identity !== 0) || b.portPrefixLen - a.portPrefixLen || Number(b.protocol !== 0) - Number(a.protocol !== 0));
          const h = hit[0];
          decided.push(h ? `policy map ${epId === 1 ? 'host' : `cilium_policy_v2_${String(epId).padStart(5, '0')}`}: ${h.deny ? 'deny' : 'allow'} identity ${h.identity || 'any'} proto ${h.protocol || 'any'} port ${h.portPrefixLen ? h.port : 'any'}${h.cookie ? ` cookie ${h.cookie}` : ''}`
            : `policy map ${epId === 1 ? 'host' : `of endpoint ${epId}`}: no entry matches (default deny)`);
        } catch { /* the map may be gone */ }
        hops.push({ node, timeNs: time, kind: 'policy', point: `policy-${String(e.direction)}`, device: dev, decided, reply });
      } else if (e.type === 'drop') {
        const reason = Number(e.reason);
        drop = { node, point: hops.length ? hops[hops.length - 1]!.point : 'start', device: dev, reason, reasonText: dropReasonText(reason), file: String(e.fileName), line: Number(e.line) };
        hops.push({ node, timeNs: time, kind: 'drop', point: 'DROPPED', device: dev, decided: [`${dropReasonText(reason)} (${reason}) at ${String(e.fileName)}:${String(e.line)}`, `identity ${String(e.srcLabel)} -> ${String(e.dstLabel)}`], reply });
      }
    }
    const lastTrace = [...hops].reverse().find((h) => h.kind === 'trace');
    const verdict: TraceResult['verdict'] = drop ? 'DROPPED' : !hops.length ? 'NO_EVENTS'
      : lastTrace?.point === 'to-endpoint' || lastTrace?.point === 'to-stack' || lastTrace?.point === 'to-host' || (lastTrace?.point === 'to-network' && !dst.node) ? 'DELIVERED' : 'LEFT_NODE';
    const result: TraceResult = {
      source: { name: src.name, ip: src.ip, node: src.node },
      destination: { name: dst.name, ip: dst.ip, node: dst.node },
      protocol: proto, ...(port !== undefined ? { port } : {}),
      hops: hops.map(({ timeNs: _t, ...h }) => h),
      verdict, ...(drop ? { drop } : {}), replySeen, lost, probe,
    };
    if (ctx.json) {
      ctx.out(`${JSON.stringify(result, null, 2)}\n`);
    } else {
      const what = proto === 'icmp' ? 'ICMP echo' : `${proto.toUpperCase()} to port ${port}`;
      ctx.out(`trace ${src.name} (${src.ip}${src.node ? `, ${src.node}` : ''}) -> ${dst.name} (${dst.ip}${dst.node ? `, ${dst.node}` : ''}): ${what}\n\n`);
      hops.forEach((h, i) => {
        ctx.out(`${String(i + 1).padStart(2)}  ${h.node.padEnd(8)} ${h.point.padEnd(15)} ${(h.device ?? '-').padEnd(16)} ${h.program ?? ''}\n`);
        for (const d of h.decided) ctx.out(`${' '.repeat(28)}${d}\n`);
      });
      if (verdict === 'DROPPED') ctx.out(`\nDROPPED on ${drop!.node}${drop!.device ? ` at ${drop!.device}` : ''} after ${drop!.point}: ${drop!.reasonText} (${drop!.reason}), ${drop!.file}:${drop!.line}\n`);
      else if (verdict === 'DELIVERED') {
        const where = lastTrace!.point === 'to-endpoint' ? `to the pod on ${lastTrace!.node} (${lastTrace!.device ?? ''})`
          : lastTrace!.point === 'to-network' ? `out of ${lastTrace!.node}'s network device (${lastTrace!.device ?? ''})` : `to the network stack of ${lastTrace!.node} (the kernel routes it on)`;
        ctx.out(`\nDELIVERED ${where}${replySeen ? '; the reply came back' : '; no reply seen'}\n`);
      }
      else if (verdict === 'NO_EVENTS') ctx.out(`\nno datapath event for the probe (${probe.output.split('\n')[0] || `exit ${probe.exitCode}`})\n`);
      else ctx.out(`\nleft ${lastTrace?.node} at ${lastTrace?.point} (no further node of the lab saw it)\n`);
      if (lost) ctx.out(`(${lost} events lost while tracing: the path may be incomplete)\n`);
    }
    return verdict === 'DELIVERED' ? 0 : 1;
  },
};
