// Program-level tests of the real datapath objects (bpf_lxc.o, bpf_host.o,
// bpf_overlay.o): each row loads one object with fresh pinned maps, writes
// the maps it names, runs one program with BPF_PROG_TEST_RUN on a crafted
// frame and checks the verdict, the whole output frame, skb->mark, every
// cilium_metrics entry (reason, direction, file:line) and every cilium_events
// record, in order. Root only; no network device is created or touched.
//
// To add a row (policy, observability, ...): append to CASES. Sites are
// looked up in the C source with site(file, needle), so a row names the code
// that must have decided, not a line number.
import { test } from 'node:test';
import { IDENTITY_HOST, IDENTITY_REMOTE_NODE, IDENTITY_WORLD, identityToMark, MARK_MAGIC_HOST } from '../../src/datapath/maps/identities.ts';
import { hostEndpoint, type EndpointEntry } from '../../src/datapath/maps/endpoints.ts';
import { METRIC_EGRESS, METRIC_INGRESS } from '../../src/datapath/maps/metrics.ts';
import type { NodeConfig } from '../../src/datapath/maps/node-config.ts';
import {
  arpFrame, checkCase, hostConstants, ipIdForChecksum, ipv4Frame, ipv6Frame, LOOPBACK_IFINDEX, lxcConstants, runCase, site,
  TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, type EventExpect, type ProgramCase,
} from '../helpers/bpf-programs.ts';
import { rootOnly } from '../helpers/skip.ts';

const skip = rootOnly('requires root (CAP_BPF, CAP_NET_ADMIN)');

// Cilium's drop reasons (bpf/lib/drop_reasons.h) and observation points (trace_points.h).
const DROP_INVALID_SIP = 132;
const DROP_INVALID = 134;
const DROP_UNKNOWN_L3 = 139;
const DROP_MISSED_TAIL_CALL = 140;
const DROP_NO_TUNNEL_KEY = 147;
const DROP_UNROUTABLE = 151;
const DROP_NO_TUNNEL_ENDPOINT = 160;
const DROP_INVALID_IDENTITY = 171;
const DROP_TTL_EXCEEDED = 196;
const DROP_HOST_NOT_READY = 202;
const TO_LXC = 0;
const TO_STACK = 3;
const TO_OVERLAY = 4;
const FROM_LXC = 5;
const FROM_HOST = 7;
const DBG_ENCAP = 3;
const EINVAL = 22;

// --- the node every row runs on ---------------------------------------------------

const NODE: NodeConfig = {
  hostIfindex: 3, netIfindex: 2, encapIfindex: 4,
  routerIp: '10.0.1.161', nodeIp: '192.168.50.1',
  hostMac: '02:00:00:00:0a:03', netMac: '02:00:00:00:0a:02', encapMac: '02:00:00:00:0a:04',
  endpointRoutes: false, traceEvents: true, routeMtu: 1450,
};

/** The pod whose bpf_lxc.o runs (load-time constants). */
const POD_A = { id: 7, ip: '10.0.1.5', identity: 1234, ifindex: 42, lxcMac: '02:aa:00:00:00:05', podMac: '02:00:00:00:00:05' };
const LXC_A = lxcConstants({ endpointId: POD_A.id, ipv4: POD_A.ip, identity: POD_A.identity, ifindex: POD_A.ifindex, ifMac: POD_A.lxcMac });

/** Another pod on the node (cilium_lxc entry). */
const POD_B: EndpointEntry = {
  ip: '10.0.1.6', ifindex: 43, lxcId: 8, flags: 0, mac: '02:00:00:00:00:06', nodeMac: '02:aa:00:00:00:06', secId: 5678, parentIfindex: 0,
};
/** POD_A's own cilium_lxc entry, as the agent writes it. */
const POD_A_ENTRY: EndpointEntry = {
  ip: POD_A.ip, ifindex: POD_A.ifindex, lxcId: POD_A.id, flags: 0, mac: POD_A.podMac, nodeMac: POD_A.lxcMac, secId: POD_A.identity, parentIfindex: 0,
};
/** The MAC a chained plugin (tuning) gave POD_A after the ADD. */
const TUNED_MAC = '02:7e:00:00:00:05';
const ROUTER = hostEndpoint(NODE.routerIp);
const NODE_IP = hostEndpoint(NODE.nodeIp);

/** A pod on another node, behind tunnel endpoint 192.168.50.2. */
const REMOTE = { ip: '10.0.2.7', identity: 4321, node: '192.168.50.2' };
const REMOTE_POD = { cidr: `${REMOTE.ip}/32`, value: { identity: REMOTE.identity, tunnelEndpoint: REMOTE.node } };

const HOST_EP_ID = 17;
const HOST = hostConstants(HOST_EP_ID);
const HOST_MAC = NODE.hostMac; // cilium_host is NOARP: the kernel uses its own MAC as destination too
const REMOTE_MAC = '02:bb:00:00:00:07';

