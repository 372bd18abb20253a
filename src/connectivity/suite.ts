// `membrane connectivity test`: the scenarios of SPEC 1.3 run against a lab,
// each with pass/fail and what it measured. Every traffic path of the seed:
// pod to pod on one node and across nodes (ICMP, TCP, UDP), pod to its host,
// host to pod (own node and, from a node, a pod on another node), no
// fragmentation at the full pod MTU, VXLAN on the wire with VNI = the
// source pod's identity, and no drops other than the expected ones. Then
// the network policy scenarios (policy-scenarios.ts), after the drop check:
// they drop packets on purpose, and account for their own drops.
import type { StatusReply } from '../agent/routes.ts';
import { apiCall } from '../api/client.ts';
import { labStatus, type LabStatus, type LabStatusNode, type LabStatusPod } from '../lab/status.ts';
import { MembraneError } from '../shared/errors.ts';
import { removeTestPolicies, runPolicyScenarios } from './policy-scenarios.ts';
import { captureVxlan, dropCounters, fragCounters, iperf, ping, tcpExact, within } from './probes.ts';
import { killAllTools, nsStart } from './run.ts';

/** Drop reasons that are not failures: pods send IPv6 (router solicitations, MLD), which the IPv4 datapath drops. */
export const EXPECTED_DROPS = ['Unsupported L3 protocol'];

export interface ScenarioResult {
  /** e.g. "pod-to-pod/cross-node". */
  scenario: string;
  protocol: string;
  from: string;
  to: string;
  pass: boolean;
  /** pass or fail; skip when the lab lacks what the scenario needs (e.g. no node with two pods): neither passed nor failed. */
  status: 'pass' | 'fail' | 'skip';
  /** What was measured, one line for people ("3/3 replies, rtt 0.21 ms"), or why it was skipped. */
  measured: string;
  /** The numbers behind it, for scripts. */
  values: Record<string, number | string | boolean>;
  ms: number;
}

export interface SuiteResult {
  lab: string;
  passed: number;
  failed: number;
  skipped: number;
  durationMs: number;
  scenarios: ScenarioResult[];
}

export interface SuiteOptions {
  /** Extra drop reasons (text as `bpf metrics list` prints it) that are not failures. */
  allowDrops?: string[];
  /** Called with each result as it completes. */
  onResult?: (r: ScenarioResult) => void;
}

interface Ctx {
  s: LabStatus;
  results: ScenarioResult[];
  onResult?: (r: ScenarioResult) => void;
}

async function scenario(c: Ctx, scenarioName: string, protocol: string, from: string, to: string, fn: () => Promise<{ pass: boolean; measured: string; values?: ScenarioResult['values'] }>): Promise<ScenarioResult> {
  const t0 = performance.now();
  let r: { pass: boolean; measured: string; values?: ScenarioResult['values'] };
  try {
    r = await fn();
  } catch (e) {
    r = { pass: false, measured: `error: ${(e as Error).message.split('\n')[0]}` };
  }
  return record(c, { scenario: scenarioName, protocol, from, to, pass: r.pass, status: r.pass ? 'pass' : 'fail', measured: r.measured, values: r.values ?? {}, ms: Math.round(performance.now() - t0) });
}

function record(c: Ctx, res: ScenarioResult): ScenarioResult {
  c.results.push(res);
  c.onResult?.(res);
  return res;
}

/** A scenario the lab cannot run: reported as such, never counted as passed. */
function skipped(c: Ctx, scenarioName: string, protocol: string, why: string): ScenarioResult {
  return record(c, { scenario: scenarioName, protocol, from: '-', to: '-', pass: false, status: 'skip', measured: why, values: {}, ms: 0 });
}

const fmtPing = (p: Awaited<ReturnType<typeof ping>>): string =>
  `${p.received}/${p.sent} replies${p.rttAvgMs !== undefined ? `, rtt ${p.rttAvgMs.toFixed(3)} ms` : ''}${p.error ? ` (${p.error})` : ''}`;

function pingScenario(c: Ctx, name: string, fromNs: string, from: string, to: string, ip: string) {
  return scenario(c, name, 'ICMP', from, `${to} ${ip}`, async () => {
    const p = await ping(fromNs, ip);
    return { pass: p.ok, measured: fmtPing(p), values: { sent: p.sent, received: p.received, ...(p.rttAvgMs !== undefined ? { rttAvgMs: p.rttAvgMs } : {}) } };
  });
}

const mbit = (bps: number): string => bps >= 1e9 ? `${(bps / 1e9).toFixed(2)} Gbit/s` : `${(bps / 1e6).toFixed(0)} Mbit/s`;

