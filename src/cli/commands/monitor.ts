// `membrane monitor`: the datapath's live events, one line each as `cilium
// monitor` prints them, from every node of the lab (each line names its
// node) or, run inside a node's netns, from that node. Each agent reads its
// node's cilium_events and sends them over GET /v1/events; while a monitor
// is attached the agent sets trace level 1 (--every-packet: 2), and back to
// 0 when the last one leaves. Several nodes' events are printed in the order
// of their timestamps (each agent sends marks: "all my events before T are
// sent"). --pcap FILE also writes the
// captured frames (first 128 bytes) as a pcap that tshark and Wireshark read.
import type { Command } from '../command.ts';
import { followStreams, TimeMerge } from '../stream-merge.ts';
import { TARGET_FLAGS } from '../target.ts';
import { listPods, observedNodes, podIPs } from './observe.ts';

type Ev = Record<string, unknown> & { node: string; type: string; summary: string };

const num = (v: unknown): number => (typeof v === 'number' ? v : Number(v ?? 0));
const hex = (v: unknown): string => `0x${(num(v) >>> 0).toString(16)}`;

/** "-> overlay", "<- endpoint 123", as cilium monitor names the points. */
function pointText(e: Ev): string {
  const p = String(e.pointText ?? `point-${String(e.point)}`);
  const [dir, where] = p.startsWith('to-') ? ['->', p.slice(3)] : p.startsWith('from-') ? ['<-', p.slice(5)] : ['--', p];
  const ep = where === 'endpoint' ? ` ${num(dir === '->' ? e.dstId : e.source)}` : '';
  return `${dir} ${where}${ep}`;
}

const ifText = (e: Ev): string => (e.ifname ? String(e.ifname) : String(num(e.ifindex)));

/** One event as a line (text mode). */
export function eventLine(e: Ev): string {
  const node = `[${e.node}]`;
  switch (e.type) {
    case 'drop':
      return `${node} xx drop (${String(e.reasonText)}) flow ${hex(e.hash)} to endpoint ${num(e.dstId)}, ifindex ${ifText(e)}, file ${String(e.fileName)}:${num(e.line)}, identity ${num(e.srcLabel)}->${num(e.dstLabel)}: ${e.summary}\n`;
    case 'trace':
      return `${node} ${pointText(e)} flow ${hex(e.hash)} , identity ${num(e.srcLabel)}->${num(e.dstLabel)} state ${String(e.reasonText)} ifindex ${ifText(e)} orig-ip ${String(e.origIp ?? '0.0.0.0')}: ${e.summary}\n`;
    case 'policy-verdict':
      return `${node} Policy verdict log: flow ${hex(e.hash)} local EP ID ${num(e.endpointId)}, remote ID ${num(e.remoteLabel)}, proto ${num(e.proto)}, ${String(e.direction)}, action ${String(e.verdict)}, match ${String(e.matchText)}, ${e.summary}\n`;
    case 'debug':
      return `${node} DEBUG: ${String(e.message)}: ${e.summary}\n`;
    default:
      return `${node} ${e.type}: ${e.summary}\n`;
  }
}