/** A frame pod A sends through its gateway (the lxc MAC the ARP responder hands out). */
const fromPodA = (dst: string, o: { src?: string; ttl?: number; ipId?: number } = {}) =>
  ipv4Frame({ srcMac: POD_A.podMac, dstMac: POD_A.lxcMac, src: o.src ?? POD_A.ip, dst, ttl: o.ttl, ipId: o.ipId });
const CARRY_IP_ID = ipIdForChecksum({ srcMac: POD_A.podMac, dstMac: POD_A.lxcMac, src: POD_A.ip, dst: POD_B.ip }, 0xfeff);

/** The frame delivered into pod B: L2 rewritten, TTL one less, checksum recomputed from scratch. */
const deliveredToB = (src: string, ttl = 63) => ipv4Frame({ srcMac: POD_B.nodeMac, dstMac: POD_B.mac, src, dst: POD_B.ip, ttl });

/** A copy of `frame` with byte `off` set to `value`. */
const patched = (frame: Buffer, off: number, value: number) => {
  const b = Buffer.from(frame);
  b[off] = value;
  return b;
};

const fromHost = (dst: string) => ipv4Frame({ srcMac: HOST_MAC, dstMac: HOST_MAC, src: NODE.routerIp, dst });
const fromOverlay = (dst: string, ttl?: number) => ipv4Frame({ srcMac: REMOTE_MAC, dstMac: NODE.encapMac, src: REMOTE.ip, dst, ttl });

// --- expected events and sites ---------------------------------------------------------

const fromLxcTrace: EventExpect = {
  type: 'trace', point: FROM_LXC, source: POD_A.id, srcLabel: POD_A.identity, dstLabel: 0, dstId: 0, ifindex: LOOPBACK_IFINDEX, packet: 'in',
};
const fromHostTrace: EventExpect = {
  type: 'trace', point: FROM_HOST, source: HOST_EP_ID, srcLabel: IDENTITY_HOST, dstLabel: 0, dstId: 0, ifindex: LOOPBACK_IFINDEX, packet: 'in',
};
const drop = (reason: number, at: ReturnType<typeof site>, f: Record<string, unknown>): EventExpect =>
  ({ type: 'drop', reason, site: at, packet: 'in', ...f });

const LXC_IPV4_FORWARD = site('bpf_lxc.c', 'ctx_finish(ctx, ipv4_from_lxc(ctx)');
const LXC_ARP_FORWARD = site('bpf_lxc.c', 'ctx_finish(ctx, arp_respond(');
const HOST_FORWARD = site('bpf_host.c', 'ctx_finish(ctx, from_host(ctx)');
const HOST_IPV4_FORWARD = site('bpf_host.c', 'ctx_finish(ctx, ipv4_from_host(ctx)');
const TO_HOST_FORWARD = site('bpf_host.c', 'ctx_finish(ctx, TC_ACT_OK, METRIC_INGRESS)');
const OVERLAY_FORWARD = site('bpf_overlay.c', 'ctx_finish(ctx, from_overlay(ctx)');
const OVERLAY_IPV4_FORWARD = site('bpf_overlay.c', 'ctx_finish(ctx, ipv4_from_overlay(ctx)');
const TO_OVERLAY_FORWARD = site('bpf_overlay.c', 'ctx_finish(ctx, TC_ACT_OK, METRIC_EGRESS)');
const TTL_SITE = site('local_delivery.h', 'DROP(DROP_TTL_EXCEEDED)');

const fwd = (s: ReturnType<typeof site>, dir: typeof METRIC_INGRESS | typeof METRIC_EGRESS = METRIC_EGRESS) => [{ reason: 0, dir, site: s }];

// --- the table -----------------------------------------------------------------------

const LXC = { object: 'bpf_lxc', program: 'cil_from_container', constants: LXC_A } as const;
const FROM_HOST_PROG = { object: 'bpf_host', program: 'cil_from_host', constants: HOST } as const;
const OVERLAY_TAIL = { object: 'bpf_overlay', program: 'tail_7_ipv4_from_overlay' } as const;