function tcpScenario(c: Ctx, name: string, a: LabStatusPod, b: LabStatusPod) {
  return scenario(c, name, 'TCP', a.name, `${b.name} ${b.ip}`, async () => {
    const r = await iperf(a.netns, b.netns, b.ip!, 'tcp');
    return {
      pass: r.ok,
      measured: r.error ?? `${(r.bytesSent / 2 ** 20).toFixed(0)} MiB sent, ${mbit(r.bitsPerSecond)}, ${r.retransmits ?? '?'} retransmits, MSS ${r.mss ?? '?'}`,
      values: { bytesSent: r.bytesSent, bytesReceived: r.bytesReceived, bitsPerSecond: Math.round(r.bitsPerSecond), retransmits: r.retransmits ?? -1, mss: r.mss ?? -1 },
    };
  });
}

function udpScenario(c: Ctx, name: string, a: LabStatusPod, b: LabStatusPod) {
  return scenario(c, name, 'UDP', a.name, `${b.name} ${b.ip}`, async () => {
    const r = await iperf(a.netns, b.netns, b.ip!, 'udp');
    return {
      pass: r.ok,
      measured: r.error ?? `${(r.bytesSent / 2 ** 20).toFixed(1)} MiB in 1400-byte datagrams at ${mbit(r.bitsPerSecond)}, ${r.lostPercent?.toFixed(2)}% lost`,
      values: { bytesSent: r.bytesSent, bytesReceived: r.bytesReceived, bitsPerSecond: Math.round(r.bitsPerSecond), lostPercent: r.lostPercent ?? 100 },
    };
  });
}

/** Node pairs to test across: every ordered pair up to 4 nodes, a ring both ways beyond. */
function nodePairs(nodes: LabStatusNode[]): [LabStatusNode, LabStatusNode][] {
  if (nodes.length <= 4) return nodes.flatMap((a) => nodes.filter((b) => b !== a).map((b) => [a, b] as [LabStatusNode, LabStatusNode]));
  return nodes.flatMap((a, i) => {
    const b = nodes[(i + 1) % nodes.length]!;
    return [[a, b], [b, a]] as [LabStatusNode, LabStatusNode][];
  });
}

