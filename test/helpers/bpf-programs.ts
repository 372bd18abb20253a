// Harness for program-level tests of the real datapath objects (bpf/*.o):
// each case loads one object into its own pin root (so its pinned maps are
// fresh and shared with nothing else), writes the map contents the case
// names, runs one program with BPF_PROG_TEST_RUN on a crafted frame and
// collects everything the program left behind: verdict, output frame and
// skb mark, cilium_metrics (summed over CPUs), the cilium_events records and
// the conntrack tables. Every endpoint the case names (the lxc program's own
// and each cilium_lxc pod entry) gets an allow-all policy map in its slot of
// cilium_policy_maps unless the case gives its entries (or null: no map).
// No network device is created or touched: a test run without ctx ifindex
// runs on the netns' loopback, and bpf_redirect only sets the verdict.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'node:test';
import { BpfMap, BpfObject, MAP_F_NO_PREALLOC, MAP_TYPE, possibleCpus, progTestRun, removePinTree } from '../../src/bpf/index.ts';
import * as ct from '../../src/datapath/maps/conntrack.ts';
import * as policy from '../../src/datapath/maps/policy.ts';
import { RingBufferReader } from '../../src/bpf/ringbuf.ts';
import * as endpoints from '../../src/datapath/maps/endpoints.ts';
import { decodeEvent, type DatapathEvent } from '../../src/datapath/maps/events.ts';
import * as ipcache from '../../src/datapath/maps/ipcache.ts';
import { encodeHostConfig, encodeLxcConfig, type LxcConfig } from '../../src/datapath/maps/load-config.ts';
import * as metrics from '../../src/datapath/maps/metrics.ts';
import * as nodeConfig from '../../src/datapath/maps/node-config.ts';
import { sourceFileName } from '../../src/datapath/maps/source-files.ts';
import { projectBpffs } from './membrane.ts';
import { uniqueName } from './netns.ts';

const BPF_DIR = fileURLToPath(new URL('../../bpf/', import.meta.url));

export const TC_ACT_OK = 0;
export const TC_ACT_SHOT = 2;
export const TC_ACT_REDIRECT = 7;

/** The netns' loopback: what a test run without ctx ifindex runs on (ctx->ifindex). */
export const LOOPBACK_IFINDEX = 1;

export type ObjectName = 'bpf_lxc' | 'bpf_host' | 'bpf_overlay';

// --- sites: file:line of a drop or forward, read from the C source -----------

export interface Site {
  file: string;
  line: number;
}

const sources = new Map<string, string[]>();

function sourceLines(file: string): string[] {
  let lines = sources.get(file);
  if (!lines) {
    const path = file.endsWith('.c') ? `${BPF_DIR}${file}` : `${BPF_DIR}lib/${file}`;
    lines = readFileSync(path, 'utf8').split('\n');
    sources.set(file, lines);
  }
  return lines;
}

/**
 * The line of `needle` in bpf/<file> (or bpf/lib/<file> for headers): the
 * site a metric or event must name. Looked up rather than hard-coded so an
 * unrelated edit above a site does not break every row, while a report from
 * the wrong site still fails. With `after`, the first match after the first
 * line containing `after` (for needles that occur more than once);
 * otherwise the needle must be unique.
 */
export function site(file: string, needle: string, after?: string): Site {
  const lines = sourceLines(file);
  let from = 0;
  if (after !== undefined) {
    from = lines.findIndex((l) => l.includes(after));
    if (from < 0) throw new Error(`site ${file}: no line contains "${after}"`);
    const i = lines.findIndex((l, n) => n > from && l.includes(needle));
    if (i < 0) throw new Error(`site ${file}: no "${needle}" after "${after}"`);
    return { file, line: i + 1 };
  }
  const hits = lines.flatMap((l, n) => (l.includes(needle) ? [n + 1] : []));
  if (hits.length !== 1) throw new Error(`site ${file}: "${needle}" found on ${hits.length} lines (${hits.join(', ')}), want exactly 1`);
  return { file, line: hits[0] };
}

// --- frames --------------------------------------------------------------------

function ipBytes(ip: string): number[] {
  const p = ip.split('.').map(Number);
  if (p.length !== 4 || p.some((x) => !Number.isInteger(x) || x < 0 || x > 255)) throw new Error(`bad IPv4 ${ip}`);
  return p;
}