const CASES: ProgramCase[] = [
  // ---- bpf_lxc: cil_from_container (pod egress) ----
  {
    name: 'lxc: local delivery to another pod rewrites L2, decrements TTL, stamps the identity and redirects',
    ...LXC,
    maps: { endpoints: [POD_B] },
    frame: fromPodA(POD_B.ip),
    expect: {
      retval: TC_ACT_REDIRECT,
      frame: deliveredToB(POD_A.ip),
      mark: identityToMark(POD_A.identity),
      metrics: fwd(LXC_IPV4_FORWARD),
      events: [fromLxcTrace, {
        type: 'trace', point: TO_LXC, source: POD_A.id, srcLabel: POD_A.identity, dstLabel: POD_B.secId, dstId: POD_B.lxcId, ifindex: POD_B.ifindex, packet: 'out',
      }],
    },
  },
  {
    name: 'lxc: local delivery with trace events off sends no event at all',
    ...LXC,
    maps: { nodeConfig: { traceEvents: false }, endpoints: [POD_B] },
    frame: fromPodA(POD_B.ip),
    expect: { retval: TC_ACT_REDIRECT, frame: deliveredToB(POD_A.ip), mark: identityToMark(POD_A.identity), metrics: fwd(LXC_IPV4_FORWARD), events: [] },
  },
  {
    name: 'lxc: TTL 1 towards a local pod is dropped (TTL exceeded) before any rewrite',
    ...LXC,
    maps: { endpoints: [POD_B] },
    frame: fromPodA(POD_B.ip, { ttl: 1 }),
    expect: {
      retval: TC_ACT_SHOT,
      metrics: [{ reason: DROP_TTL_EXCEEDED, dir: METRIC_EGRESS, site: TTL_SITE }],
      events: [fromLxcTrace, drop(DROP_TTL_EXCEEDED, TTL_SITE, { source: POD_A.id, srcLabel: POD_A.identity, dstLabel: POD_B.secId, dstId: POD_B.lxcId, extError: 0 })],
    },
  },
  {
    name: 'lxc: TTL 2 towards a local pod is delivered with TTL 1',
    ...LXC,
    maps: { endpoints: [POD_B] },
    frame: fromPodA(POD_B.ip, { ttl: 2 }),
    expect: {
      retval: TC_ACT_REDIRECT, frame: deliveredToB(POD_A.ip, 1), mark: identityToMark(POD_A.identity), metrics: fwd(LXC_IPV4_FORWARD),
      events: [fromLxcTrace, { type: 'trace', point: TO_LXC, ifindex: POD_B.ifindex, packet: 'out' }],
    },
  },
  {
    // Checksum 0xfeff is 0xfffe as the little-endian u16 the program adds
    // to: the end-around carry must be folded back (RFC 1624), giving what a
    // full recomputation gives.
    name: 'lxc: TTL decrement folds the checksum carry (checksum 0xfeff before)',
    ...LXC,
    maps: { endpoints: [POD_B] },
    frame: fromPodA(POD_B.ip, { ipId: CARRY_IP_ID }),
    expect: {
      retval: TC_ACT_REDIRECT,
      frame: ipv4Frame({ srcMac: POD_B.nodeMac, dstMac: POD_B.mac, src: POD_A.ip, dst: POD_B.ip, ttl: 63, ipId: CARRY_IP_ID }),
      mark: identityToMark(POD_A.identity), metrics: fwd(LXC_IPV4_FORWARD),
      events: [fromLxcTrace, { type: 'trace', point: TO_LXC, packet: 'out' }],
    },
  },
  {
    name: 'lxc: spoofed source IP is dropped (invalid source ip)',
    ...LXC,
    maps: { endpoints: [POD_B] },
    frame: fromPodA(POD_B.ip, { src: '10.0.1.99' }),
    expect: {
      retval: TC_ACT_SHOT,
      metrics: [{ reason: DROP_INVALID_SIP, dir: METRIC_EGRESS, site: site('bpf_lxc.c', 'DROP(DROP_INVALID_SIP)') }],
      events: [fromLxcTrace, drop(DROP_INVALID_SIP, site('bpf_lxc.c', 'DROP(DROP_INVALID_SIP)'), {
        source: POD_A.id, srcLabel: POD_A.identity, dstLabel: 0, dstId: 0, ifindex: LOOPBACK_IFINDEX, summary: `10.0.1.99 -> ${POD_B.ip} ICMP echo`,
      })],
    },
  },
  {
    name: 'lxc: unknown destination (no endpoint, no ipcache entry) goes to the stack as world',
    ...LXC,
    frame: fromPodA('8.8.8.8'),
    expect: {
      retval: TC_ACT_OK, mark: identityToMark(POD_A.identity), metrics: fwd(LXC_IPV4_FORWARD),
      events: [fromLxcTrace, { type: 'trace', point: TO_STACK, srcLabel: POD_A.identity, dstLabel: IDENTITY_WORLD, dstId: 0, ifindex: LOOPBACK_IFINDEX, packet: 'out' }],
    },
  },
  {
    name: 'lxc: the router IP (host endpoint) goes to the stack as host',
    ...LXC,
    maps: { endpoints: [ROUTER] },
    frame: fromPodA(NODE.routerIp),
    expect: {
      retval: TC_ACT_OK, mark: identityToMark(POD_A.identity), metrics: fwd(LXC_IPV4_FORWARD),
      events: [fromLxcTrace, { type: 'trace', point: TO_STACK, srcLabel: POD_A.identity, dstLabel: IDENTITY_HOST }],
    },
  },
  {
    name: 'lxc: with endpoint routes a local pod is reached through the stack, frame untouched',
    ...LXC,
    maps: { nodeConfig: { endpointRoutes: true }, endpoints: [POD_B] },
    frame: fromPodA(POD_B.ip),
    expect: {
      retval: TC_ACT_OK, mark: identityToMark(POD_A.identity), metrics: fwd(LXC_IPV4_FORWARD),
      events: [fromLxcTrace, { type: 'trace', point: TO_STACK, srcLabel: POD_A.identity, dstLabel: POD_B.secId }],
    },
  },
  {
    name: 'lxc: a remote pod is encapsulated to its node with VNI = source identity (DBG_ENCAP), no TTL change',
    ...LXC,
    maps: { ipcache: [REMOTE_POD] },
    frame: fromPodA(REMOTE.ip),
    expect: {
      retval: TC_ACT_REDIRECT, metrics: fwd(LXC_IPV4_FORWARD),
      events: [
        fromLxcTrace,
        { type: 'debug', subtype: DBG_ENCAP, source: POD_A.id, tunnelEndpoint: REMOTE.node, vni: POD_A.identity, arg3: 0, ifindex: NODE.encapIfindex, packet: 'in' },
        { type: 'trace', point: TO_OVERLAY, source: POD_A.id, srcLabel: POD_A.identity, dstLabel: REMOTE.identity, dstId: 0, ifindex: NODE.encapIfindex, packet: 'out' },
      ],
    },
  },
  {
    name: 'lxc: encapsulation with trace events off sends neither DBG_ENCAP nor traces',
    ...LXC,
    maps: { nodeConfig: { traceEvents: false }, ipcache: [REMOTE_POD] },
    frame: fromPodA(REMOTE.ip),
    expect: { retval: TC_ACT_REDIRECT, metrics: fwd(LXC_IPV4_FORWARD), events: [] },
  },
  {
    name: 'lxc: a remote pod without a tunnel device is dropped (no tunnel endpoint)',
    ...LXC,
    maps: { nodeConfig: { encapIfindex: 0 }, ipcache: [REMOTE_POD] },
    frame: fromPodA(REMOTE.ip),
    expect: {
      retval: TC_ACT_SHOT,
      metrics: [{ reason: DROP_NO_TUNNEL_ENDPOINT, dir: METRIC_EGRESS, site: site('encap.h', 'DROP(DROP_NO_TUNNEL_ENDPOINT)', 'if (!encap_ifindex)') }],
      events: [fromLxcTrace, drop(DROP_NO_TUNNEL_ENDPOINT, site('encap.h', 'DROP(DROP_NO_TUNNEL_ENDPOINT)', 'if (!encap_ifindex)'), { srcLabel: POD_A.identity, dstLabel: REMOTE.identity })],
    },
  },
  {
    name: 'lxc: an ipcache entry flagged with a tunnel endpoint of 0.0.0.0 is dropped (no tunnel endpoint)',
    ...LXC,
    maps: { ipcache: [{ cidr: `${REMOTE.ip}/32`, value: { identity: REMOTE.identity, tunnelEndpoint: '0.0.0.0' } }] },
    frame: fromPodA(REMOTE.ip),
    expect: {
      retval: TC_ACT_SHOT,
      metrics: [{ reason: DROP_NO_TUNNEL_ENDPOINT, dir: METRIC_EGRESS, site: site('encap.h', 'DROP(DROP_NO_TUNNEL_ENDPOINT)', 'if (!tunnel_endpoint)') }],
      events: [fromLxcTrace, drop(DROP_NO_TUNNEL_ENDPOINT, site('encap.h', 'DROP(DROP_NO_TUNNEL_ENDPOINT)', 'if (!tunnel_endpoint)'), { srcLabel: POD_A.identity, dstLabel: REMOTE.identity })],
    },
  },
  {
    // The sending node neither checks nor decrements the inner TTL when it
    // encapsulates (as Cilium in tunnel mode): the receiving node's local
    // delivery does (the overlay TTL row below).
    name: 'lxc: TTL 1 towards a remote pod is encapsulated unchanged',
    ...LXC,
    maps: { ipcache: [REMOTE_POD] },
    frame: fromPodA(REMOTE.ip, { ttl: 1 }),
    expect: {
      retval: TC_ACT_REDIRECT, metrics: fwd(LXC_IPV4_FORWARD),
      events: [fromLxcTrace, { type: 'debug', subtype: DBG_ENCAP, vni: POD_A.identity }, { type: 'trace', point: TO_OVERLAY, packet: 'out' }],
    },
  },
  {
    name: 'lxc: a prefix flagged skip-tunnel goes to the stack with its identity',
    ...LXC,
    maps: { ipcache: [{ cidr: '10.0.2.0/24', value: { identity: 4000, tunnelEndpoint: REMOTE.node, skipTunnel: true } }] },
    frame: fromPodA(REMOTE.ip),
    expect: {
      retval: TC_ACT_OK, mark: identityToMark(POD_A.identity), metrics: fwd(LXC_IPV4_FORWARD),
      events: [fromLxcTrace, { type: 'trace', point: TO_STACK, srcLabel: POD_A.identity, dstLabel: 4000 }],
    },
  },
  {
    name: 'lxc: an empty IPv4 tail-call slot drops at the tail call (missed tail call)',
    ...LXC,
    maps: { endpoints: [POD_B], emptySlots: [7] },
    frame: fromPodA(POD_B.ip),
    expect: {
      retval: TC_ACT_SHOT,
      metrics: [{ reason: DROP_MISSED_TAIL_CALL, dir: METRIC_EGRESS, site: site('bpf_lxc.c', 'tail_call_or_drop(ctx, CILIUM_CALL_IPV4_FROM_LXC)') }],
      events: [fromLxcTrace, drop(DROP_MISSED_TAIL_CALL, site('bpf_lxc.c', 'tail_call_or_drop(ctx, CILIUM_CALL_IPV4_FROM_LXC)'), { srcLabel: POD_A.identity, dstLabel: 0 })],
    },
  },
  {
    // Not a truncated header: BPF_PROG_TEST_RUN itself refuses (EINVAL) an
    // IPv4 ethertype frame too short for the IPv4 header.
    name: 'lxc: an IPv4 header with version 6 is dropped (invalid packet)',
    ...LXC,
    frame: patched(fromPodA(POD_B.ip), 14, 0x65),
    expect: {
      retval: TC_ACT_SHOT,
      metrics: [{ reason: DROP_INVALID, dir: METRIC_EGRESS, site: site('bpf_lxc.c', 'DROP(DROP_INVALID)', 'ipv4_from_lxc(struct') }],
      events: [fromLxcTrace, drop(DROP_INVALID, site('bpf_lxc.c', 'DROP(DROP_INVALID)', 'ipv4_from_lxc(struct'), { srcLabel: POD_A.identity })],
    },
  },
  {
    name: 'lxc: IPv6 is dropped (unknown L3)',
    ...LXC,
    frame: ipv6Frame(POD_A.podMac, POD_A.lxcMac),
    expect: {
      retval: TC_ACT_SHOT,
      metrics: [{ reason: DROP_UNKNOWN_L3, dir: METRIC_EGRESS, site: site('bpf_lxc.c', 'DROP(DROP_UNKNOWN_L3)') }],
      events: [fromLxcTrace, drop(DROP_UNKNOWN_L3, site('bpf_lxc.c', 'DROP(DROP_UNKNOWN_L3)'), { srcLabel: POD_A.identity, summary: 'IPv6' })],
    },
  },
  {
    name: 'lxc: ARP request for the gateway is answered in place and sent back',
    ...LXC,
    frame: arpFrame({ op: 1, srcMac: POD_A.podMac, dstMac: 'ff:ff:ff:ff:ff:ff', sha: POD_A.podMac, sip: POD_A.ip, tha: '00:00:00:00:00:00', tip: NODE.routerIp }),
    expect: {
      retval: TC_ACT_REDIRECT,
      frame: arpFrame({ op: 2, srcMac: POD_A.lxcMac, dstMac: POD_A.podMac, sha: POD_A.lxcMac, sip: NODE.routerIp, tha: POD_A.podMac, tip: POD_A.ip }),
      metrics: fwd(LXC_ARP_FORWARD),
      events: [{ ...fromLxcTrace, summary: `ARP who-has ${NODE.routerIp} tell ${POD_A.ip}` }],
    },
  },
  {
    name: 'lxc: the gratuitous ARP after a MAC change (arp_notify) moves cilium_lxc to the new MAC, and passes',
    ...LXC,
    maps: { endpoints: [POD_A_ENTRY, POD_B] },
    frame: arpFrame({ op: 1, srcMac: TUNED_MAC, dstMac: 'ff:ff:ff:ff:ff:ff', sha: TUNED_MAC, sip: POD_A.ip, tha: '00:00:00:00:00:00', tip: POD_A.ip }),
    expect: {
      retval: TC_ACT_OK, metrics: fwd(LXC_ARP_FORWARD), events: [{ ...fromLxcTrace, summary: `ARP who-has ${POD_A.ip} tell ${POD_A.ip}` }],
      endpoints: [{ ...POD_A_ENTRY, mac: TUNED_MAC }, POD_B],
    },
  },
  {
    name: 'lxc: an ARP request for the gateway from a new MAC is answered to it, and cilium_lxc follows',
    ...LXC,
    maps: { endpoints: [POD_A_ENTRY] },
    frame: arpFrame({ op: 1, srcMac: TUNED_MAC, dstMac: 'ff:ff:ff:ff:ff:ff', sha: TUNED_MAC, sip: POD_A.ip, tha: '00:00:00:00:00:00', tip: NODE.routerIp }),
    expect: {
      retval: TC_ACT_REDIRECT,
      frame: arpFrame({ op: 2, srcMac: POD_A.lxcMac, dstMac: TUNED_MAC, sha: POD_A.lxcMac, sip: NODE.routerIp, tha: TUNED_MAC, tip: POD_A.ip }),
      metrics: fwd(LXC_ARP_FORWARD),
      events: [{ ...fromLxcTrace, summary: `ARP who-has ${NODE.routerIp} tell ${POD_A.ip}` }],
      endpoints: [{ ...POD_A_ENTRY, mac: TUNED_MAC }],
    },
  },
  {
    name: "lxc: an ARP claiming another pod's IP changes no cilium_lxc entry",
    ...LXC,
    maps: { endpoints: [POD_A_ENTRY, POD_B] },
    frame: arpFrame({ op: 1, srcMac: TUNED_MAC, dstMac: 'ff:ff:ff:ff:ff:ff', sha: TUNED_MAC, sip: POD_B.ip, tha: '00:00:00:00:00:00', tip: POD_B.ip }),
    expect: {
      // Answered like any request for an address not the pod's own (the responder's rule), but nothing learned.
      retval: TC_ACT_REDIRECT,
      frame: arpFrame({ op: 2, srcMac: POD_A.lxcMac, dstMac: TUNED_MAC, sha: POD_A.lxcMac, sip: POD_B.ip, tha: TUNED_MAC, tip: POD_B.ip }),
      metrics: fwd(LXC_ARP_FORWARD),
      events: [{ ...fromLxcTrace, summary: `ARP who-has ${POD_B.ip} tell ${POD_B.ip}` }],
    },
  },
  {
    name: "lxc: ARP for the pod's own IP (duplicate address detection) passes unanswered",
    ...LXC,
    frame: arpFrame({ op: 1, srcMac: POD_A.podMac, dstMac: 'ff:ff:ff:ff:ff:ff', sha: POD_A.podMac, sip: '0.0.0.0', tha: '00:00:00:00:00:00', tip: POD_A.ip }),
    expect: { retval: TC_ACT_OK, metrics: fwd(LXC_ARP_FORWARD), events: [fromLxcTrace] },
  },

  // ---- bpf_host: cil_from_host (host stack -> pods), cil_to_host (-> host stack) ----
  {
    name: 'host: host -> local pod is delivered directly with the host identity',
    ...FROM_HOST_PROG,
    maps: { endpoints: [POD_B, ROUTER] },
    frame: fromHost(POD_B.ip),
    expect: {
      retval: TC_ACT_REDIRECT, frame: deliveredToB(NODE.routerIp), mark: identityToMark(IDENTITY_HOST), metrics: fwd(HOST_IPV4_FORWARD),
      events: [fromHostTrace, {
        type: 'trace', point: TO_LXC, source: HOST_EP_ID, srcLabel: IDENTITY_HOST, dstLabel: POD_B.secId, dstId: POD_B.lxcId, ifindex: POD_B.ifindex, packet: 'out',
      }],
    },
  },
  {
    name: 'host: TTL 1 from the host to a local pod is dropped (TTL exceeded)',
    ...FROM_HOST_PROG,
    maps: { endpoints: [POD_B] },
    frame: ipv4Frame({ srcMac: HOST_MAC, dstMac: HOST_MAC, src: NODE.routerIp, dst: POD_B.ip, ttl: 1 }),
    expect: {
      retval: TC_ACT_SHOT,
      metrics: [{ reason: DROP_TTL_EXCEEDED, dir: METRIC_EGRESS, site: TTL_SITE }],
      events: [fromHostTrace, drop(DROP_TTL_EXCEEDED, TTL_SITE, { source: HOST_EP_ID, srcLabel: IDENTITY_HOST, dstLabel: POD_B.secId, dstId: POD_B.lxcId })],
    },
  },
  {
    name: 'host: a pod packet routed back through cilium_host keeps the identity from its mark',
    ...FROM_HOST_PROG,
    maps: { endpoints: [POD_B] },
    frame: ipv4Frame({ srcMac: HOST_MAC, dstMac: HOST_MAC, src: POD_A.ip, dst: POD_B.ip }),
    ctx: { mark: identityToMark(POD_A.identity) },
    expect: {
      retval: TC_ACT_REDIRECT, frame: deliveredToB(POD_A.ip), mark: identityToMark(POD_A.identity), metrics: fwd(HOST_IPV4_FORWARD),
      events: [{ ...fromHostTrace, srcLabel: POD_A.identity }, { type: 'trace', point: TO_LXC, srcLabel: POD_A.identity, dstLabel: POD_B.secId }],
    },
  },
  {
    name: 'host: a local host IP is turned around to cilium_net (destination MAC = net_mac)',
    ...FROM_HOST_PROG,
    maps: { endpoints: [NODE_IP] },
    frame: fromHost(NODE.nodeIp),
    expect: {
      retval: TC_ACT_OK,
      frame: ipv4Frame({ srcMac: HOST_MAC, dstMac: NODE.netMac, src: NODE.routerIp, dst: NODE.nodeIp }),
      metrics: fwd(HOST_IPV4_FORWARD),
      events: [fromHostTrace, { type: 'trace', point: TO_STACK, srcLabel: IDENTITY_HOST, dstLabel: IDENTITY_HOST, ifindex: NODE.netIfindex, packet: 'out' }],
    },
  },
  {
    name: 'host: host -> remote pod is encapsulated with VNI = remote-node, never host',
    ...FROM_HOST_PROG,
    maps: { ipcache: [REMOTE_POD] },
    frame: fromHost(REMOTE.ip),
    expect: {
      retval: TC_ACT_REDIRECT, metrics: fwd(HOST_IPV4_FORWARD),
      events: [
        fromHostTrace,
        { type: 'debug', subtype: DBG_ENCAP, source: HOST_EP_ID, tunnelEndpoint: REMOTE.node, vni: IDENTITY_REMOTE_NODE, ifindex: NODE.encapIfindex },
        { type: 'trace', point: TO_OVERLAY, srcLabel: IDENTITY_REMOTE_NODE, dstLabel: REMOTE.identity, ifindex: NODE.encapIfindex },
      ],
    },
  },
  {
    name: 'host: no pod behind the destination is dropped (unroutable), so it cannot loop',
    ...FROM_HOST_PROG,
    frame: fromHost('10.0.9.9'),
    expect: {
      retval: TC_ACT_SHOT,
      metrics: [{ reason: DROP_UNROUTABLE, dir: METRIC_EGRESS, site: site('bpf_host.c', 'DROP(DROP_UNROUTABLE)') }],
      events: [fromHostTrace, drop(DROP_UNROUTABLE, site('bpf_host.c', 'DROP(DROP_UNROUTABLE)'), { source: HOST_EP_ID, srcLabel: IDENTITY_HOST, dstLabel: 0 })],
    },
  },
  {
    name: 'host: non-IPv4 passes without a tail call',
    ...FROM_HOST_PROG,
    frame: arpFrame({ op: 1, srcMac: HOST_MAC, dstMac: 'ff:ff:ff:ff:ff:ff', sha: HOST_MAC, sip: NODE.routerIp, tha: '00:00:00:00:00:00', tip: POD_B.ip }),
    expect: { retval: TC_ACT_OK, metrics: fwd(HOST_FORWARD), events: [fromHostTrace] },
  },
  {
    name: 'host: an empty IPv4 tail-call slot drops at the tail call (missed tail call)',
    ...FROM_HOST_PROG,
    maps: { endpoints: [POD_B], emptySlots: [23] },
    frame: fromHost(POD_B.ip),
    expect: {
      retval: TC_ACT_SHOT,
      metrics: [{ reason: DROP_MISSED_TAIL_CALL, dir: METRIC_EGRESS, site: site('bpf_host.c', 'tail_call_or_drop(ctx, CILIUM_CALL_IPV4_FROM_HOST)') }],
      events: [fromHostTrace, drop(DROP_MISSED_TAIL_CALL, site('bpf_host.c', 'tail_call_or_drop(ctx, CILIUM_CALL_IPV4_FROM_HOST)'), { source: HOST_EP_ID, srcLabel: IDENTITY_HOST })],
    },
  },
  {
    name: 'host: cil_to_host passes a pod -> host packet with the identity from its mark',
    object: 'bpf_host', program: 'cil_to_host', constants: HOST,
    frame: fromPodA(NODE.routerIp),
    ctx: { mark: identityToMark(POD_A.identity) },
    expect: {
      retval: TC_ACT_OK, metrics: fwd(TO_HOST_FORWARD, METRIC_INGRESS),
      events: [{ type: 'trace', point: TO_STACK, source: HOST_EP_ID, srcLabel: POD_A.identity, dstLabel: IDENTITY_HOST, ifindex: LOOPBACK_IFINDEX, packet: 'in' }],
    },
  },
  {
    name: 'host: cil_to_host reads MARK_MAGIC_HOST as the host identity',
    object: 'bpf_host', program: 'cil_to_host', constants: HOST,
    frame: fromHost(NODE.routerIp),
    ctx: { mark: MARK_MAGIC_HOST },
    expect: { retval: TC_ACT_OK, metrics: fwd(TO_HOST_FORWARD, METRIC_INGRESS), events: [{ type: 'trace', point: TO_STACK, srcLabel: IDENTITY_HOST }] },
  },
  {
    name: 'host: cil_to_host without a mark traces the source as world',
    object: 'bpf_host', program: 'cil_to_host', constants: HOST,
    frame: fromOverlay(NODE.routerIp),
    expect: { retval: TC_ACT_OK, metrics: fwd(TO_HOST_FORWARD, METRIC_INGRESS), events: [{ type: 'trace', point: TO_STACK, srcLabel: IDENTITY_WORLD }] },
  },

  // ---- bpf_overlay ----
  {
    // A test run carries no tunnel metadata, which is exactly the case this drop covers.
    name: 'overlay: cil_from_overlay without tunnel metadata drops (no tunnel key, EINVAL)',
    object: 'bpf_overlay', program: 'cil_from_overlay',
    maps: { endpoints: [POD_B] },
    frame: fromOverlay(POD_B.ip),
    expect: {
      retval: TC_ACT_SHOT,
      metrics: [{ reason: DROP_NO_TUNNEL_KEY, dir: METRIC_INGRESS, site: site('bpf_overlay.c', 'DROP_EXT(ctx, DROP_NO_TUNNEL_KEY') }],
      // bpf_skb_get_tunnel_key returns -EINVAL when the skb has no tunnel info at all.
      events: [drop(DROP_NO_TUNNEL_KEY, site('bpf_overlay.c', 'DROP_EXT(ctx, DROP_NO_TUNNEL_KEY'), { source: 0, srcLabel: 0, extError: EINVAL, ifindex: LOOPBACK_IFINDEX })],
    },
  },
  {
    name: 'overlay: cil_from_overlay passes non-IPv4 untouched',
    object: 'bpf_overlay', program: 'cil_from_overlay',
    frame: arpFrame({ op: 1, srcMac: REMOTE_MAC, dstMac: 'ff:ff:ff:ff:ff:ff', sha: REMOTE_MAC, sip: REMOTE.ip, tha: '00:00:00:00:00:00', tip: POD_B.ip }),
    expect: { retval: TC_ACT_OK, metrics: fwd(OVERLAY_FORWARD, METRIC_INGRESS), events: [] },
  },
  {
    name: 'overlay: a remote claiming the host identity is dropped (invalid identity)',
    ...OVERLAY_TAIL,
    maps: { endpoints: [POD_B] },
    frame: fromOverlay(POD_B.ip),
    ctx: { cb: [IDENTITY_HOST] },
    expect: {
      retval: TC_ACT_SHOT,
      metrics: [{ reason: DROP_INVALID_IDENTITY, dir: METRIC_INGRESS, site: site('bpf_overlay.c', 'DROP(DROP_INVALID_IDENTITY)', 'ipv4_from_overlay(struct') }],
      events: [drop(DROP_INVALID_IDENTITY, site('bpf_overlay.c', 'DROP(DROP_INVALID_IDENTITY)', 'ipv4_from_overlay(struct'), { source: 0, srcLabel: IDENTITY_HOST, dstLabel: 0 })],
    },
  },
  {
    name: 'overlay: a remote pod -> local pod is delivered with the VNI identity',
    ...OVERLAY_TAIL,
    maps: { endpoints: [POD_B] },
    frame: fromOverlay(POD_B.ip),
    ctx: { cb: [REMOTE.identity] },
    expect: {
      retval: TC_ACT_REDIRECT, frame: deliveredToB(REMOTE.ip), mark: identityToMark(REMOTE.identity), metrics: fwd(OVERLAY_IPV4_FORWARD, METRIC_INGRESS),
      events: [{ type: 'trace', point: TO_LXC, source: 0, srcLabel: REMOTE.identity, dstLabel: POD_B.secId, dstId: POD_B.lxcId, ifindex: POD_B.ifindex, packet: 'out' }],
    },
  },
  {
    name: 'overlay: TTL 1 from a remote pod to a local pod is dropped (TTL exceeded)',
    ...OVERLAY_TAIL,
    maps: { endpoints: [POD_B] },
    frame: fromOverlay(POD_B.ip, 1),
    ctx: { cb: [REMOTE.identity] },
    expect: {
      retval: TC_ACT_SHOT,
      metrics: [{ reason: DROP_TTL_EXCEEDED, dir: METRIC_INGRESS, site: TTL_SITE }],
      events: [drop(DROP_TTL_EXCEEDED, TTL_SITE, { srcLabel: REMOTE.identity, dstLabel: POD_B.secId, dstId: POD_B.lxcId })],
    },
  },
  {
    name: 'overlay: anything else is for this host: MACs for cilium_host, ingress redirect, identity mark',
    ...OVERLAY_TAIL,
    maps: { endpoints: [NODE_IP] },
    frame: ipv4Frame({ srcMac: REMOTE_MAC, dstMac: NODE.encapMac, src: '192.168.50.2', dst: NODE.nodeIp }),
    ctx: { cb: [IDENTITY_REMOTE_NODE] },
    expect: {
      retval: TC_ACT_REDIRECT,
      frame: ipv4Frame({ srcMac: NODE.encapMac, dstMac: NODE.hostMac, src: '192.168.50.2', dst: NODE.nodeIp }),
      mark: identityToMark(IDENTITY_REMOTE_NODE), metrics: fwd(OVERLAY_IPV4_FORWARD, METRIC_INGRESS), events: [],
    },
  },
  {
    name: 'overlay: host delivery before cilium_host exists is dropped (host not ready)',
    ...OVERLAY_TAIL,
    maps: { nodeConfig: { hostIfindex: 0 } },
    frame: fromOverlay(NODE.nodeIp),
    ctx: { cb: [REMOTE.identity] },
    expect: {
      retval: TC_ACT_SHOT,
      metrics: [{ reason: DROP_HOST_NOT_READY, dir: METRIC_INGRESS, site: site('bpf_overlay.c', 'DROP(DROP_HOST_NOT_READY)', 'host_ifindex = cfg->host_ifindex') }],
      events: [drop(DROP_HOST_NOT_READY, site('bpf_overlay.c', 'DROP(DROP_HOST_NOT_READY)', 'host_ifindex = cfg->host_ifindex'), { srcLabel: REMOTE.identity })],
    },
  },
  {
    name: 'overlay: cil_to_overlay counts and passes',
    object: 'bpf_overlay', program: 'cil_to_overlay',
    frame: fromPodA(REMOTE.ip),
    expect: { retval: TC_ACT_OK, metrics: fwd(TO_OVERLAY_FORWARD), events: [] },
  },
];

for (const c of CASES) {
  test(c.name, { skip }, (t) => {
    checkCase(c, runCase(t, c, NODE));
  });
}
