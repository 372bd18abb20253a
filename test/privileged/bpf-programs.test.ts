// Program-level tests of the real datapath objects (bpf_lxc.o, bpf_host.o,
// bpf_overlay.o): each row loads one object with fresh pinned maps, writes
// the maps it names, runs one program with BPF_PROG_TEST_RUN on a crafted
// frame and checks the verdict, the whole output frame, skb->mark, every
// cilium_metrics entry (reason, direction, file:line) and every cilium_events
// record, in order. Root only; no network device is created or touched.
//
// To add a row (observability, ...): append to CASES. Sites are looked up in
// the C source with site(file, needle), so a row names the code that must
// have decided, not a line number. Every endpoint a row names has an
// allow-all policy map unless the row gives one (maps.policy); the policy
// and conntrack rows are in POLICY_CASES.
import { test } from 'node:test';
import { IDENTITY_HOST, IDENTITY_REMOTE_NODE, IDENTITY_WORLD, identityToMark, MARK_MAGIC_HOST } from '../../src/datapath/maps/identities.ts';
import { hostEndpoint, type EndpointEntry } from '../../src/datapath/maps/endpoints.ts';
import { CT_ENTRY_F_RX_CLOSING, CT_ENTRY_F_SEEN_NON_SYN, CT_ENTRY_F_TX_CLOSING, CT_LIFETIME, type CtTuple } from '../../src/datapath/maps/conntrack.ts';
import { portRangeBlocks, type PolicyMapEntry } from '../../src/datapath/maps/policy.ts';
import { METRIC_EGRESS, METRIC_INGRESS } from '../../src/datapath/maps/metrics.ts';
import type { NodeConfig } from '../../src/datapath/maps/node-config.ts';
import {
  arpFrame, checkCase, hostConstants, icmpMessage, ipIdForChecksum, ipv4Frame, ipv6Frame, LOOPBACK_IFINDEX, lxcConstants, quoted, runCase, site,
  TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, tcpHeader, udpHeader, type CtExpect, type EventExpect, type ProgramCase,
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
const TO_HOST = 2;
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
  endpointRoutes: false, traceLevel: 2, routeMtu: 1450,
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
const TO_HOST_FORWARD = site('bpf_host.c', 'ctx_finish(ctx, to_host(ctx), METRIC_INGRESS)');
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
    name: 'lxc: local delivery at trace level 0 sends no event at all (no trace, no allow verdict of the new connection)',
    ...LXC,
    maps: { nodeConfig: { traceLevel: 0 }, endpoints: [POD_B] },
    frame: fromPodA(POD_B.ip),
    expect: { retval: TC_ACT_REDIRECT, frame: deliveredToB(POD_A.ip), mark: identityToMark(POD_A.identity), metrics: fwd(LXC_IPV4_FORWARD), events: [], verdicts: [] },
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
    name: 'lxc: encapsulation at trace level 0 sends neither DBG_ENCAP nor traces nor verdicts',
    ...LXC,
    maps: { nodeConfig: { traceLevel: 0 }, ipcache: [REMOTE_POD] },
    frame: fromPodA(REMOTE.ip),
    expect: { retval: TC_ACT_REDIRECT, metrics: fwd(LXC_IPV4_FORWARD), events: [], verdicts: [] },
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
      // Handed to the host through the cilium_host/cilium_net pair: to-host (to-stack comes in cil_to_host).
      events: [fromHostTrace, { type: 'trace', point: TO_HOST, srcLabel: IDENTITY_HOST, dstLabel: IDENTITY_HOST, ifindex: NODE.netIfindex, packet: 'out' }],
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
      mark: identityToMark(IDENTITY_REMOTE_NODE), metrics: fwd(OVERLAY_IPV4_FORWARD, METRIC_INGRESS),
      // The FROM_OVERLAY trace is the entry program's (not run here); the tail traces the hand-over to the host.
      events: [{ type: 'trace', point: TO_HOST, source: 0, srcLabel: IDENTITY_REMOTE_NODE, dstLabel: IDENTITY_HOST, ifindex: NODE.hostIfindex, packet: 'out' }],
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

// --- policy and conntrack ------------------------------------------------------------

const DROP_POLICY = 133;
const DROP_FRAG_NOSUPPORT = 157;
const DROP_POLICY_DENY = 181;
const DROP_EP_NOT_READY = 203;
const FROM_STACK = 8;
const ICMP = 1;
const TCP = 6;
const UDP = 17;
const FIN = 0x01;
const SYN = 0x02;
const RST = 0x04;
const ACK = 0x10;
const HOST_SLOT = 1;
/** Trace reasons = conntrack states. */
const CT_NEW = 0;
const CT_ESTABLISHED = 1;
const CT_REPLY = 2;
const CT_RELATED = 3;
const INGRESS = false;
const EGRESS = true;

const allow = (identity: number, egress: boolean, protocol = 0, port = 0, portPrefixLen = protocol && port ? 16 : 0): PolicyMapEntry =>
  ({ identity, egress, protocol, port, portPrefixLen, deny: false });
const deny = (identity: number, egress: boolean, protocol = 0, port = 0, portPrefixLen = protocol && port ? 16 : 0): PolicyMapEntry =>
  ({ ...allow(identity, egress, protocol, port, portPrefixLen), deny: true });

const POLICY_SITE = site('policy.h', 'DROP(DROP_POLICY)');
const DENY_SITE = site('policy.h', 'DROP(DROP_POLICY_DENY)');
const NOT_READY_SITE = site('policy.h', 'DROP(DROP_EP_NOT_READY)');
const TO_CONTAINER_FORWARD = site('bpf_lxc.c', 'ctx_finish(ctx, to_container(ctx)');

const l4 = (proto: number, bytes: Buffer) => ({ proto, bytes });
/** A TCP segment pod A sends to `dst`. */
const tcpFromA = (dst: string, sport: number, dport: number, flags: number) =>
  ipv4Frame({ srcMac: POD_A.podMac, dstMac: POD_A.lxcMac, src: POD_A.ip, dst, l4: l4(TCP, tcpHeader(sport, dport, flags)) });
/** The same segment as delivered into pod B. */
const tcpIntoB = (src: string, sport: number, dport: number, flags: number) =>
  ipv4Frame({ srcMac: POD_B.nodeMac, dstMac: POD_B.mac, src, dst: POD_B.ip, ttl: 63, l4: l4(TCP, tcpHeader(sport, dport, flags)) });
const udpFromA = (dst: string, sport: number, dport: number, o: { fragOff?: number } = {}) =>
  ipv4Frame({ srcMac: POD_A.podMac, dstMac: POD_A.lxcMac, src: POD_A.ip, dst, fragOff: o.fragOff, l4: l4(UDP, udpHeader(sport, dport)) });
const udpIntoB = (src: string, sport: number, dport: number) =>
  ipv4Frame({ srcMac: POD_B.nodeMac, dstMac: POD_B.mac, src, dst: POD_B.ip, ttl: 63, l4: l4(UDP, udpHeader(sport, dport)) });
const tuple = (saddr: string, sport: number, daddr: string, dport: number, proto: number, dir: 'out' | 'in'): CtTuple => ({ saddr, daddr, sport, dport, proto, dir });
/** Pod A's connection to pod B (A:40000 -> B:port) as both sides track it. */
const abOut = (dport = 80, proto = TCP) => tuple(POD_A.ip, 40000, POD_B.ip, dport, proto, 'out');
const abIn = (dport = 80, proto = TCP) => tuple(POD_A.ip, 40000, POD_B.ip, dport, proto, 'in');

/** B's map: everything out, and `ingress` in. */
const bPolicy = (...ingress: PolicyMapEntry[]) => ({ [POD_B.lxcId]: [allow(0, EGRESS), ...ingress] });
/** A packet from pod A delivered into pod B: verdict, frame, mark, forward metric, traces. */
const deliveredAB = (frame: Buffer, reason: number, conntrack?: CtExpect[]) => ({
  retval: TC_ACT_REDIRECT, frame, mark: identityToMark(POD_A.identity), metrics: fwd(LXC_IPV4_FORWARD),
  events: [fromLxcTrace, { type: 'trace', point: TO_LXC, dstLabel: POD_B.secId, dstId: POD_B.lxcId, reason, packet: 'out' }] as EventExpect[],
  ...(conntrack ? { conntrack } : {}),
});
/** Dropped in pod A's program at `at`, for pod B's ingress (or `f` to name other labels). */
const droppedAB = (reason: number, at: ReturnType<typeof site>, f: Record<string, unknown> = {}): ProgramCase['expect'] => ({
  retval: TC_ACT_SHOT,
  metrics: [{ reason, dir: METRIC_EGRESS, site: at }],
  events: [fromLxcTrace, drop(reason, at, { source: POD_A.id, srcLabel: POD_A.identity, dstLabel: POD_B.secId, dstId: POD_B.lxcId, ...f })],
});
const established = (t: CtTuple, o: { expiresIn?: number; flags?: number; srcSecId?: number } = {}) =>
  ({ tuple: t, expiresIn: o.expiresIn ?? 1000, flags: o.flags ?? CT_ENTRY_F_SEEN_NON_SYN, srcSecId: o.srcSecId ?? POD_A.identity, txFlagsSeen: SYN | ACK, rxFlagsSeen: SYN | ACK });
const RANGE_8000_8080 = portRangeBlocks(8000, 8080).map((b) => ({ ...allow(POD_A.identity, INGRESS, TCP), ...b }));
const remoteUdp = tuple(POD_B.ip, 5000, REMOTE.ip, 53, UDP, 'out');

/** Policy verdict records (trace level 2 sends one per new connection, and every denial). */
const POLICY_MATCH = { none: 0, l3Only: 1, l3L4: 2, l4Only: 3, all: 4, l3Proto: 5 } as const;
const verdict = (f: Record<string, unknown>): EventExpect => ({ type: 'policy-verdict', packet: 'in', ...f });
/** Pod A's allow-all egress map lets its packet to pod B out. */
const aEgressAllowed = (dstPort: number, proto = TCP) => verdict({
  endpointId: POD_A.id, direction: 'egress', remoteLabel: POD_B.secId, verdict: 'allow', reason: 0, proto, dstPort, match: POLICY_MATCH.all, matchText: 'all', cookie: 0,
});
/** Pod B's ingress decision on pod A's packet. */
const bIngress = (f: Record<string, unknown>) => verdict({ endpointId: POD_B.lxcId, direction: 'ingress', remoteLabel: POD_A.identity, ...f });

const POLICY_CASES: ProgramCase[] = [
  // ---- lookups: exact, wildcards, ranges, deny, default ----
  {
    name: 'policy: an exact allow (identity, TCP, port) lets a new connection in; both sides record it (SYN only: 60 s)',
    ...LXC,
    maps: { endpoints: [POD_B], policy: bPolicy({ ...allow(POD_A.identity, INGRESS, TCP, 80), cookie: 77 }) },
    frame: tcpFromA(POD_B.ip, 40000, 80, SYN),
    expect: { ...deliveredAB(tcpIntoB(POD_A.ip, 40000, 80, SYN), CT_NEW, [
      { tuple: abOut(), expiresIn: CT_LIFETIME.tcpSyn, flags: 0, srcSecId: POD_A.identity, txFlagsSeen: SYN, rxFlagsSeen: 0, policyRev: 0, policyRemote: POD_B.secId },
      { tuple: abIn(), expiresIn: CT_LIFETIME.tcpSyn, flags: 0, srcSecId: POD_A.identity, txFlagsSeen: SYN, rxFlagsSeen: 0, policyRev: 0, policyRemote: POD_A.identity },
    ]), verdicts: [aEgressAllowed(80), bIngress({ verdict: 'allow', reason: 0, reasonText: 'allowed', proto: TCP, protoText: 'TCP', dstPort: 80, match: POLICY_MATCH.l3L4, matchText: 'L3-L4', cookie: 77 })] },
  },
  {
    name: 'policy: the same endpoint, selected, denies another port (Policy denied, both identities and the endpoint in the event)',
    ...LXC,
    maps: { endpoints: [POD_B], policy: bPolicy(allow(POD_A.identity, INGRESS, TCP, 80)) },
    frame: tcpFromA(POD_B.ip, 40000, 81, SYN),
    // Pod A's egress allowed it and recorded it before B's ingress said no (as a remote destination would).
    expect: { ...droppedAB(DROP_POLICY, POLICY_SITE), conntrack: [{ tuple: abOut(81) }], verdicts: [aEgressAllowed(81), bIngress({ verdict: 'deny', denyKind: 'default', reason: DROP_POLICY, dstPort: 81, match: POLICY_MATCH.none, matchText: 'none', cookie: 0 })] },
  },
  {
    name: 'policy: a TCP rule without a port (wildcard port, prefix 48) allows any TCP port',
    ...LXC,
    maps: { endpoints: [POD_B], policy: bPolicy(allow(POD_A.identity, INGRESS, TCP)) },
    frame: tcpFromA(POD_B.ip, 40000, 443, SYN),
    expect: { ...deliveredAB(tcpIntoB(POD_A.ip, 40000, 443, SYN), CT_NEW), verdicts: [aEgressAllowed(443), bIngress({ verdict: 'allow', dstPort: 443, match: POLICY_MATCH.l3Proto, matchText: 'L3-Proto' })] },
  },
  {
    name: 'policy: a rule without a protocol (wildcard protocol, prefix 40) allows UDP; the entry goes to the non-TCP table (60 s)',
    ...LXC,
    maps: { endpoints: [POD_B], policy: bPolicy(allow(POD_A.identity, INGRESS)) },
    frame: udpFromA(POD_B.ip, 40000, 53),
    expect: { ...deliveredAB(udpIntoB(POD_A.ip, 40000, 53), CT_NEW, [
      { tuple: abOut(53, UDP), expiresIn: CT_LIFETIME.nonTcp, srcSecId: POD_A.identity },
      { tuple: abIn(53, UDP), expiresIn: CT_LIFETIME.nonTcp, srcSecId: POD_A.identity },
    ]), verdicts: [aEgressAllowed(53, UDP), bIngress({ verdict: 'allow', proto: UDP, protoText: 'UDP', dstPort: 53, match: POLICY_MATCH.l3Only, matchText: 'L3-Only' })] },
  },
  {
    name: 'policy: a rule for any identity (sec_label 0) allows pod A',
    ...LXC,
    maps: { endpoints: [POD_B], policy: bPolicy(allow(0, INGRESS, TCP, 80)) },
    frame: tcpFromA(POD_B.ip, 40000, 80, SYN),
    expect: { ...deliveredAB(tcpIntoB(POD_A.ip, 40000, 80, SYN), CT_NEW), verdicts: [aEgressAllowed(80), bIngress({ verdict: 'allow', dstPort: 80, match: POLICY_MATCH.l4Only, matchText: 'L4-Only' })] },
  },
  {
    name: 'policy: a port range 8000-8080 stored as prefix blocks allows 8070 (block 8064/12)',
    ...LXC,
    maps: { endpoints: [POD_B], policy: bPolicy(...RANGE_8000_8080) },
    frame: tcpFromA(POD_B.ip, 40000, 8070, SYN),
    expect: deliveredAB(tcpIntoB(POD_A.ip, 40000, 8070, SYN), CT_NEW),
  },
  {
    name: 'policy: the last port of the range (8080/16) is allowed',
    ...LXC,
    maps: { endpoints: [POD_B], policy: bPolicy(...RANGE_8000_8080) },
    frame: tcpFromA(POD_B.ip, 40000, 8080, SYN),
    expect: deliveredAB(tcpIntoB(POD_A.ip, 40000, 8080, SYN), CT_NEW),
  },
  {
    name: 'policy: one past the range (8081) is denied',
    ...LXC,
    maps: { endpoints: [POD_B], policy: bPolicy(...RANGE_8000_8080) },
    frame: tcpFromA(POD_B.ip, 40000, 8081, SYN),
    expect: droppedAB(DROP_POLICY, POLICY_SITE),
  },
  {
    name: 'policy: a deny for any identity beats an allow for pod A (Policy denied by denylist)',
    ...LXC,
    maps: { endpoints: [POD_B], policy: bPolicy(deny(0, INGRESS), allow(POD_A.identity, INGRESS, TCP, 80)) },
    frame: tcpFromA(POD_B.ip, 40000, 80, SYN),
    expect: { ...droppedAB(DROP_POLICY_DENY, DENY_SITE), verdicts: [aEgressAllowed(80), bIngress({ verdict: 'deny', denyKind: 'rule', reason: DROP_POLICY_DENY, dstPort: 80, match: POLICY_MATCH.all, matchText: 'all' })] },
  },
  {
    name: "policy: a deny for pod A's identity on TCP beats a more specific allow of port 80 (stored as a deny: the LPM sees only one)",
    ...LXC,
    maps: { endpoints: [POD_B], policy: bPolicy(allow(0, INGRESS), deny(POD_A.identity, INGRESS, TCP), allow(POD_A.identity, INGRESS, TCP, 80)) },
    frame: tcpFromA(POD_B.ip, 40000, 80, SYN),
    expect: droppedAB(DROP_POLICY_DENY, DENY_SITE),
  },
  {
    name: 'policy: a deny of one port leaves the others of an allow-all',
    ...LXC,
    maps: { endpoints: [POD_B], policy: bPolicy(allow(0, INGRESS), deny(POD_A.identity, INGRESS, TCP, 22)) },
    frame: tcpFromA(POD_B.ip, 40000, 80, SYN),
    expect: deliveredAB(tcpIntoB(POD_A.ip, 40000, 80, SYN), CT_NEW),
  },
  {
    name: 'policy: an endpoint selected for ingress by rules for other identities denies pod A (default deny)',
    ...LXC,
    maps: { endpoints: [POD_B], policy: bPolicy(allow(999, INGRESS)) },
    frame: fromPodA(POD_B.ip),
    expect: { ...droppedAB(DROP_POLICY, POLICY_SITE), verdicts: [aEgressAllowed(8, ICMP), bIngress({ verdict: 'deny', reason: DROP_POLICY, proto: ICMP, protoText: 'ICMP', dstPort: 8, match: POLICY_MATCH.none })] },
  },
  {
    name: 'policy: egress selected (pod A may reach only pod B on TCP 80) and B not selected (allow-all): delivered',
    ...LXC,
    maps: { endpoints: [POD_B], policy: { [POD_A.id]: [allow(0, INGRESS), allow(POD_B.secId, EGRESS, TCP, 80)] } },
    frame: tcpFromA(POD_B.ip, 40000, 80, SYN),
    expect: deliveredAB(tcpIntoB(POD_A.ip, 40000, 80, SYN), CT_NEW),
  },
  {
    name: "policy: pod A's egress policy denies a remote pod it does not name (checked against the ipcache identity)",
    ...LXC,
    maps: { ipcache: [REMOTE_POD], policy: { [POD_A.id]: [allow(0, INGRESS), allow(POD_B.secId, EGRESS, TCP, 80)] } },
    frame: tcpFromA(REMOTE.ip, 40000, 80, SYN),
    expect: droppedAB(DROP_POLICY, POLICY_SITE, { dstLabel: REMOTE.identity, dstId: 0 }),
  },
  {
    name: "policy: pod A's egress policy denies the world (8.8.8.8 has no ipcache entry: world)",
    ...LXC,
    maps: { policy: { [POD_A.id]: [allow(0, INGRESS), allow(POD_B.secId, EGRESS)] } },
    frame: tcpFromA('8.8.8.8', 40000, 443, SYN),
    expect: { ...droppedAB(DROP_POLICY, POLICY_SITE, { dstLabel: IDENTITY_WORLD, dstId: 0 }), conntrack: [] },
  },
  {
    name: 'policy: a destination endpoint without a policy map is not ready (drop 203), before any rewrite',
    ...LXC,
    maps: { endpoints: [POD_B], policy: { [POD_B.lxcId]: null } },
    frame: tcpFromA(POD_B.ip, 40000, 80, SYN),
    expect: droppedAB(DROP_EP_NOT_READY, NOT_READY_SITE),
  },
  {
    name: 'policy: a sending endpoint without its own policy map is not ready (drop 203)',
    ...LXC,
    maps: { policy: { [POD_A.id]: null } },
    frame: fromPodA('8.8.8.8'),
    expect: droppedAB(DROP_EP_NOT_READY, NOT_READY_SITE, { dstLabel: IDENTITY_WORLD, dstId: 0 }),
  },

  // ---- conntrack ----
  {
    name: "conntrack: a reply passes both sides' denied directions (A's egress, B's ingress): CT_REPLY skips policy",
    ...LXC,
    maps: {
      endpoints: [POD_B],
      policy: { [POD_A.id]: [allow(0, INGRESS)], [POD_B.lxcId]: [allow(0, EGRESS)] },
      // B:40000 -> A:80, made at B's egress and at A's ingress.
      conntrack: [established(tuple(POD_B.ip, 40000, POD_A.ip, 80, TCP, 'out'), { srcSecId: POD_B.secId }),
        established(tuple(POD_B.ip, 40000, POD_A.ip, 80, TCP, 'in'), { srcSecId: POD_B.secId })],
    },
    frame: tcpFromA(POD_B.ip, 80, 40000, ACK),
    expect: deliveredAB(tcpIntoB(POD_A.ip, 80, 40000, ACK), CT_REPLY, [
      { tuple: tuple(POD_B.ip, 40000, POD_A.ip, 80, TCP, 'out'), expiresIn: CT_LIFETIME.tcpEstablished },
      { tuple: tuple(POD_B.ip, 40000, POD_A.ip, 80, TCP, 'in'), expiresIn: CT_LIFETIME.tcpEstablished },
    ]),
  },
  // ---- trace levels: 1 traces a connection at its to-* points when it opens, gains TCP flags or every 5 s; 0 only drops and denials ----
  {
    name: 'trace level 1: a new connection is traced at to-endpoint only (no from-* point), with the allow verdicts of both sides',
    ...LXC,
    maps: { nodeConfig: { traceLevel: 1 }, endpoints: [POD_B], policy: bPolicy(allow(POD_A.identity, INGRESS, TCP, 80)) },
    frame: tcpFromA(POD_B.ip, 40000, 80, SYN),
    expect: {
      ...deliveredAB(tcpIntoB(POD_A.ip, 40000, 80, SYN), CT_NEW),
      events: [{ type: 'trace', point: TO_LXC, source: POD_A.id, dstLabel: POD_B.secId, dstId: POD_B.lxcId, reason: CT_NEW, packet: 'out' }],
      verdicts: [aEgressAllowed(80), bIngress({ verdict: 'allow', match: POLICY_MATCH.l3L4 })],
    },
  },
  {
    name: 'trace level 1: a reply whose direction was reported 1 s ago, with no new TCP flags, sends nothing',
    ...LXC,
    maps: {
      nodeConfig: { traceLevel: 1 },
      endpoints: [POD_B],
      conntrack: [{ ...established(tuple(POD_B.ip, 40000, POD_A.ip, 80, TCP, 'out'), { srcSecId: POD_B.secId }), rxReportedAgo: 1 },
        { ...established(tuple(POD_B.ip, 40000, POD_A.ip, 80, TCP, 'in'), { srcSecId: POD_B.secId }), rxReportedAgo: 1 }],
    },
    frame: tcpFromA(POD_B.ip, 80, 40000, ACK),
    expect: { ...deliveredAB(tcpIntoB(POD_A.ip, 80, 40000, ACK), CT_REPLY), events: [], verdicts: [] },
  },
  {
    name: 'trace level 1: the same reply 6 s after the last report is traced at to-endpoint again',
    ...LXC,
    maps: {
      nodeConfig: { traceLevel: 1 },
      endpoints: [POD_B],
      conntrack: [{ ...established(tuple(POD_B.ip, 40000, POD_A.ip, 80, TCP, 'out'), { srcSecId: POD_B.secId }), rxReportedAgo: 6 },
        { ...established(tuple(POD_B.ip, 40000, POD_A.ip, 80, TCP, 'in'), { srcSecId: POD_B.secId }), rxReportedAgo: 6 }],
    },
    frame: tcpFromA(POD_B.ip, 80, 40000, ACK),
    expect: {
      ...deliveredAB(tcpIntoB(POD_A.ip, 80, 40000, ACK), CT_REPLY),
      events: [{ type: 'trace', point: TO_LXC, dstLabel: POD_B.secId, reason: CT_REPLY, packet: 'out' }], verdicts: [],
    },
  },
  {
    name: 'trace level 1: a reply adding FIN to what its direction has seen is traced although reported 1 s ago',
    ...LXC,
    maps: {
      nodeConfig: { traceLevel: 1 },
      endpoints: [POD_B],
      conntrack: [{ ...established(tuple(POD_B.ip, 40000, POD_A.ip, 80, TCP, 'out'), { srcSecId: POD_B.secId }), rxReportedAgo: 1 },
        { ...established(tuple(POD_B.ip, 40000, POD_A.ip, 80, TCP, 'in'), { srcSecId: POD_B.secId }), rxReportedAgo: 1 }],
    },
    frame: tcpFromA(POD_B.ip, 80, 40000, FIN | ACK),
    expect: {
      ...deliveredAB(tcpIntoB(POD_A.ip, 80, 40000, FIN | ACK), CT_REPLY),
      events: [{ type: 'trace', point: TO_LXC, dstLabel: POD_B.secId, reason: CT_REPLY, packet: 'out' }], verdicts: [],
    },
  },
  {
    name: 'trace level 0: a denied connection sends its drop and the deny verdict, no trace and no allow verdict',
    ...LXC,
    maps: { nodeConfig: { traceLevel: 0 }, endpoints: [POD_B], policy: bPolicy(allow(POD_A.identity, INGRESS, TCP, 80)) },
    frame: tcpFromA(POD_B.ip, 40000, 81, SYN),
    expect: {
      ...droppedAB(DROP_POLICY, POLICY_SITE),
      events: [drop(DROP_POLICY, POLICY_SITE, { source: POD_A.id, srcLabel: POD_A.identity, dstLabel: POD_B.secId, dstId: POD_B.lxcId })],
      verdicts: [bIngress({ verdict: 'deny', reason: DROP_POLICY, dstPort: 81, match: POLICY_MATCH.none })],
    },
  },
  {
    name: 'conntrack: the same reply without the entries is a new connection, and A may not open it (Policy denied)',
    ...LXC,
    maps: { endpoints: [POD_B], policy: { [POD_A.id]: [allow(0, INGRESS)], [POD_B.lxcId]: [allow(0, EGRESS)] } },
    frame: tcpFromA(POD_B.ip, 80, 40000, ACK),
    expect: { ...droppedAB(DROP_POLICY, POLICY_SITE), conntrack: [] },
  },
  {
    name: 'conntrack: an ICMP echo reply (the echo id as port) passes a denied egress',
    ...LXC,
    maps: {
      endpoints: [POD_B],
      policy: { [POD_A.id]: [allow(0, INGRESS)] },
      // B pinged A with echo id 0x77: B's egress and A's ingress recorded it.
      conntrack: [{ tuple: tuple(POD_B.ip, 0, POD_A.ip, 0x77, ICMP, 'out'), expiresIn: 30, srcSecId: POD_B.secId },
        { tuple: tuple(POD_B.ip, 0, POD_A.ip, 0x77, ICMP, 'in'), expiresIn: 30, srcSecId: POD_B.secId }],
    },
    frame: ipv4Frame({ srcMac: POD_A.podMac, dstMac: POD_A.lxcMac, src: POD_A.ip, dst: POD_B.ip, l4: l4(ICMP, icmpMessage(0, 0, Buffer.from([0, 0x77, 0, 1]))) }),
    expect: deliveredAB(ipv4Frame({ srcMac: POD_B.nodeMac, dstMac: POD_B.mac, src: POD_A.ip, dst: POD_B.ip, ttl: 63, l4: l4(ICMP, icmpMessage(0, 0, Buffer.from([0, 0x77, 0, 1]))) }), CT_REPLY, [
      { tuple: tuple(POD_B.ip, 0, POD_A.ip, 0x77, ICMP, 'out'), expiresIn: CT_LIFETIME.nonTcp },
      { tuple: tuple(POD_B.ip, 0, POD_A.ip, 0x77, ICMP, 'in'), expiresIn: CT_LIFETIME.nonTcp },
    ]),
  },
  {
    name: 'conntrack: an established connection is checked again: a policy that now denies it cuts it',
    ...LXC,
    maps: { endpoints: [POD_B], policy: bPolicy(), conntrack: [established(abOut()), established(abIn())] },
    frame: tcpFromA(POD_B.ip, 40000, 80, ACK),
    expect: droppedAB(DROP_POLICY, POLICY_SITE),
  },
  {
    // The agent increments the revision after every change: this is what a packet sees before that.
    name: 'conntrack: an established connection allowed at the current policy revision for the same identities skips the lookup',
    ...LXC,
    maps: {
      endpoints: [POD_B], policy: bPolicy(),
      conntrack: [{ ...established(abOut()), policyRev: 0, policyRemote: POD_B.secId }, { ...established(abIn()), policyRev: 0, policyRemote: POD_A.identity }],
    },
    frame: tcpFromA(POD_B.ip, 40000, 80, ACK),
    expect: deliveredAB(tcpIntoB(POD_A.ip, 40000, 80, ACK), CT_ESTABLISHED),
  },
  {
    name: "conntrack: a newer revision of pod B's policy looks the connection up again: the change cuts it",
    ...LXC,
    maps: {
      endpoints: [POD_B], policy: bPolicy(), policyRev: { [POD_B.lxcId]: 1 },
      conntrack: [{ ...established(abOut()), policyRev: 0, policyRemote: POD_B.secId }, { ...established(abIn()), policyRev: 0, policyRemote: POD_A.identity }],
    },
    frame: tcpFromA(POD_B.ip, 40000, 80, ACK),
    expect: droppedAB(DROP_POLICY, POLICY_SITE),
  },
  {
    name: 'conntrack: a verdict cached for another remote identity (the peer got a new one) is looked up again',
    ...LXC,
    maps: {
      endpoints: [POD_B], policy: bPolicy(),
      conntrack: [{ ...established(abOut()), policyRev: 0, policyRemote: POD_B.secId }, { ...established(abIn()), policyRev: 0, policyRemote: 999 }],
    },
    frame: tcpFromA(POD_B.ip, 40000, 80, ACK),
    expect: droppedAB(DROP_POLICY, POLICY_SITE),
  },
  {
    name: 'conntrack: allowed again at a newer revision, the entry takes the revision and the identity',
    ...LXC,
    maps: {
      endpoints: [POD_B], policy: bPolicy(allow(POD_A.identity, INGRESS)), policyRev: { [POD_A.id]: 3, [POD_B.lxcId]: 5 },
      conntrack: [established(abOut()), established(abIn())],
    },
    frame: tcpFromA(POD_B.ip, 40000, 80, ACK),
    expect: deliveredAB(tcpIntoB(POD_A.ip, 40000, 80, ACK), CT_ESTABLISHED, [
      { tuple: abOut(), policyRev: 3, policyRemote: POD_B.secId },
      { tuple: abIn(), policyRev: 5, policyRemote: POD_A.identity },
    ]),
  },
  {
    name: 'conntrack: a packet of an allowed established connection refreshes its entries to the established lifetime',
    ...LXC,
    maps: { endpoints: [POD_B], policy: bPolicy(allow(POD_A.identity, INGRESS, TCP, 80)), conntrack: [established(abOut(), { expiresIn: 100 }), established(abIn(), { expiresIn: 100 })] },
    frame: tcpFromA(POD_B.ip, 40000, 80, ACK),
    expect: deliveredAB(tcpIntoB(POD_A.ip, 40000, 80, ACK), CT_ESTABLISHED, [
      { tuple: abOut(), expiresIn: CT_LIFETIME.tcpEstablished, flags: CT_ENTRY_F_SEEN_NON_SYN },
      { tuple: abIn(), expiresIn: CT_LIFETIME.tcpEstablished, flags: CT_ENTRY_F_SEEN_NON_SYN },
    ]),
  },
  {
    name: 'conntrack: the ACK that completes the handshake moves SYN-only entries to established (8000 s)',
    ...LXC,
    maps: {
      endpoints: [POD_B],
      conntrack: [{ tuple: abOut(), expiresIn: 50, flags: 0, srcSecId: POD_A.identity, txFlagsSeen: SYN, rxFlagsSeen: SYN | ACK },
        { tuple: abIn(), expiresIn: 50, flags: 0, srcSecId: POD_A.identity, txFlagsSeen: SYN, rxFlagsSeen: SYN | ACK }],
    },
    frame: tcpFromA(POD_B.ip, 40000, 80, ACK),
    expect: deliveredAB(tcpIntoB(POD_A.ip, 40000, 80, ACK), CT_ESTABLISHED, [
      { tuple: abOut(), expiresIn: CT_LIFETIME.tcpEstablished, flags: CT_ENTRY_F_SEEN_NON_SYN, txFlagsSeen: SYN | ACK },
      { tuple: abIn(), expiresIn: CT_LIFETIME.tcpEstablished, flags: CT_ENTRY_F_SEEN_NON_SYN, txFlagsSeen: SYN | ACK },
    ]),
  },
  {
    name: 'conntrack: a FIN from one side marks it closing; the other side may still send, so the lifetime stays',
    ...LXC,
    maps: { endpoints: [POD_B], conntrack: [established(abOut()), established(abIn())] },
    frame: tcpFromA(POD_B.ip, 40000, 80, FIN | ACK),
    expect: deliveredAB(tcpIntoB(POD_A.ip, 40000, 80, FIN | ACK), CT_ESTABLISHED, [
      { tuple: abOut(), expiresIn: CT_LIFETIME.tcpEstablished, flags: CT_ENTRY_F_SEEN_NON_SYN | CT_ENTRY_F_TX_CLOSING, txFlagsSeen: SYN | ACK | FIN },
      { tuple: abIn(), expiresIn: CT_LIFETIME.tcpEstablished, flags: CT_ENTRY_F_SEEN_NON_SYN | CT_ENTRY_F_TX_CLOSING, txFlagsSeen: SYN | ACK | FIN },
    ]),
  },
  {
    name: 'conntrack: a FIN after the other side closed moves the connection to closing (10 s)',
    ...LXC,
    maps: {
      endpoints: [POD_B],
      conntrack: [established(abOut(), { flags: CT_ENTRY_F_SEEN_NON_SYN | CT_ENTRY_F_RX_CLOSING }), established(abIn(), { flags: CT_ENTRY_F_SEEN_NON_SYN | CT_ENTRY_F_RX_CLOSING })],
    },
    frame: tcpFromA(POD_B.ip, 40000, 80, FIN | ACK),
    expect: deliveredAB(tcpIntoB(POD_A.ip, 40000, 80, FIN | ACK), CT_ESTABLISHED, [
      { tuple: abOut(), expiresIn: CT_LIFETIME.tcpClosing, flags: CT_ENTRY_F_SEEN_NON_SYN | CT_ENTRY_F_RX_CLOSING | CT_ENTRY_F_TX_CLOSING },
      { tuple: abIn(), expiresIn: CT_LIFETIME.tcpClosing, flags: CT_ENTRY_F_SEEN_NON_SYN | CT_ENTRY_F_RX_CLOSING | CT_ENTRY_F_TX_CLOSING },
    ]),
  },
  {
    name: 'conntrack: a RST closes at once (10 s)',
    ...LXC,
    maps: { endpoints: [POD_B], conntrack: [established(abOut()), established(abIn())] },
    frame: tcpFromA(POD_B.ip, 40000, 80, RST),
    expect: deliveredAB(tcpIntoB(POD_A.ip, 40000, 80, RST), CT_ESTABLISHED, [
      { tuple: abOut(), expiresIn: CT_LIFETIME.tcpClosing, flags: CT_ENTRY_F_SEEN_NON_SYN | CT_ENTRY_F_RX_CLOSING | CT_ENTRY_F_TX_CLOSING },
      { tuple: abIn(), expiresIn: CT_LIFETIME.tcpClosing, flags: CT_ENTRY_F_SEEN_NON_SYN | CT_ENTRY_F_RX_CLOSING | CT_ENTRY_F_TX_CLOSING },
    ]),
  },
  {
    name: 'conntrack: an expired entry counts as missing: the packet is new again and policy decides',
    ...LXC,
    maps: { endpoints: [POD_B], policy: bPolicy(), conntrack: [established(tuple(POD_B.ip, 40000, POD_A.ip, 80, TCP, 'out'), { expiresIn: -5 })] },
    frame: tcpFromA(POD_B.ip, 80, 40000, ACK),
    expect: { ...droppedAB(DROP_POLICY, POLICY_SITE), conntrack: [{ tuple: tuple(POD_B.ip, 40000, POD_A.ip, 80, TCP, 'out'), expiresIn: -5 }, { tuple: tuple(POD_A.ip, 80, POD_B.ip, 40000, TCP, 'out') }] },
  },
  {
    name: 'conntrack: a fragment whose first fragment was not seen has no ports and is dropped',
    ...LXC,
    maps: { endpoints: [POD_B] },
    frame: udpFromA(POD_B.ip, 40000, 53, { fragOff: 0x0010 }),
    expect: droppedAB(DROP_FRAG_NOSUPPORT, site('conntrack.h', 'DROP(DROP_FRAG_NOSUPPORT)'), { dstLabel: 0, dstId: 0 }),
  },

  // ---- the overlay: source identity = VNI ----
  {
    name: "overlay: pod B's ingress policy applies to a remote pod (identity from the VNI): not allowed",
    ...OVERLAY_TAIL,
    maps: { endpoints: [POD_B], policy: bPolicy(allow(POD_A.identity, INGRESS)) },
    frame: fromOverlay(POD_B.ip),
    ctx: { cb: [REMOTE.identity] },
    expect: {
      retval: TC_ACT_SHOT,
      metrics: [{ reason: DROP_POLICY, dir: METRIC_INGRESS, site: POLICY_SITE }],
      events: [drop(DROP_POLICY, POLICY_SITE, { source: 0, srcLabel: REMOTE.identity, dstLabel: POD_B.secId, dstId: POD_B.lxcId })],
    },
  },
  {
    name: "overlay: pod B's ingress policy allows the remote pod's identity",
    ...OVERLAY_TAIL,
    maps: { endpoints: [POD_B], policy: bPolicy(allow(REMOTE.identity, INGRESS, ICMP, 8)) },
    frame: fromOverlay(POD_B.ip),
    ctx: { cb: [REMOTE.identity] },
    expect: {
      retval: TC_ACT_REDIRECT, frame: deliveredToB(REMOTE.ip), mark: identityToMark(REMOTE.identity), metrics: fwd(OVERLAY_IPV4_FORWARD, METRIC_INGRESS),
      events: [{ type: 'trace', point: TO_LXC, srcLabel: REMOTE.identity, reason: CT_NEW, packet: 'out' }],
      conntrack: [{ tuple: tuple(REMOTE.ip, 0, POD_B.ip, 0x4d, ICMP, 'in'), srcSecId: REMOTE.identity, expiresIn: CT_LIFETIME.nonTcp }],
    },
  },
  {
    name: 'overlay: an ICMP error for a connection pod B opened is related: it passes a denied ingress',
    ...OVERLAY_TAIL,
    maps: { endpoints: [POD_B], policy: bPolicy(), conntrack: [{ tuple: remoteUdp, expiresIn: 30, srcSecId: POD_B.secId }] },
    frame: ipv4Frame({
      srcMac: REMOTE_MAC, dstMac: NODE.encapMac, src: REMOTE.ip, dst: POD_B.ip,
      l4: l4(ICMP, icmpMessage(3, 3, Buffer.concat([Buffer.alloc(4), quoted(ipv4Frame({ srcMac: POD_B.mac, dstMac: POD_B.nodeMac, src: POD_B.ip, dst: REMOTE.ip, l4: l4(UDP, udpHeader(5000, 53)) }))]))),
    }),
    ctx: { cb: [REMOTE.identity] },
    expect: {
      retval: TC_ACT_REDIRECT, mark: identityToMark(REMOTE.identity), metrics: fwd(OVERLAY_IPV4_FORWARD, METRIC_INGRESS),
      frame: ipv4Frame({
        srcMac: POD_B.nodeMac, dstMac: POD_B.mac, src: REMOTE.ip, dst: POD_B.ip, ttl: 63,
        l4: l4(ICMP, icmpMessage(3, 3, Buffer.concat([Buffer.alloc(4), quoted(ipv4Frame({ srcMac: POD_B.mac, dstMac: POD_B.nodeMac, src: POD_B.ip, dst: REMOTE.ip, l4: l4(UDP, udpHeader(5000, 53)) }))]))),
      }),
      events: [{ type: 'trace', point: TO_LXC, reason: CT_RELATED, packet: 'out' }],
      conntrack: [{ tuple: remoteUdp }],
    },
  },
  {
    name: 'overlay: an ICMP error for no known connection goes through policy (denied)',
    ...OVERLAY_TAIL,
    maps: { endpoints: [POD_B], policy: bPolicy() },
    frame: ipv4Frame({
      srcMac: REMOTE_MAC, dstMac: NODE.encapMac, src: REMOTE.ip, dst: POD_B.ip,
      l4: l4(ICMP, icmpMessage(3, 3, Buffer.concat([Buffer.alloc(4), quoted(ipv4Frame({ srcMac: POD_B.mac, dstMac: POD_B.nodeMac, src: POD_B.ip, dst: REMOTE.ip, l4: l4(UDP, udpHeader(5000, 53)) }))]))),
    }),
    ctx: { cb: [REMOTE.identity] },
    expect: {
      retval: TC_ACT_SHOT,
      metrics: [{ reason: DROP_POLICY, dir: METRIC_INGRESS, site: POLICY_SITE }],
      events: [drop(DROP_POLICY, POLICY_SITE, { srcLabel: REMOTE.identity, dstLabel: POD_B.secId, dstId: POD_B.lxcId })],
      conntrack: [],
    },
  },

  // ---- cil_to_container (endpoint routes) ----
  {
    name: "to-container: pod A's ingress policy, source identity from the mark: allowed",
    object: 'bpf_lxc', program: 'cil_to_container', constants: LXC_A,
    maps: { policy: { [POD_A.id]: [allow(0, EGRESS), allow(POD_B.secId, INGRESS)] } },
    frame: ipv4Frame({ srcMac: POD_A.lxcMac, dstMac: POD_A.podMac, src: POD_B.ip, dst: POD_A.ip }),
    ctx: { mark: identityToMark(POD_B.secId) },
    expect: {
      retval: TC_ACT_OK, metrics: fwd(TO_CONTAINER_FORWARD, METRIC_INGRESS),
      events: [
        { type: 'trace', point: FROM_STACK, source: POD_A.id, srcLabel: POD_B.secId, dstLabel: POD_A.identity, dstId: POD_A.id },
        { type: 'trace', point: TO_LXC, source: POD_A.id, srcLabel: POD_B.secId, dstLabel: POD_A.identity, dstId: POD_A.id, ifindex: LOOPBACK_IFINDEX, packet: 'out' },
      ],
    },
  },
  {
    name: "to-container: pod A's ingress policy denies what it does not allow (ingress drop, both identities)",
    object: 'bpf_lxc', program: 'cil_to_container', constants: LXC_A,
    maps: { policy: { [POD_A.id]: [allow(0, EGRESS), allow(999, INGRESS)] } },
    frame: ipv4Frame({ srcMac: POD_A.lxcMac, dstMac: POD_A.podMac, src: POD_B.ip, dst: POD_A.ip }),
    ctx: { mark: identityToMark(POD_B.secId) },
    expect: {
      retval: TC_ACT_SHOT,
      metrics: [{ reason: DROP_POLICY, dir: METRIC_INGRESS, site: POLICY_SITE }],
      events: [
        { type: 'trace', point: FROM_STACK, srcLabel: POD_B.secId },
        drop(DROP_POLICY, POLICY_SITE, { source: POD_A.id, srcLabel: POD_B.secId, dstLabel: POD_A.identity, dstId: POD_A.id }),
      ],
    },
  },
  {
    name: 'to-container: an unmarked packet from a host address (ipcache: host) is the host, not world',
    object: 'bpf_lxc', program: 'cil_to_container', constants: LXC_A,
    maps: { ipcache: [{ cidr: `${NODE.routerIp}/32`, value: { identity: IDENTITY_HOST } }], policy: { [POD_A.id]: [allow(0, EGRESS), allow(IDENTITY_HOST, INGRESS)] } },
    frame: ipv4Frame({ srcMac: POD_A.lxcMac, dstMac: POD_A.podMac, src: NODE.routerIp, dst: POD_A.ip }),
    expect: {
      retval: TC_ACT_OK, metrics: fwd(TO_CONTAINER_FORWARD, METRIC_INGRESS),
      events: [{ type: 'trace', point: FROM_STACK, srcLabel: IDENTITY_HOST }, { type: 'trace', point: TO_LXC, srcLabel: IDENTITY_HOST, dstLabel: POD_A.identity }],
    },
  },

  // ---- host firewall (slot 1): off without a map ----
  {
    name: 'host firewall off (no host map): pod A reaches the router IP; both sides are tracked all the same',
    ...LXC,
    maps: { endpoints: [ROUTER] },
    frame: fromPodA(NODE.routerIp),
    expect: {
      retval: TC_ACT_OK, mark: identityToMark(POD_A.identity), metrics: fwd(LXC_IPV4_FORWARD),
      events: [fromLxcTrace, { type: 'trace', point: TO_STACK, dstLabel: IDENTITY_HOST, reason: CT_NEW }],
      conntrack: [{ tuple: tuple(POD_A.ip, 0, NODE.routerIp, 0x4d, ICMP, 'out') }, { tuple: tuple(POD_A.ip, 0, NODE.routerIp, 0x4d, ICMP, 'in') }],
    },
  },
  {
    name: 'host firewall on: a host policy not allowing pod A drops its packet to the router IP',
    ...LXC,
    maps: { endpoints: [ROUTER], policy: { [HOST_SLOT]: [allow(0, EGRESS), allow(999, INGRESS)] } },
    frame: fromPodA(NODE.routerIp),
    expect: droppedAB(DROP_POLICY, POLICY_SITE, { dstLabel: IDENTITY_HOST, dstId: 0 }),
  },
  {
    name: 'host firewall on: a connection tracked while it was off is looked up (no verdict was cached), and denied',
    ...LXC,
    maps: {
      endpoints: [ROUTER], policy: { [HOST_SLOT]: [allow(0, EGRESS), allow(999, INGRESS)] },
      conntrack: [
        { tuple: tuple(POD_A.ip, 0, NODE.routerIp, 0x4d, ICMP, 'out'), expiresIn: 30, srcSecId: POD_A.identity, policyRev: 0, policyRemote: IDENTITY_HOST },
        { tuple: tuple(POD_A.ip, 0, NODE.routerIp, 0x4d, ICMP, 'in'), expiresIn: 30, srcSecId: POD_A.identity, policyRev: 0, policyRemote: 0 },
      ],
    },
    frame: fromPodA(NODE.routerIp),
    expect: droppedAB(DROP_POLICY, POLICY_SITE, { dstLabel: IDENTITY_HOST, dstId: 0 }),
  },
  {
    name: 'host firewall on: a host policy allowing ICMP echo (type 8) from pod A lets it through',
    ...LXC,
    maps: { endpoints: [ROUTER], policy: { [HOST_SLOT]: [allow(0, EGRESS), allow(POD_A.identity, INGRESS, ICMP, 8)] } },
    frame: fromPodA(NODE.routerIp),
    expect: {
      retval: TC_ACT_OK, mark: identityToMark(POD_A.identity), metrics: fwd(LXC_IPV4_FORWARD),
      events: [fromLxcTrace, { type: 'trace', point: TO_STACK, dstLabel: IDENTITY_HOST }],
    },
  },
  {
    name: 'host firewall off: cil_to_host passes the overlay to the host',
    object: 'bpf_host', program: 'cil_to_host', constants: HOST,
    frame: fromOverlay(NODE.nodeIp),
    ctx: { mark: identityToMark(REMOTE.identity) },
    expect: { retval: TC_ACT_OK, metrics: fwd(TO_HOST_FORWARD, METRIC_INGRESS), events: [{ type: 'trace', point: TO_STACK, srcLabel: REMOTE.identity, reason: CT_NEW }] },
  },
  {
    name: 'host firewall on: cil_to_host drops the overlay to the host when the host policy does not allow the sender',
    object: 'bpf_host', program: 'cil_to_host', constants: HOST,
    maps: { policy: { [HOST_SLOT]: [allow(0, EGRESS), allow(IDENTITY_REMOTE_NODE, INGRESS)] } },
    frame: fromOverlay(NODE.nodeIp),
    ctx: { mark: identityToMark(REMOTE.identity) },
    expect: {
      retval: TC_ACT_SHOT,
      metrics: [{ reason: DROP_POLICY, dir: METRIC_INGRESS, site: POLICY_SITE }],
      events: [drop(DROP_POLICY, POLICY_SITE, { source: HOST_EP_ID, srcLabel: REMOTE.identity, dstLabel: IDENTITY_HOST, dstId: 0 })],
    },
  },
  {
    name: 'host firewall on: the host reaching itself is never checked',
    object: 'bpf_host', program: 'cil_to_host', constants: HOST,
    maps: { policy: { [HOST_SLOT]: [] } },
    frame: fromHost(NODE.routerIp),
    ctx: { mark: MARK_MAGIC_HOST },
    expect: { retval: TC_ACT_OK, metrics: fwd(TO_HOST_FORWARD, METRIC_INGRESS), events: [{ type: 'trace', point: TO_STACK, srcLabel: IDENTITY_HOST }], conntrack: [] },
  },
  {
    name: 'host firewall on: its egress policy drops host -> local pod when it does not allow the pod',
    ...FROM_HOST_PROG,
    maps: { endpoints: [POD_B, ROUTER], policy: { [HOST_SLOT]: [allow(0, INGRESS)] } },
    frame: fromHost(POD_B.ip),
    expect: {
      retval: TC_ACT_SHOT,
      metrics: [{ reason: DROP_POLICY, dir: METRIC_EGRESS, site: POLICY_SITE }],
      events: [fromHostTrace, drop(DROP_POLICY, POLICY_SITE, { source: HOST_EP_ID, srcLabel: IDENTITY_HOST, dstLabel: POD_B.secId, dstId: POD_B.lxcId })],
    },
  },
  {
    name: 'host firewall on: its egress policy drops host -> remote pod before encapsulation',
    ...FROM_HOST_PROG,
    maps: { ipcache: [REMOTE_POD], policy: { [HOST_SLOT]: [allow(0, INGRESS), allow(POD_B.secId, EGRESS)] } },
    frame: fromHost(REMOTE.ip),
    expect: {
      retval: TC_ACT_SHOT,
      metrics: [{ reason: DROP_POLICY, dir: METRIC_EGRESS, site: POLICY_SITE }],
      events: [fromHostTrace, drop(DROP_POLICY, POLICY_SITE, { source: HOST_EP_ID, srcLabel: IDENTITY_HOST, dstLabel: REMOTE.identity, dstId: 0 })],
    },
  },
  {
    name: "host -> local pod: the pod's ingress policy applies with source identity host",
    ...FROM_HOST_PROG,
    maps: { endpoints: [POD_B, ROUTER], policy: bPolicy(allow(POD_A.identity, INGRESS)) },
    frame: fromHost(POD_B.ip),
    expect: {
      retval: TC_ACT_SHOT,
      metrics: [{ reason: DROP_POLICY, dir: METRIC_EGRESS, site: POLICY_SITE }],
      events: [fromHostTrace, drop(DROP_POLICY, POLICY_SITE, { source: HOST_EP_ID, srcLabel: IDENTITY_HOST, dstLabel: POD_B.secId, dstId: POD_B.lxcId })],
    },
  },
];

for (const c of [...CASES, ...POLICY_CASES]) {
  test(c.name, { skip }, (t) => {
    checkCase(c, runCase(t, c, NODE));
  });
}