function macBytes(mac: string): number[] {
  const p = mac.split(':').map((x) => parseInt(x, 16));
  if (p.length !== 6 || p.some((x) => Number.isNaN(x))) throw new Error(`bad MAC ${mac}`);
  return p;
}

/** RFC 1071 one's-complement sum over `b` (even length), folded and inverted. */
export function inetChecksum(b: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < b.length; i += 2) sum += (b[i] << 8) | (b[i + 1] ?? 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

export interface Ipv4FrameSpec {
  srcMac: string;
  dstMac: string;
  src: string;
  dst: string;
  ttl?: number;
  /** ICMP echo id (the payload is an echo request with 32 bytes of data). */
  id?: number;
  /** IPv4 identification (default 0x1234); see ipIdForChecksum. */
  ipId?: number;
  /** Another L4 than the ICMP echo request: protocol number and bytes (tcpHeader, udpHeader, icmpMessage). */
  l4?: { proto: number; bytes: Buffer };
  /** Flags and fragment offset word (default 0x4000: DF). */
  fragOff?: number;
}

/** A TCP header (20 bytes, no options) with these ports and flags (FIN 1, SYN 2, RST 4, ACK 0x10). */
export function tcpHeader(sport: number, dport: number, flags: number): Buffer {
  const b = Buffer.alloc(20);
  b.writeUInt16BE(sport, 0);
  b.writeUInt16BE(dport, 2);
  b.writeUInt32BE(1000, 4);
  b[12] = 5 << 4;
  b[13] = flags;
  b.writeUInt16BE(64240, 14);
  return b;
}

/** A UDP header and 8 bytes of payload. */
export function udpHeader(sport: number, dport: number): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt16BE(sport, 0);
  b.writeUInt16BE(dport, 2);
  b.writeUInt16BE(16, 4);
  return b;
}

/** An ICMP message: type, code, then `rest` (id/sequence, or 4 unused bytes and the quoted packet of an error). */
export function icmpMessage(type: number, code: number, rest: Buffer): Buffer {
  const b = Buffer.concat([Buffer.from([type, code, 0, 0]), rest]);
  b.writeUInt16BE(inetChecksum(b.length % 2 ? Buffer.concat([b, Buffer.alloc(1)]) : b), 2);
  return b;
}

/** The IPv4 header and first 8 L4 bytes of `frame`: what an ICMP error quotes. */
export function quoted(frame: Buffer): Buffer {
  return frame.subarray(14, 14 + 20 + 8);
}

/** Ethernet + IPv4 (valid header checksum) + ICMP echo request (74 bytes), or the L4 of `s.l4`. */
export function ipv4Frame(s: Ipv4FrameSpec): Buffer {
  let l4 = s.l4?.bytes;
  if (!l4) {
    const icmp = Buffer.alloc(8 + 32);
    icmp[0] = 8;
    icmp.writeUInt16BE(s.id ?? 0x4d, 4);
    icmp.writeUInt16BE(1, 6);
    for (let i = 8; i < icmp.length; i++) icmp[i] = i;
    icmp.writeUInt16BE(inetChecksum(icmp), 2);
    l4 = icmp;
  }
  const ip = Buffer.alloc(20);
  ip[0] = 0x45;
  ip.writeUInt16BE(20 + l4.length, 2);
  ip.writeUInt16BE(s.ipId ?? 0x1234, 4);
  ip.writeUInt16BE(s.fragOff ?? 0x4000, 6);
  ip[8] = s.ttl ?? 64;
  ip[9] = s.l4?.proto ?? 1;
  Buffer.from(ipBytes(s.src)).copy(ip, 12);
  Buffer.from(ipBytes(s.dst)).copy(ip, 16);
  ip.writeUInt16BE(inetChecksum(ip), 10);
  const eth = Buffer.from([...macBytes(s.dstMac), ...macBytes(s.srcMac), 0x08, 0x00]);
  return Buffer.concat([eth, ip, l4]);
}

/** An IPv4 identification that gives the frame of `s` the header checksum `check` (for checksum edge cases). */
export function ipIdForChecksum(s: Ipv4FrameSpec, check: number): number {
  for (let id = 0; id <= 0xffff; id++) {
    if (ipv4Frame({ ...s, ipId: id }).readUInt16BE(14 + 10) === check) return id;
  }
  throw new Error(`no IPv4 id gives checksum 0x${check.toString(16)}`);
}