/** Runs every scenario against lab `name`. Throws only when the lab cannot be read or is not ready. */
export async function runConnectivityTest(name: string, o: SuiteOptions = {}): Promise<SuiteResult> {
  // Interrupted: the tools run in process groups of their own, so a Ctrl-C would not reach them;
  // and the policies the policy scenarios imported must not outlive the run (bounded: a dead agent cannot hold the exit).
  let interrupted: Promise<unknown> | undefined;
  const onSignal = () => {
    killAllTools();
    interrupted = within(removeTestPolicies(), 15_000).finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const r = await runSuite(name, o);
    // The scenarios wind down once their tools are killed; the handler ends the process (130), not a result.
    if (interrupted) await interrupted;
    return r;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

async function runSuite(name: string, o: SuiteOptions): Promise<SuiteResult> {
  const t0 = performance.now();
  const s = await labStatus(name);
  if (s.state !== 'ready') throw new MembraneError(`connectivity test ${name}`, { code: 'E_LAB', cause: `lab is ${s.state}, not ready` });
  const down = s.nodes.filter((n) => !n.running);
  if (down.length) throw new MembraneError(`connectivity test ${name}`, { code: 'E_LAB', cause: `agent not running on ${down.map((n) => n.name).join(', ')}` });
  const c: Ctx = { s, results: [], onResult: o.onResult };
  const podsOf = (n: LabStatusNode) => s.pods.filter((p) => p.node === n.name && p.ip);
  const first = new Map(s.nodes.map((n) => [n.name, podsOf(n)[0]]));
  const nodeDir = (n: LabStatusNode) => `${s.pinRoot}/${n.name}`;
  const allowed = new Set([...EXPECTED_DROPS, ...(o.allowDrops ?? [])]);
  const dropsBefore = new Map(s.nodes.map((n) => [n.name, dropCounters(nodeDir(n))]));

  // Same node: the first two pods of each node (cil_from_container redirects straight to the peer).
  const withTwo = s.nodes.filter((n) => podsOf(n).length >= 2);
  if (!withTwo.length) skipped(c, 'pod-to-pod/same-node', 'ICMP+TCP', 'no node has two pods (lab up --pods-per-node 2)');
  for (const n of withTwo) {
    const [a, b] = podsOf(n) as [LabStatusPod, LabStatusPod];
    await pingScenario(c, 'pod-to-pod/same-node', a.netns, a.name, b.name, b.ip!);
    await tcpScenario(c, 'pod-to-pod/same-node', a, b);
  }
  // Across nodes: ICMP, TCP and UDP through the tunnel.
  const pairs = nodePairs(s.nodes).filter(([a, b]) => first.get(a.name) && first.get(b.name));
  if (!pairs.length) {
    const why = 'no two nodes with a pod each (lab up --nodes 2)';
    for (const [name, proto] of [['pod-to-pod/cross-node', 'ICMP+TCP+UDP'], ['node-to-remote-pod', 'ICMP'], ['pod-to-remote-node', 'ICMP'], ['mtu/no-fragmentation', 'ICMP+TCP'], s.routingMode === 'native' ? ['native/on-the-wire', 'ICMP'] : ['vxlan/on-the-wire', 'UDP']] as const) {
      skipped(c, name, proto, why);
    }
  }
  for (const [na, nb] of pairs) {
    const a = first.get(na.name)!;
    const b = first.get(nb.name)!;
    await pingScenario(c, 'pod-to-pod/cross-node', a.netns, a.name, b.name, b.ip!);
    await tcpScenario(c, 'pod-to-pod/cross-node', a, b);
    await udpScenario(c, 'pod-to-pod/cross-node', a, b);
  }
  // Pod to its own host (node IP, router IP) and host to its own pods.
  for (const n of s.nodes) {
    const a = first.get(n.name);
    if (!a) {
      skipped(c, 'pod-to-host', 'ICMP', `${n.name} has no pod`);
      continue;
    }
    await pingScenario(c, 'pod-to-host', a.netns, a.name, `${n.name} node IP`, n.nodeIP);
    await pingScenario(c, 'pod-to-host', a.netns, a.name, `${n.name} router IP`, n.routerIP);
    await pingScenario(c, 'host-to-pod', n.netns, n.name, a.name, a.ip!);
  }
  // Node to a pod on another node, and pod to another node (both through the tunnel).
  for (const [na, nb] of pairs) {
    const b = first.get(nb.name)!;
    const a = first.get(na.name)!;
    await pingScenario(c, 'node-to-remote-pod', na.netns, na.name, b.name, b.ip!);
    await pingScenario(c, 'pod-to-remote-node', a.netns, a.name, `${nb.name} node IP`, nb.nodeIP);
  }
  // Pods to the world (the lab's external host, which has no route to any pod): masqueraded to their node's IP.
  if (!s.externalHost) skipped(c, 'pod-to-world', 'ICMP+TCP', 'the lab has no external host (made before it existed: lab down, lab up)');
  for (const n of s.externalHost ? s.nodes : []) {
    const a = first.get(n.name);
    if (a) await worldScenario(c, a, n, s.externalHost!);
  }
  if (pairs.length) {
    const [na, nb] = pairs[0]!;
    await mtuScenario(c, first.get(na.name)!, first.get(nb.name)!, na);
    if (s.routingMode === 'native') await nativeScenario(c, first.get(na.name)!, first.get(nb.name)!, na, nb);
    else await vxlanScenario(c, first.get(na.name)!, first.get(nb.name)!, na, nb);
  }
  await scenario(c, 'drops', 'all', 'every node', 'cilium_metrics', async () => {
    const unexpected: string[] = [];
    const expected: string[] = [];
    for (const n of s.nodes) {
      const before = dropsBefore.get(n.name)!;
      for (const [k, v] of dropCounters(nodeDir(n))) {
        const d = v.packets - (before.get(k)?.packets ?? 0);
        if (d <= 0) continue;
        const line = `${n.name}: ${d} x "${v.reason}" (${v.direction}, ${v.site})`;
        (allowed.has(v.reason) ? expected : unexpected).push(line);
      }
    }
    return {
      pass: unexpected.length === 0,
      measured: unexpected.length ? `unexpected drops: ${unexpected.join('; ')}` : `no unexpected drops${expected.length ? ` (expected: ${expected.join('; ')})` : ''}`,
      values: { unexpected: unexpected.length, expected: expected.length },
    };
  });
  await runPolicyScenarios(s, { record: (r) => { record(c, r); }, allowedDrops: allowed });
  const count = (st: ScenarioResult['status']) => c.results.filter((r) => r.status === st).length;
  return { lab: name, passed: count('pass'), failed: count('fail'), skipped: count('skip'), durationMs: Math.round(performance.now() - t0), scenarios: c.results };
}

/**
 * A pod reaches the external host (ping, an exact TCP transfer) and every
 * packet the external host sees comes from a node IP (tcpdump on its eth0):
 * the pod's own address never leaves the cluster, and the replies, sent to
 * the node IP, find their way back into the pod.
 */
async function worldScenario(c: Ctx, a: LabStatusPod, n: LabStatusNode, ext: NonNullable<LabStatus['externalHost']>): Promise<void> {
  await scenario(c, 'pod-to-world', 'ICMP+TCP', a.name, `${ext.name} ${ext.ip}`, async () => {
    const cap = await nsStart(ext.netns, ['tcpdump', '-i', 'eth0', '-n', '-l', 'ip', 'and', 'dst', 'host', ext.ip], /listening on/, { timeoutMs: 30_000 });
    let p: Awaited<ReturnType<typeof ping>>;
    let tcp: Awaited<ReturnType<typeof tcpExact>>;
    const bytes = 256 << 10;
    let out = '';
    try {
      p = await ping(a.netns, ext.ip, { count: 2 });
      tcp = await tcpExact(a.netns, ext.netns, ext.ip, bytes);
      await new Promise((r) => setTimeout(r, 100));
    } finally {
      out = (await cap.stop()).stdout;
    }
    const nodeIPs = new Set(c.s.nodes.map((x) => x.nodeIP));
    const sources = new Map<string, number>();
    for (const m of out.matchAll(/^\S+ IP (\d+\.\d+\.\d+\.\d+)(?:\.\d+)? > /gm)) sources.set(m[1]!, (sources.get(m[1]!) ?? 0) + 1);
    const foreign = [...sources.keys()].filter((ip) => !nodeIPs.has(ip));
    const fromNode = sources.get(n.nodeIP) ?? 0;
    const pass = p.ok && tcp.received === bytes && foreign.length === 0 && fromNode > 0;
    return {
      pass,
      measured: `${fmtPing(p)}; TCP ${bytes} bytes: ${tcp.received === bytes ? 'all arrived' : `${tcp.received} arrived${tcp.error ? ` (${tcp.error})` : ''}`}; `
        + `${ext.name} saw ${[...sources].map(([ip, k]) => `${k} from ${ip}`).join(', ') || 'nothing'}${foreign.length ? ` (NOT node IPs: ${foreign.join(', ')})` : ` (${n.name}'s node IP only)`}`,
      values: { replies: p.received, tcpBytes: tcp.received, fromNodeIP: fromNode, foreignSources: foreign.length, ...(foreign.length ? { foreign: foreign.join(',') } : {}) },
    };
  });
}

function agentStatus(n: LabStatusNode): Promise<StatusReply> {
  return apiCall<StatusReply>(n.apiSocket, 'GET', '/v1/status');
}

/**
 * No fragmentation at the full pod MTU across nodes: a DF ping of exactly
 * MTU-28 bytes payload gets through, one byte more is refused in the pod
 * (its route MTU), and an exact-size TCP transfer arrives whole, while no
 * namespace on the path counts a fragment created or reassembled.
 */
async function mtuScenario(c: Ctx, a: LabStatusPod, b: LabStatusPod, na: LabStatusNode): Promise<void> {
  await scenario(c, 'mtu/no-fragmentation', 'ICMP+TCP', a.name, `${b.name} ${b.ip}`, async () => {
    // The pod MTU as the agent configured it (node config routeMTU), not recomputed here.
    const podMTU = (await agentStatus(na)).routeMTU;
    const size = podMTU - 28;
    const nss = [...c.s.nodes.map((n) => n.netns), a.netns, b.netns, c.s.underlay.netns];
    const before = new Map(nss.map((ns) => [ns, fragCounters(ns)]));
    const full = await ping(a.netns, b.ip!, { df: true, size, count: 2 });
    const over = await ping(a.netns, b.ip!, { df: true, size: size + 1, count: 1 });
    const bytes = 4 << 20;
    const tcp = await tcpExact(a.netns, b.netns, b.ip!, bytes);
    const moved: string[] = [];
    for (const ns of nss) {
      const now = fragCounters(ns);
      for (const [k, v] of Object.entries(now)) if (k !== 'ReasmTimeout' && v !== before.get(ns)![k]) moved.push(`${ns} Ip${k} +${v - before.get(ns)![k]!}`);
    }
    // Refused by the pod's own route MTU, before it leaves: proof the MTU is exactly podMTU.
    const overRefused = over.received === 0 && /message too long/.test(over.error ?? '');
    const pass = full.ok && overRefused && tcp.received === bytes && moved.length === 0;
    const parts = [
      `DF ping ${size}+28=${podMTU} bytes: ${full.received}/${full.sent}`,
      `${size + 1}+28: ${overRefused ? `refused${over.error ? ` (${over.error})` : ''}` : 'NOT refused'}`,
      `TCP ${bytes} bytes: ${tcp.received === bytes ? 'all arrived' : `${tcp.received} arrived${tcp.error ? ` (${tcp.error})` : ''}`}`,
      moved.length ? `fragment counters moved: ${moved.join(', ')}` : 'no fragment created or reassembled anywhere',
    ];
    return { pass, measured: parts.join('; '), values: { podMTU, dfPayload: size, dfReplies: full.received, overRefused, tcpBytes: tcp.received, fragCountersMoved: moved.length } };
  });
}

/**
 * Native routing, tcpdump on the underlay bridge: the cross-node flow is the
 * pods' own packets between the two nodes' MACs, never VXLAN.
 */
async function nativeScenario(c: Ctx, a: LabStatusPod, b: LabStatusPod, na: LabStatusNode, nb: LabStatusNode): Promise<void> {
  const port = (await agentStatus(nb)).tunnelPort;
  await scenario(c, 'native/on-the-wire', 'ICMP', a.name, `${b.name} ${b.ip}`, async () => {
    const cap = await nsStart(c.s.underlay.netns, ['tcpdump', '-i', c.s.underlay.bridge, '-n', '-l', '-e', `(icmp and host ${a.ip} and host ${b.ip}) or udp port ${port}`], /listening on/, { timeoutMs: 30_000 });
    let out = '';
    let p: Awaited<ReturnType<typeof ping>>;
    try {
      p = await ping(a.netns, b.ip!, { count: 2 });
      await new Promise((r) => setTimeout(r, 100));
    } finally {
      out = (await cap.stop()).stdout;
    }
    const esc = (x: string) => x.replace(/\./g, '\\.');
    const req = new RegExp(`${esc(a.ip!)} > ${esc(b.ip!)}: ICMP echo request`).test(out);
    const rep = new RegExp(`${esc(b.ip!)} > ${esc(a.ip!)}: ICMP echo reply`).test(out);
    const vxlan = out.split('\n').filter((l) => new RegExp(`\\.${port}: `).test(l)).length;
    return {
      pass: p.ok && req && rep && vxlan === 0,
      measured: `${fmtPing(p)}; on ${c.s.underlay.bridge}: request ${req ? 'seen' : 'NOT seen'}, reply ${rep ? 'seen' : 'NOT seen'} as plain IPv4 between ${na.name} and ${nb.name}; ${vxlan} VXLAN packets`,
      values: { replies: p.received, requestSeen: req, replySeen: rep, vxlanPackets: vxlan },
    };
  });
}

/** tcpdump on the underlay bridge: the cross-node flow is VXLAN to port 8472, VNI = the sender's identity. */
async function vxlanScenario(c: Ctx, a: LabStatusPod, b: LabStatusPod, na: LabStatusNode, nb: LabStatusNode): Promise<void> {
  const port = (await agentStatus(nb)).tunnelPort;
  await scenario(c, 'vxlan/on-the-wire', `UDP ${port}`, a.name, `${b.name} ${b.ip}`, async () => {
    const cap = await captureVxlan(c.s.underlay.netns, c.s.underlay.bridge, port, () => ping(a.netns, b.ip!, { count: 2 }), 4);
    if (cap.error) return { pass: false, measured: cap.error };
    const req = cap.packets.find((p) => p.inner.includes(`${a.ip} > ${b.ip}`) && /echo request/.test(p.inner));
    const rep = cap.packets.find((p) => p.inner.includes(`${b.ip} > ${a.ip}`) && /echo reply/.test(p.inner));
    const reqOk = !!req && req.vni === a.identity && req.outerSrc === na.nodeIP && req.outerDst === nb.nodeIP && req.dstPort === port;
    const repOk = !!rep && rep.vni === b.identity && rep.outerSrc === nb.nodeIP && rep.outerDst === na.nodeIP && rep.dstPort === port;
    const show = (p: typeof req, want: number | null) => p ? `${p.outerSrc} > ${p.outerDst}:${p.dstPort} vni ${p.vni} (identity ${want})` : 'not seen';
    return {
      pass: reqOk && repOk,
      measured: `${cap.packets.length} VXLAN packets on ${c.s.underlay.bridge}; request ${show(req, a.identity)}; reply ${show(rep, b.identity)}`,
      values: { packets: cap.packets.length, requestVni: req?.vni ?? -1, replyVni: rep?.vni ?? -1, srcIdentity: a.identity ?? -1, dstIdentity: b.identity ?? -1 },
    };
  });
}