export const monitorCmd: Command = {
  path: ['monitor'],
  summary: 'live datapath events (drops, traces, policy verdicts) from every node, like cilium monitor; --pcap FILE writes the frames',
  usage: '[--type drop|trace|policy-verdict|debug]... [--node N] [--from-pod P] [--every-packet] [--pcap FILE] [--count N] [--duration S] [-o json]',
  flags: {
    ...TARGET_FLAGS,
    type: { type: 'string', short: 't', multiple: true, help: 'only events of this type (drop, trace, policy-verdict, debug); repeat or comma-separate' },
    node: { type: 'string', help: 'only this node\'s events' },
    fromPod: { type: 'string', help: 'only events of packets from this pod (NAME, NAMESPACE/NAME or an IP)' },
    everyPacket: { type: 'boolean', help: 'trace every packet at every observation point (trace level 2, with debug records), not one per connection' },
    pcap: { type: 'string', help: 'also write the captured frames to this pcap file (LINKTYPE_ETHERNET, 128-byte snap length)' },
    count: { type: 'string', help: 'stop after this many events' },
    duration: { type: 'string', help: 'stop after this many seconds' },
  },
  async run(ctx) {
    const [{ MembraneError }, { parseEventFilter }, { openStream }, { pcapHeader, pcapRecord }, fs] = await Promise.all([
      import('../../shared/errors.ts'), import('../../agent/observe/filters.ts'), import('../../api/stream.ts'), import('../../agent/observe/pcap.ts'), import('node:fs')]);
    const f = ctx.args.flags;
    const nodes = await observedNodes(ctx, 'monitor');
    const q = new URLSearchParams();
    const types = ((f.type as string[] | undefined) ?? []).flatMap((t) => t.split(',')).map((t) => t.trim()).filter(Boolean);
    if (types.length) q.set('type', types.join(','));
    parseEventFilter(q, 'E_USAGE'); // the agent checks it too; one message here whatever the node count
    if (typeof f.fromPod === 'string') {
      q.set('from-pod', f.fromPod);
      q.set('from-ip', (await podIPs(await listPods(nodes), f.fromPod, 'monitor --from-pod')).join(','));
    }
    q.set('level', f.everyPacket ? '2' : '1');
    const limit = f.count === undefined ? undefined : Number(f.count);
    if (limit !== undefined && !(Number.isInteger(limit) && limit > 0)) throw new MembraneError('monitor --count', { code: 'E_USAGE', cause: `must be a positive integer (got ${JSON.stringify(f.count)})` });
    const seconds = f.duration === undefined ? undefined : Number(f.duration);
    if (seconds !== undefined && !(seconds > 0)) throw new MembraneError('monitor --duration', { code: 'E_USAGE', cause: `must be a positive number of seconds (got ${JSON.stringify(f.duration)})` });

    let pcapFd: number | undefined;
    if (typeof f.pcap === 'string') {
      try {
        pcapFd = fs.openSync(f.pcap, 'w', 0o600);
        fs.writeSync(pcapFd, pcapHeader());
      } catch (e) {
        throw new MembraneError(`monitor --pcap ${f.pcap}`, { code: 'E_USAGE', cause: (e as Error).message });
      }
    }
    const offsets = new Map<string, bigint>();
    let seen = 0;
    let lost = 0;
    const streams: ReturnType<typeof openStream>[] = [];
    const stop = () => { for (const s of streams) s.close(); };
    // Several nodes' events are printed in the order of their timestamps (src/cli/stream-merge.ts).
    const merge = new TimeMerge<Ev>(nodes.map((n) => n.name), (e) => emit(e));
    const emit = (e: Ev) => {
      if (limit !== undefined && seen >= limit) return;
      seen++;
      ctx.out(ctx.json ? `${JSON.stringify(e)}\n` : eventLine(e));
      if (pcapFd !== undefined && typeof e.packet === 'string' && e.packet) {
        const frame = Buffer.from(e.packet, 'base64');
        const wall = BigInt(String(e.timeNs ?? '0')) + (offsets.get(e.node) ?? 0n);
        fs.writeSync(pcapFd, pcapRecord(wall, frame, num(e.lenOrig)));
      }
      if (limit !== undefined && seen >= limit) stop();
    };
    const onLine = (v: Record<string, unknown>) => {
      if (limit !== undefined && seen >= limit) return;
      if (v.kind === 'hello') {
        offsets.set(String(v.node), BigInt(String(v.clockOffsetNs ?? '0')));
        if (!ctx.json) ctx.out(`Listening for events on node ${String(v.node)} (trace level ${String(v.traceLevel)})\n`);
        else ctx.out(`${JSON.stringify(v)}\n`);
        return;
      }
      if (v.kind === 'lost') {
        lost += num(v.count);
        ctx.out(ctx.json ? `${JSON.stringify(v)}\n` : `[${String(v.node)}] Lost ${num(v.count)} events (${String(v.source)})\n`);
        return;
      }
      if (v.kind === 'error') {
        ctx.out(ctx.json ? `${JSON.stringify(v)}\n` : `[${String(v.node ?? '?')}] error: ${String(v.message)}\n`);
        return;
      }
      if (v.kind === 'mark') return merge.mark(String(v.node), BigInt(String(v.timeNs ?? '0')));
      if (v.kind !== 'event') return;
      const e = v as Ev;
      if (nodes.length === 1) return emit(e);
      // One node's events come in order: each is also that node's mark.
      const ns = BigInt(String(e.timeNs ?? '0'));
      merge.push(ns, e);
      merge.mark(e.node, ns);
    };
    for (const n of nodes) streams.push(openStream(n.apiSocket, `/v1/events?${q}`, onLine));
    try {
      await followStreams(streams, merge, seconds);
    } finally {
      if (pcapFd !== undefined) fs.closeSync(pcapFd);
    }
    if (!ctx.json) process.stderr.write(`${seen} events${lost ? `, ${lost} lost` : ''}\n`);
  },
};