export interface ArpFrameSpec {
  op: 1 | 2;
  srcMac: string;
  dstMac: string;
  sha: string;
  sip: string;
  tha: string;
  tip: string;
}

/** Ethernet + ARP for Ethernet/IPv4, padded to the 60-byte Ethernet minimum as a NIC would. */
export function arpFrame(s: ArpFrameSpec): Buffer {
  const b = Buffer.alloc(60);
  Buffer.from([...macBytes(s.dstMac), ...macBytes(s.srcMac), 0x08, 0x06]).copy(b, 0);
  Buffer.from([0, 1, 0x08, 0x00, 6, 4, 0, s.op, ...macBytes(s.sha), ...ipBytes(s.sip), ...macBytes(s.tha), ...ipBytes(s.tip)]).copy(b, 14);
  return b;
}

/** Ethernet + a minimal IPv6 header (next header: no next header). */
export function ipv6Frame(srcMac: string, dstMac: string): Buffer {
  const b = Buffer.alloc(14 + 40);
  Buffer.from([...macBytes(dstMac), ...macBytes(srcMac), 0x86, 0xdd]).copy(b, 0);
  b[14] = 0x60;
  b[14 + 6] = 59;
  b[14 + 7] = 64;
  return b;
}

/** Field-by-field view of an Ethernet/IPv4 frame, for readable assertion failures. */
export function ipv4Fields(b: Buffer): Record<string, string | number | boolean> {
  const mac = (o: number) => [...b.subarray(o, o + 6)].map((x) => x.toString(16).padStart(2, '0')).join(':');
  const ip = (o: number) => [...b.subarray(o, o + 4)].join('.');
  return {
    dstMac: mac(0), srcMac: mac(6), ethertype: b.readUInt16BE(12),
    ttl: b[14 + 8], check: b.readUInt16BE(14 + 10), checksumValid: inetChecksum(b.subarray(14, 34)) === 0,
    src: ip(14 + 12), dst: ip(14 + 16),
  };
}

// --- __sk_buff -------------------------------------------------------------------

/** sizeof(struct __sk_buff) as BPF_PROG_TEST_RUN accepts it for ctx_in. */
const SKB_SIZE = 192;
const SKB_MARK = 8;
const SKB_CB = 48;

export interface SkbCtx {
  mark?: number;
  /** skb->cb[0..4] (CB_SRC_LABEL = 0, CB_DST_LABEL = 1, ...), e.g. the state a tail call expects. */
  cb?: number[];
}

/** The __sk_buff fields a test run lets us set; everything else must stay zero or the kernel says EINVAL. */
export function skbCtx(c: SkbCtx = {}): Buffer {
  const b = Buffer.alloc(SKB_SIZE);
  b.writeUInt32LE(c.mark ?? 0, SKB_MARK);
  (c.cb ?? []).forEach((v, i) => b.writeUInt32LE(v, SKB_CB + 4 * i));
  return b;
}

// --- cases -----------------------------------------------------------------------

/** A conntrack entry written before the run; expiresIn is seconds from now. */
export interface CtPreload {
  tuple: ct.CtTuple;
  expiresIn: number;
  flags?: number;
  srcSecId?: number;
  txFlagsSeen?: number;
  rxFlagsSeen?: number;
  /** The cached verdict (default none). */
  policyRev?: number;
  policyRemote?: number;
  /** Seconds since a trace last reported the original / the reply direction (default: never). */
  txReportedAgo?: number;
  rxReportedAgo?: number;
}

export interface MapContents {
  /** Merged over the case's base node config. */
  nodeConfig?: Partial<nodeConfig.NodeConfig>;
  endpoints?: endpoints.EndpointEntry[];
  ipcache?: { cidr: string; value: ipcache.IpcacheValue }[];
  /** Tail-call slots emptied after loading (the loader fills every tail_N_ program). */
  emptySlots?: number[];
  /**
   * Policy maps by endpoint id (slot of cilium_policy_maps): the entries, or
   * null for an empty slot. Endpoints the case names (LXC_ID, cilium_lxc pod
   * entries) default to allow-all both ways; the host's slot (1) to empty.
   */
  policy?: Record<number, policy.PolicyMapEntry[] | null>;
  /** cilium_policy_rev by endpoint id (default 0). */
  policyRev?: Record<number, number>;
  conntrack?: CtPreload[];
}

/** A conntrack entry expected after the run: the tuple, and the fields given (expiresIn within 2 s). */
export interface CtExpect {
  tuple: ct.CtTuple;
  expiresIn?: number;
  flags?: number;
  srcSecId?: number;
  txFlagsSeen?: number;
  rxFlagsSeen?: number;
  policyRev?: number;
  policyRemote?: number;
}

export interface MetricExpect {
  /** Drop reason, 0 for a forward. */
  reason: number;
  dir: typeof metrics.METRIC_INGRESS | typeof metrics.METRIC_EGRESS;
  site: Site;
}

/**
 * Expected event: the listed fields of the decoded event must be equal
 * (others are not compared), plus `site` for drops and `packet`: the
 * captured bytes must be the start of the input ('in') or output ('out') frame.
 */
export type EventExpect = Record<string, unknown> & { type: DatapathEvent['type']; site?: Site; packet?: 'in' | 'out' };

export interface ProgramCase {
  name: string;
  object: ObjectName;
  program: string;
  /** Load-time constants (default: none; bpf_lxc needs encodeLxcConfig, bpf_host encodeHostConfig). */
  constants?: Record<string, Buffer>;
  maps?: MapContents;
  frame: Buffer;
  ctx?: SkbCtx;
  expect: {
    retval: number;
    /** The whole output frame; omit to require it unchanged. */
    frame?: Buffer;
    /** skb->mark after the run (default: as given in ctx, i.e. untouched). */
    mark?: number;
    /** Every cilium_metrics entry after the run; each must count this one packet. */
    metrics: MetricExpect[];
    /** Every cilium_events record after the run but the policy verdicts, in order. */
    events: EventExpect[];
    /** Every policy verdict record after the run, in order (omit: not checked; rows of the policy table name them). */
    verdicts?: EventExpect[];
    /** Every cilium_lxc entry after the run (omit: the program must not change the map). */
    endpoints?: endpoints.EndpointEntry[];
    /** Every conntrack entry after the run, both tables (omit: not checked). */
    conntrack?: CtExpect[];
  };
}

export interface RunResult {
  retval: number;
  frame: Buffer;
  mark: number;
  metrics: { key: metrics.MetricsKey; value: metrics.MetricsValue }[];
  events: DatapathEvent[];
  /** The same records as the ring held them (fixtures for the decoder's unit test). */
  records: Buffer[];
  /** cilium_lxc after the run, sorted by IP. */
  endpoints: endpoints.EndpointEntry[];
  /** Both conntrack tables after the run, with seconds left. */
  conntrack: (ct.CtTuple & ct.CtEntry & { expiresIn: number })[];
}

export function lxcConstants(c: LxcConfig): Record<string, Buffer> {
  return encodeLxcConfig(c);
}

export function hostConstants(hostEndpointId: number): Record<string, Buffer> {
  return encodeHostConfig({ hostEndpointId });
}

/** An endpoint's policy map as the agent makes it (bpf/lib/maps.h struct policy_map), holding `entries`. */
function makePolicyMap(epId: number, entries: policy.PolicyMapEntry[]): BpfMap {
  const m = BpfMap.create({
    type: MAP_TYPE.LPM_TRIE, name: policy.policyMapName(epId), keySize: policy.POLICY_KEY.size, valueSize: policy.POLICY_ENTRY.size,
    maxEntries: policy.POLICY_MAP_MAX_ENTRIES, flags: MAP_F_NO_PREALLOC,
  });
  for (const e of policy.normalizePolicyEntries(entries)) {
    const { key, value } = policy.encodeEntry(e);
    m.update(key, value);
  }
  return m;
}

/** The endpoints a case involves: the lxc program's own (LXC_ID) and every pod in cilium_lxc. */
function caseEndpointIds(c: ProgramCase): number[] {
  const ids = new Set<number>();
  if (c.constants?.LXC_ID) ids.add(c.constants.LXC_ID.readUInt32LE(0));
  for (const e of c.maps?.endpoints ?? []) if (e.lxcId && !(e.flags & endpoints.ENDPOINT_F_HOST)) ids.add(e.lxcId);
  return [...ids];
}

/**
 * Loads the case's object into a fresh pin root under the project bpffs,
 * writes its maps over `baseNodeConfig`, runs the program once and returns
 * what it did. Everything is released in t.after, also when setup throws.
 */
export function runCase(t: TestContext, c: ProgramCase, baseNodeConfig: nodeConfig.NodeConfig): RunResult {
  const pinRoot = `${projectBpffs()}/${uniqueName('prog')}`;
  t.after(() => removePinTree(pinRoot));
  const obj = BpfObject.open(`${BPF_DIR}${c.object}.o`, { pinRoot, constants: c.constants });
  t.after(() => obj.close());

  const m = c.maps ?? {};
  obj.map(nodeConfig.NODE_CONFIG_MAP_NAME).update(nodeConfig.encodeKey(), nodeConfig.encodeValue({ ...baseNodeConfig, ...m.nodeConfig }));
  for (const e of m.endpoints ?? []) {
    const { key, value } = endpoints.encodeEntry(e);
    obj.map(endpoints.ENDPOINTS_MAP_NAME).update(key, value);
  }
  for (const e of m.ipcache ?? []) obj.map(ipcache.IPCACHE_MAP_NAME).update(ipcache.encodeKey(e.cidr), ipcache.encodeValue(e.value));
  const outer = obj.map(policy.POLICY_MAPS_NAME);
  const maps: Record<number, policy.PolicyMapEntry[] | null> = Object.fromEntries(caseEndpointIds(c).map((id) => [id, [...policy.ALLOW_ALL]]));
  Object.assign(maps, m.policy ?? {});
  for (const [id, entries] of Object.entries(maps)) {
    if (entries === null) continue;
    const inner = makePolicyMap(Number(id), entries);
    try {
      const key = Buffer.alloc(4);
      key.writeUInt32LE(Number(id));
      outer.setInnerMap(key, inner);
    } finally {
      inner.close(); // the slot holds its own reference
    }
  }
  const now = ct.monotonicSeconds();
  for (const p of m.conntrack ?? []) {
    obj.map(ct.ctMapFor(p.tuple.proto)).update(ct.encodeKey(p.tuple), ct.encodeValue({
      lifetime: now + p.expiresIn, created: now, flags: p.flags, srcSecId: p.srcSecId, txFlagsSeen: p.txFlagsSeen, rxFlagsSeen: p.rxFlagsSeen,
      policyRev: p.policyRev, policyRemote: p.policyRemote,
      lastTxReport: p.txReportedAgo === undefined ? 0 : now - p.txReportedAgo,
      lastRxReport: p.rxReportedAgo === undefined ? 0 : now - p.rxReportedAgo,
    }));
  }
  for (const [id, rev] of Object.entries(m.policyRev ?? {})) {
    const key = Buffer.alloc(4);
    key.writeUInt32LE(Number(id));
    const value = Buffer.alloc(4);
    value.writeUInt32LE(rev);
    obj.map(policy.POLICY_REV_NAME).update(key, value);
  }
  for (const slot of m.emptySlots ?? []) {
    const key = Buffer.alloc(4);
    key.writeUInt32LE(slot);
    assert.ok(obj.map('cilium_calls').delete(key), `setup: tail-call slot ${slot} of ${c.object} was filled`);
  }

  const reader = RingBufferReader.open(obj.map('cilium_events'));
  t.after(() => reader.close());
  assert.deepEqual(reader.consume(), [], 'setup: a fresh cilium_events is empty');

  const r = progTestRun(obj.program(c.program).fd, c.frame, { ctx: skbCtx(c.ctx) });
  const ncpu = possibleCpus();
  const counters = [...obj.map(metrics.METRICS_MAP_NAME).entries()].map(([k, v]) => ({
    key: metrics.decodeKey(k),
    value: metrics.sumValues(metrics.decodePerCpuValues(v, ncpu)),
  }));
  const records = reader.consume();
  assert.deepEqual(reader.consume(), [], 'cilium_events: consume() returns each record once');
  return {
    retval: r.retval,
    frame: r.dataOut,
    mark: r.ctxOut!.readUInt32LE(SKB_MARK),
    metrics: counters,
    events: records.map((rec) => decodeEvent(rec)),
    records: records.map((rec) => Buffer.from(rec)),
    endpoints: sortedEndpoints([...obj.map(endpoints.ENDPOINTS_MAP_NAME).entries()].map(([k, v]) => endpoints.decodeEntry(k, v))),
    conntrack: [ct.CT_TCP_MAP_NAME, ct.CT_ANY_MAP_NAME].flatMap((name) => [...obj.map(name).entries()].map(([k, v]) => {
      const e = ct.decodeValue(v);
      return { ...ct.decodeKey(k), ...e, expiresIn: e.lifetime - ct.monotonicSeconds() };
    })),
  };
}

const tupleText = (t: ct.CtTuple) => ct.describeTuple(t);

const sortedEndpoints = (es: endpoints.EndpointEntry[]) => [...es].sort((a, b) => a.ip.localeCompare(b.ip, undefined, { numeric: true }));

function describeMetric(k: metrics.MetricsKey): string {
  return `reason ${k.reason} dir ${k.dir} at ${sourceFileName(k.file)}:${k.line}`;
}

/** Compares a run with the case's expectations; each part fails with its own message. */
export function checkCase(c: ProgramCase, r: RunResult): void {
  const x = c.expect;
  assert.equal(r.retval, x.retval, 'verdict (retval)');

  const wantFrame = x.frame ?? c.frame;
  if (!r.frame.equals(wantFrame)) {
    const isIpv4 = wantFrame.length >= 34 && wantFrame.readUInt16BE(12) === 0x0800;
    if (isIpv4 && r.frame.length >= 34) assert.deepEqual(ipv4Fields(r.frame), ipv4Fields(wantFrame), 'output frame headers');
    assert.equal(r.frame.toString('hex'), wantFrame.toString('hex'), x.frame ? 'output frame' : 'output frame (must be unchanged)');
  }
  assert.equal(r.mark >>> 0, (x.mark ?? c.ctx?.mark ?? 0) >>> 0, 'skb->mark');
  assert.deepEqual(r.endpoints, sortedEndpoints(x.endpoints ?? c.maps?.endpoints ?? []), x.endpoints ? 'cilium_lxc after the run' : 'cilium_lxc (must be unchanged)');

  if (x.conntrack) {
    assert.deepEqual(r.conntrack.map(tupleText).sort(), x.conntrack.map((e) => tupleText(e.tuple)).sort(), 'conntrack entries after the run');
    for (const want of x.conntrack) {
      const got = r.conntrack.find((e) => tupleText(e) === tupleText(want.tuple))!;
      const { tuple: _t, expiresIn, ...fields } = want;
      const picked = Object.fromEntries(Object.keys(fields).map((k) => [k, (got as unknown as Record<string, unknown>)[k]]));
      assert.deepEqual(picked, fields, `conntrack ${tupleText(want.tuple)}`);
      if (expiresIn !== undefined) {
        assert.ok(Math.abs(got.expiresIn - expiresIn) <= 2, `conntrack ${tupleText(want.tuple)}: expires in ${got.expiresIn} s, want ~${expiresIn} s`);
      }
    }
  }

  const got = r.metrics.map((e) => describeMetric(e.key)).sort();
  const want = x.metrics.map((e) => `reason ${e.reason} dir ${e.dir} at ${e.site.file}:${e.site.line}`).sort();
  assert.deepEqual(got, want, 'cilium_metrics keys');
  for (const e of r.metrics) {
    assert.deepEqual(e.value, { count: 1n, bytes: BigInt(c.frame.length) }, `cilium_metrics ${describeMetric(e.key)}: one packet of ${c.frame.length} bytes`);
  }

  const events = r.events.filter((e) => e.type !== 'policy-verdict');
  checkEvents(c, r, events, x.events, 'cilium_events record types');
  if (x.verdicts) checkEvents(c, r, r.events.filter((e) => e.type === 'policy-verdict'), x.verdicts, 'policy verdict records');
}

function checkEvents(c: ProgramCase, r: RunResult, events: DatapathEvent[], expected: EventExpect[], what: string): void {
  assert.deepEqual(events.map((e) => e.type), expected.map((e) => e.type), what);
  expected.forEach((want, i) => {
    const ev = events[i] as unknown as Record<string, unknown>;
    const { site: at, packet, ...fields } = want;
    const picked = Object.fromEntries(Object.keys(fields).map((k) => [k, ev[k]]));
    assert.deepEqual(picked, fields, `event ${i} (${String(ev.type)})`);
    if (at) assert.deepEqual({ file: ev.fileName, line: ev.line }, at, `event ${i}: drop site`);
    if (packet) {
      const frame = packet === 'in' ? c.frame : r.frame;
      const cap = frame.subarray(0, 128);
      assert.equal((ev.packet as Buffer).toString('hex'), cap.toString('hex'), `event ${i}: captured packet = ${packet === 'in' ? 'input' : 'output'} frame`);
      assert.equal(ev.lenOrig, frame.length, `event ${i}: len_orig`);
    }
  });
}
