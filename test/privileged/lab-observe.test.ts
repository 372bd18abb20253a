// Observability in a 2-node lab, as a user runs it from the host: `membrane
// observe -o json` shows a cross-node ping with its observation points in
// order across the nodes and Hubble's field names; a policy-denied ping is a
// DROPPED flow with "Policy denied" at the receiving node; `membrane trace`
// lists the hops with their deciding map entries, and names the hop and
// reason of a drop; `monitor --pcap` writes a file tshark reads; the
// agents' Prometheus counters (at the metricsURL `lab status` lists) count
// exactly the packets the test sent; the trace level goes back to 0 when
// the last follower leaves; under a flood traced at every packet the lost
// events the agents report are exactly the datapath's count.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { Flow } from '../../src/agent/observe/flows.ts';
import { apiCall } from '../../src/api/client.ts';
import type { TraceResult } from '../../src/cli/commands/trace.ts';
import { readEventsLost } from '../../src/datapath/events-reader.ts';
import type { LabStatus } from '../../src/lab/status.ts';
import { inNetns, lab, labOk, labStatus, labUp } from '../helpers/lab.ts';
import { MEMBRANE } from '../helpers/membrane.ts';
import { rootOnly } from '../helpers/skip.ts';

const hasTshark = (() => { try { execFileSync('tshark', ['--version'], { stdio: 'ignore' }); return true; } catch { return false; } })();

/** A membrane command left running (a follower): its output so far, a way to stop it (SIGINT, as Ctrl-C), and its end. */
function background(args: string[]): { done: Promise<{ code: number; stdout: string; stderr: string }>; out: () => string; stop: () => void } {
  const c = spawn(MEMBRANE, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  c.stdout.on('data', (d) => { stdout += d; });
  c.stderr.on('data', (d) => { stderr += d; });
  const timer = setTimeout(() => c.kill('SIGKILL'), 90_000);
  return {
    done: new Promise((resolve) => c.on('close', (code) => { clearTimeout(timer); resolve({ code: code ?? -1, stdout, stderr }); })),
    out: () => stdout,
    stop: () => c.kill('SIGINT'),
  };
}

interface ObserveStatus { traceLevel: number; subscribers: { events: number; flows: number } }

/** Waits until every node's agent has `n` streams of `kind` open (the follower is attached and the level set). */
async function attached(s: LabStatus, kind: 'events' | 'flows', n = 1): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const st = await Promise.all(s.nodes.map((x) => apiCall<ObserveStatus>(x.apiSocket, 'GET', '/v1/observe')));
    if (st.every((x) => x.subscribers[kind] >= n)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`the follower did not attach to every node (${kind})`);
}

/** A node's Prometheus counters, read at the metricsURL `lab status` lists (from inside the lab: it is the node's address). */
function scrape(s: LabStatus, node: string): Map<string, number> {
  const n = s.nodes.find((x) => x.name === node)!;
  const text = inNetns(n.netns, ['curl', '-sf', n.metricsURL]);
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (m) out.set(m[1]!, Number(m[2]));
  }
  return out;
}

const delta = (a: Map<string, number>, b: Map<string, number>, k: string) => (b.get(k) ?? 0) - (a.get(k) ?? 0);

test('2-node lab: observe, monitor --pcap, trace, metrics', { skip: rootOnly() }, async (t) => {
  const { name } = await labUp(t, ['--nodes', '2', '--pods-per-node', '2']);
  const s = await labStatus(name);
  const pod = (n: string) => s.pods.find((p) => p.name === n)!;
  const [a, b] = [pod('pod-1-1'), pod('pod-2-1')];
  const tmp = mkdtempSync(join(tmpdir(), 'membrane-observe-'));
  t.after(() => rmSync(tmp, { recursive: true, force: true }));

  await t.test('lab status lists a metricsURL per node, on the node IP, that serves Prometheus text', () => {
    for (const n of s.nodes) {
      assert.equal(n.metricsURL, `http://${n.nodeIP}:9962/metrics`);
      const m = scrape(s, n.name);
      assert.equal(m.get('cilium_endpoint_state{endpoint_state="ready"}'), 2, `${n.name}: 2 endpoints`);
      assert.equal(m.get('membrane_trace_level'), 0, 'nobody listens: trace level 0');
    }
  });

  await t.test('observe -o json: a cross-node ping, from-endpoint and to-overlay on node-1, then from-overlay and to-endpoint on node-2', async () => {
    const follower = background(['observe', '--lab', name, '--follow', '--every-packet', '--from-pod', a.name, '--to-pod', b.name, '--protocol', 'icmp', '-o', 'json', '--duration', '6']);
    await attached(s, 'flows');
    const levels = await Promise.all(s.nodes.map((x) => apiCall<ObserveStatus>(x.apiSocket, 'GET', '/v1/observe')));
    assert.deepEqual(levels.map((x) => x.traceLevel), [2, 2], 'the follower holds trace level 2 on every node');
    inNetns(a.netns, ['ping', '-c', '1', '-W', '2', b.ip!]);
    const r = await follower.done;
    assert.equal(r.code, 0, r.stderr);
    const flows = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { flow?: Flow; node_name: string; time: string }).filter((x) => x.flow).map((x) => x.flow!);
    const req = flows.filter((f) => f.IP?.source === a.ip && f.IP?.destination === b.ip && f.l4?.ICMPv4?.type === 8);
    const onA = req.find((f) => f.node_name === 'node-1');
    const onB = req.find((f) => f.node_name === 'node-2');
    assert.ok(onA && onB, `the echo request has a flow on each node: ${JSON.stringify(flows.map((f) => [f.node_name, f.trace_observation_points]))}`);
    const pointsA = onA.trace_observation_points.filter((p) => p === 'FROM_ENDPOINT' || p === 'TO_OVERLAY');
    const pointsB = onB.trace_observation_points.filter((p) => p === 'FROM_OVERLAY' || p === 'TO_ENDPOINT');
    assert.deepEqual(pointsA, ['FROM_ENDPOINT', 'TO_OVERLAY']);
    assert.deepEqual(pointsB, ['FROM_OVERLAY', 'TO_ENDPOINT']);
    // Printed in the order the packets began, across both nodes.
    const times = flows.map((f) => BigInt(f.time_ns));
    assert.deepEqual(times, [...times].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0)), 'flows in time order');
    assert.ok(flows.indexOf(onA) < flows.indexOf(onB), 'node-1\'s flow of the request before node-2\'s');
    // One clock for every node of the machine: node-1's hops come before node-2's.
    const lastA = BigInt(onA.hops.find((h) => h.point === 'TO_OVERLAY')!.time_ns);
    const firstB = BigInt(onB.hops.find((h) => h.point === 'FROM_OVERLAY')!.time_ns);
    assert.ok(lastA < firstB, `to-overlay on node-1 (${lastA}) before from-overlay on node-2 (${firstB})`);
    // Hubble's field names and values.
    for (const f of [onA, onB]) {
      assert.equal(f.verdict, 'FORWARDED');
      assert.equal(f.is_reply, false);
      assert.equal(typeof f.time, 'string');
      assert.ok(!Number.isNaN(Date.parse(f.time)));
      assert.deepEqual(f.l4, { ICMPv4: { type: 8 } });
      assert.equal(f.Type, 'L3_L4');
    }
    assert.equal(onA.traffic_direction, 'EGRESS');
    assert.equal(onB.traffic_direction, 'INGRESS');
    assert.equal(onA.trace_observation_point, 'TO_OVERLAY');
    assert.equal(onB.trace_observation_point, 'TO_ENDPOINT');
    assert.equal(onA.source?.pod_name, a.name);
    assert.equal(onA.source?.identity, a.identity);
    assert.equal(onA.destination?.identity, b.identity, 'node-1 knows the remote pod\'s identity');
    assert.equal(onB.destination?.pod_name, b.name);
    assert.equal(onB.source?.identity, a.identity, 'node-2 learns the source identity from the VNI');
    assert.ok(onB.source?.labels?.includes(`k8s:app=${a.name}`), `node-2 names the source's labels: ${JSON.stringify(onB.source)}`);
    assert.deepEqual(onA.encap, { tunnel_endpoint: s.nodes[1]!.nodeIP, vni: a.identity }, 'the tunnel key: node-2, VNI = source identity');
  });

  await t.test('the trace level goes back to 0 when the follower leaves', async () => {
    for (let i = 0; i < 100; i++) {
      const st = await Promise.all(s.nodes.map((x) => apiCall<ObserveStatus>(x.apiSocket, 'GET', '/v1/observe')));
      if (st.every((x) => x.traceLevel === 0 && x.subscribers.flows === 0)) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.fail('trace level still above 0 after the follower left');
  });

  await t.test('observe --last without --follow: the flows stay in each node\'s ring', async () => {
    const r = await labOk(['observe', '--lab', name, '--from-pod', a.name, '--to-pod', b.name, '--last', '50', '-o', 'json']);
    const flows = r.stdout.trim().split('\n').map((l) => (JSON.parse(l) as { flow: Flow }).flow);
    assert.ok(flows.some((f) => f.node_name === 'node-2' && f.trace_observation_points.includes('TO_ENDPOINT') && f.IP?.destination === b.ip), 'node-2 still holds the request\'s flow');
    const text = await labOk(['observe', '--lab', name, '--to-pod', b.name, '--last', '5']);
    assert.match(text.stdout, new RegExp(`\\[node-2\\]: ${a.ip!.replace(/\./g, '\\.')} \\(ID:${a.identity}\\) -> default/${b.name} \\(ID:${b.identity}\\) from-overlay,to-endpoint FORWARDED \\(ICMPv4 EchoRequest\\)`));
  });

  await t.test('trace: the cross-node hops in order with their deciding entries', async () => {
    const r = await lab(['trace', '--lab', name, a.name, b.name, '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    const res = JSON.parse(r.stdout) as TraceResult;
    assert.equal(res.verdict, 'DELIVERED');
    assert.equal(res.replySeen, true);
    const seq = res.hops.filter((h) => h.kind === 'trace').map((h) => `${h.node}/${h.point}`);
    assert.deepEqual(seq, ['node-1/from-endpoint', 'node-1/to-overlay', 'node-2/from-overlay', 'node-2/to-endpoint']);
    const hop = (p: string) => res.hops.find((h) => h.point === p)!;
    assert.equal(hop('from-endpoint').program, 'cil_from_container');
    assert.ok(hop('from-endpoint').decided.some((d) => d.startsWith(`cilium_lxc ${a.ip}: endpoint ${a.endpointID}, identity ${a.identity}`)), JSON.stringify(hop('from-endpoint')));
    assert.ok(hop('to-overlay').decided.some((d) => d.startsWith(`ipcache ${b.ip}/32: identity ${b.identity}, tunnel endpoint ${s.nodes[1]!.nodeIP}`)), JSON.stringify(hop('to-overlay')));
    assert.ok(hop('encap').decided[0]!.includes(`remote ${s.nodes[1]!.nodeIP}, VNI ${a.identity}`));
    const esc = (ip: string) => ip.replace(/\./g, '\\.');
    assert.ok(hop('to-overlay').decided.some((d) => new RegExp(`^conntrack: new; entry ICMP OUT ${esc(a.ip!)} -> ${esc(b.ip!)} id \\d+ \\(cilium_ct_any4_global\\)`).test(d)), JSON.stringify(hop('to-overlay')));
    assert.ok(hop('to-endpoint').decided.some((d) => new RegExp(`^conntrack: new; entry ICMP IN ${esc(a.ip!)} -> ${esc(b.ip!)} id \\d+`).test(d)), JSON.stringify(hop('to-endpoint')));
    assert.equal(hop('to-overlay').device, 'cilium_vxlan');
    assert.equal(hop('from-overlay').device, 'cilium_vxlan');
    assert.ok(hop('to-endpoint').decided.some((d) => d.startsWith(`cilium_lxc ${b.ip}: endpoint ${b.endpointID}, identity ${b.identity}`)));
    const text = (await lab(['trace', '--lab', name, a.name, b.name])).stdout;
    assert.match(text, /DELIVERED to the pod on node-2/);
  });

  await t.test('trace pod to world (the lab\'s external host): out of the node\'s device, masqueraded', async () => {
    assert.ok(s.externalHost, 'the lab has an external host');
    const r = await lab(['trace', '--lab', name, a.name, s.externalHost!.name, '-o', 'json']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const res = JSON.parse(r.stdout) as TraceResult;
    assert.deepEqual([res.verdict, res.replySeen, res.destination.ip], ['DELIVERED', true, s.externalHost!.ip]);
    const last = res.hops.filter((h) => h.kind === 'trace').at(-1)!;
    assert.deepEqual([last.node, last.point], ['node-1', 'to-network']);
    assert.ok(last.decided.includes(`source ${s.nodes[0]!.nodeIP}: masqueraded (was ${a.ip})`), JSON.stringify(last));
  });

  await t.test('trace to an address of a remote pod CIDR with no pod: the hop and reason of the drop', async () => {
    const nowhere = b.ip!.replace(/\.\d+$/, '.200');
    const r = await lab(['trace', '--lab', name, a.name, nowhere, '-o', 'json']);
    assert.equal(r.code, 1, 'a dropped probe exits 1');
    const res = JSON.parse(r.stdout) as TraceResult;
    assert.equal(res.verdict, 'DROPPED');
    assert.equal(res.drop?.node, 'node-2', 'node-1 tunnels it to the CIDR\'s node; node-2 drops it');
    assert.ok(res.drop!.reason > 0 && res.drop!.line > 0 && /^\w+\.[ch]$/.test(res.drop!.file), JSON.stringify(res.drop));
    assert.ok(res.hops.some((h) => h.node === 'node-1' && h.point === 'to-overlay'));
  });

  await t.test('a policy-denied ping: DROPPED "Policy denied" at node-2 in observe and trace; the drop counter counts each packet', async (st) => {
    const file = join(tmp, 'deny.yaml');
    writeFileSync(file, [
      'apiVersion: cilium.io/v2', 'kind: CiliumNetworkPolicy', 'metadata:', '  name: observe-test-only-pod-1-2', 'spec:',
      `  endpointSelector: {matchLabels: {app: ${b.name}}}`, '  ingress:', `  - fromEndpoints: [{matchLabels: {app: pod-1-2}}]`, ''].join('\n'));
    await labOk(['policy', 'import', file, '--lab', name, '--wait']);
    st.after(() => lab(['policy', 'delete', 'observe-test-only-pod-1-2', '--wait', '--lab', name]));
    const before = scrape(s, 'node-2');
    const N = 20;
    const p = await lab(['lab', 'exec', '--name', name, a.name, '--', 'ping', '-c', String(N), '-i', '0.02', '-W', '1', b.ip!]);
    assert.notEqual(p.code, 0, 'no reply');
    const after = scrape(s, 'node-2');
    assert.equal(delta(before, after, 'cilium_drop_count_total{reason="Policy denied",direction="INGRESS"}'), N, 'each denied packet counted once');
    assert.equal(delta(before, after, 'cilium_drop_bytes_total{reason="Policy denied",direction="INGRESS"}'), N * 98, 'and its bytes (98-byte frames)');

    let drops: Flow[] = [];
    for (let i = 0; i < 40 && drops.length < N; i++) {
      const r = await labOk(['observe', '--lab', name, '--verdict', 'DROPPED', '--from-pod', a.name, '--to-pod', b.name, '--last', '100', '-o', 'json']);
      drops = r.stdout.trim().split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { flow: Flow }).flow);
      if (drops.length < N) await new Promise((res) => setTimeout(res, 50));
    }
    assert.equal(drops.length, N, 'one DROPPED flow per denied packet');
    for (const f of drops) {
      assert.equal(f.verdict, 'DROPPED');
      assert.equal(f.drop_reason_desc, 'POLICY_DENIED');
      assert.equal(f.node_name, 'node-2');
      assert.equal(f.drop?.reason_text, 'Policy denied');
      assert.equal(f.destination?.pod_name, b.name);
      assert.equal(f.source?.identity, a.identity);
    }
    const text = await labOk(['observe', '--lab', name, '--verdict', 'dropped', '--to-pod', b.name, '--last', '1']);
    assert.match(text.stdout, /DROPPED \(Policy denied\) at \w+\.[ch]:\d+/);

    const tr = await lab(['trace', '--lab', name, a.name, b.name, '-o', 'json']);
    assert.equal(tr.code, 1);
    const res = JSON.parse(tr.stdout) as TraceResult;
    assert.equal(res.verdict, 'DROPPED');
    assert.deepEqual([res.drop?.node, res.drop?.reasonText, res.drop?.reason], ['node-2', 'Policy denied', 133]);
    const pol = res.hops.find((h) => h.point === 'policy-ingress' && h.node === 'node-2');
    assert.ok(pol?.decided.some((d) => /DENY, remote identity \d+, match none/.test(d)), JSON.stringify(pol));
    assert.ok(pol?.decided.some((d) => /no entry matches \(default deny\)/.test(d)), JSON.stringify(pol));
    const seq = res.hops.filter((h) => h.kind === 'trace').map((h) => `${h.node}/${h.point}`);
    assert.deepEqual(seq, ['node-1/from-endpoint', 'node-1/to-overlay', 'node-2/from-overlay']);
    const textTrace = (await lab(['trace', '--lab', name, a.name, b.name])).stdout;
    assert.match(textTrace, /DROPPED on node-2 at cilium_vxlan after \S+: Policy denied \(133\), \w+\.[ch]:\d+/);
  });

  await t.test('monitor prints the two nodes\' events of a cross-node ping in the order they happened', async () => {
    const m = background(['monitor', '--lab', name, '--every-packet', '--type', 'trace', '--from-pod', a.name, '-o', 'json', '--duration', '4']);
    await attached(s, 'events');
    inNetns(a.netns, ['ping', '-c', '1', '-W', '2', b.ip!]);
    const out = await m.done;
    assert.equal(out.code, 0, out.stderr);
    const seq = out.stdout.trim().split('\n').map((l) => JSON.parse(l) as { kind: string; node: string; pointText?: string; ip?: { destination: string } })
      .filter((v) => v.kind === 'event' && v.ip?.destination === b.ip).map((v) => `${v.node}/${v.pointText}`);
    assert.deepEqual(seq, ['node-1/from-endpoint', 'node-1/to-overlay', 'node-2/from-overlay', 'node-2/to-endpoint']);
  });

  await t.test('a spoofed source: monitor --type drop prints the drop with its reason and line; observe shows INVALID_SOURCE_IP', async (st) => {
    const p = pod('pod-1-2');
    const spoofed = p.ip!.replace(/\.\d+$/, '.250');
    inNetns(p.netns, ['ip', 'addr', 'add', `${spoofed}/32`, 'dev', 'eth0']);
    st.after(() => { try { inNetns(p.netns, ['ip', 'addr', 'del', `${spoofed}/32`, 'dev', 'eth0']); } catch { /* the lab goes anyway */ } });
    const m = background(['monitor', '--lab', name, '--type', 'drop', '--count', '3', '--duration', '15']);
    await attached(s, 'events');
    const before = scrape(s, 'node-1');
    const r = await lab(['lab', 'exec', '--name', name, p.name, '--', 'ping', '-I', spoofed, '-c', '3', '-i', '0.1', '-W', '1', b.ip!]);
    assert.notEqual(r.code, 0, 'no reply to a spoofed source');
    const out = await m.done;
    assert.equal(out.code, 0, out.stderr);
    const lines = out.stdout.split('\n').filter((l) => l.includes('xx drop'));
    assert.equal(lines.length, 3, out.stdout);
    for (const l of lines) {
      assert.match(l, new RegExp(`^\\[node-1\\] xx drop \\(Invalid source ip\\) flow 0x[0-9a-f]+ to endpoint 0, ifindex lxc\\w+, file bpf_lxc\\.c:\\d+, identity ${p.identity}->0: ${spoofed.replace(/\./g, '\\.')} -> ${b.ip!.replace(/\./g, '\\.')} ICMP echo$`));
    }
    assert.equal(delta(before, scrape(s, 'node-1'), 'cilium_drop_count_total{reason="Invalid source ip",direction="EGRESS"}'), 3);
    const obs = await labOk(['observe', '--lab', name, '--node', 'node-1', '--verdict', 'DROPPED', '--last', '3', '-o', 'json']);
    const flows = obs.stdout.trim().split('\n').map((l) => (JSON.parse(l) as { flow: Flow }).flow);
    assert.deepEqual(flows.map((f) => [f.IP?.source, f.drop_reason_desc, f.drop?.file]), Array(3).fill([spoofed, 'INVALID_SOURCE_IP', 'bpf_lxc.c']));
  });

  await t.test('the forward counters count the packets a ping sent', async () => {
    // Per source site (what `bpf metrics list` shows): the pods' egress program counts each packet that leaves a pod once.
    type Row = { reason: number; direction: string; site: string; packets: number };
    const sites = (node: string) => new Map((JSON.parse(inNetns(s.nodes.find((n) => n.name === node)!.netns, [MEMBRANE, 'bpf', 'metrics', 'list', '-o', 'json'])) as Row[])
      .filter((r) => r.reason === 0 && r.direction === 'egress' && r.site.startsWith('bpf_lxc.c:')).map((r) => [r.site, r.packets]));
    const before = [scrape(s, 'node-1'), scrape(s, 'node-2')];
    const sitesBefore = [sites('node-1'), sites('node-2')];
    const N = 30;
    inNetns(pod('pod-1-2').netns, ['ping', '-c', String(N), '-i', '0.02', '-W', '1', '-q', b.ip!]);
    const after = [scrape(s, 'node-1'), scrape(s, 'node-2')];
    const sitesAfter = [sites('node-1'), sites('node-2')];
    for (const i of [0, 1]) {
      // The N requests leave pod-1-2 on node-1, the N replies leave pod-2-1 on node-2: one site counts exactly N.
      const rose = [...sitesAfter[i]!].map(([site, n]) => [site, n - (sitesBefore[i]!.get(site) ?? 0)] as const).filter(([, d]) => d > 0);
      assert.deepEqual(rose.map(([, d]) => d), [N], `node-${i + 1}: the pods' egress counted each of the ${N} packets once: ${JSON.stringify(rose)}`);
      // The Prometheus counters hold them (with every other forward site of the path, and any other traffic of the lab).
      const eg = delta(before[i]!, after[i]!, 'cilium_forward_count_total{direction="EGRESS"}');
      const ing = delta(before[i]!, after[i]!, 'cilium_forward_count_total{direction="INGRESS"}');
      assert.ok(eg >= 2 * N, `node-${i + 1} EGRESS forwards ${eg}: out of the pod and into the tunnel, at least ${2 * N}`);
      assert.ok(ing >= N, `node-${i + 1} INGRESS forwards ${ing}: at least ${N} from the tunnel`);
      const bytes = delta(before[i]!, after[i]!, 'cilium_forward_bytes_total{direction="EGRESS"}');
      assert.ok(bytes >= 2 * N * 98, `node-${i + 1} EGRESS bytes ${bytes}`);
    }
  });

  await t.test('a UDP flood with every packet traced: the lost events the agents report are exactly the datapath\'s count; nothing crashes, the node forwards', async () => {
    const dirs = s.nodes.map((n) => `${s.pinRoot}/${n.name}`);
    const lostNow = () => dirs.map((d) => readEventsLost(d).total);
    const agentLost = async () => Promise.all(s.nodes.map(async (n) => (await apiCall<{ lost: { ringBuffer: number } }>(n.apiSocket, 'GET', '/v1/observe')).lost.ringBuffer));
    const server = spawn('ip', ['netns', 'exec', b.netns, 'iperf3', '-s', '-1', '-p', '5301'], { stdio: 'ignore' });
    const serverDone = new Promise((r) => server.on('close', r));
    const m = background(['monitor', '--lab', name, '--every-packet', '-o', 'json']);
    await attached(s, 'events');
    const [dp0, ag0] = [lostNow(), await agentLost()];
    await new Promise((r) => setTimeout(r, 300)); // the iperf3 server listens
    // 64-byte datagrams at up to ~117k packets/s for 3 s, pod-1-1 -> pod-2-1 (what the machine manages is reported).
    const flood = spawn('ip', ['netns', 'exec', a.netns, 'iperf3', '-c', b.ip!, '-p', '5301', '-u', '-l', '64', '-b', '60M', '-t', '3', '-J'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let report = '';
    flood.stdout.on('data', (d) => { report += d; });
    await new Promise((r) => flood.on('close', r));
    await serverDone;
    const sent = (JSON.parse(report) as { end: { sum: { packets: number; seconds: number } } }).end.sum;
    t.diagnostic(`flood: ${sent.packets} datagrams in ${sent.seconds.toFixed(1)} s (${Math.round(sent.packets / sent.seconds)} packets/s)`);
    // The agents count at each read of the ring; a busy agent may be behind for a while, never wrong. Once the
    // ring has room again no record is lost any more, and the agent's count meets the datapath's.
    let dpDelta: number[] = [];
    let agDelta: number[] = [];
    for (let i = 0; i < 300; i++) {
      dpDelta = lostNow().map((x, j) => Number(x - dp0[j]!));
      agDelta = (await agentLost()).map((x, j) => x - ag0[j]!);
      if (agDelta.every((x, j) => x === dpDelta[j])) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    t.diagnostic(`events lost (ring full): ${s.nodes.map((n, i) => `${n.name} ${dpDelta[i]}`).join(', ')}`);
    assert.ok(dpDelta[0]! > 0, 'the flood filled node-1\'s ring (else this checks nothing)');
    assert.deepEqual(agDelta, dpDelta, 'each agent reports exactly the records its datapath could not write');
    // The monitor is told the same: its lost lines carry each node's running total, its hello line the total it started from.
    const start = new Map<string, number>();
    const last = new Map<string, number>();
    let cursor = 0;
    const told = () => {
      const text = m.out();
      const end = text.lastIndexOf('\n') + 1; // whole lines only
      for (const l of text.slice(cursor, end).split('\n')) {
        if (!l.startsWith('{"kind":"hello"') && !l.startsWith('{"kind":"lost"')) continue;
        const v = JSON.parse(l) as { kind: string; node: string; lost: { ringBuffer: number } };
        if (v.kind === 'hello') start.set(v.node, v.lost.ringBuffer);
        else last.set(v.node, Math.max(last.get(v.node) ?? 0, v.lost.ringBuffer));
      }
      cursor = end;
      return s.nodes.map((n) => (last.get(n.name) ?? start.get(n.name) ?? 0) - (start.get(n.name) ?? 0));
    };
    for (let i = 0; i < 300 && told().some((x, j) => x < dpDelta[j]!); i++) await new Promise((r) => setTimeout(r, 100));
    m.stop();
    const out = await m.done;
    assert.equal(out.code, 0, out.stderr);
    assert.deepEqual(told(), dpDelta, 'the monitor\'s lost lines reach the same totals');
    const ag1 = await agentLost();
    for (const [i, n] of s.nodes.entries()) {
      assert.equal(scrape(s, n.name).get('hubble_lost_events_total{source="PERF_EVENT_RING_BUFFER"}'), ag1[i], `${n.name}: the metric`);
      assert.equal((await apiCall<{ ready: boolean }>(n.apiSocket, 'GET', '/v1/status')).ready, true, `${n.name}: the agent answers`);
    }
    inNetns(a.netns, ['ping', '-c', '3', '-i', '0.1', '-W', '1', b.ip!]);
  });

  // tshark is the reader users name; where apt could not install it (a machine
  // without Debian's mirror) tcpdump, which the set-up requires, reads the
  // same file through libpcap: the file is still checked by a real reader.
  await t.test(`monitor --pcap: ${hasTshark ? 'tshark' : 'tcpdump (tshark is not installed)'} reads the frames`, async (tt) => {
    const file = join(tmp, 'cap.pcap');
    const m = background(['monitor', '--lab', name, '--every-packet', '--from-pod', 'pod-1-2', '--pcap', file, '--duration', '5']);
    await attached(s, 'events');
    inNetns(pod('pod-1-2').netns, ['ping', '-c', '2', '-i', '0.2', '-W', '1', b.ip!]);
    const r = await m.done;
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^\[node-1\] <- endpoint \d+ flow 0x[0-9a-f]+ , identity \d+->0 state \S+ ifindex lxc\w+ orig-ip [\d.]+: [\d.]+ -> [\d.]+ ICMP echo$/m);
    assert.match(r.stdout, /^\[node-2\] -> endpoint \d+ flow/m);
    const out = hasTshark
      ? execFileSync('tshark', ['-r', file, '-T', 'fields', '-e', 'frame.len', '-e', 'frame.cap_len', '-e', 'ip.src', '-e', 'ip.dst', '-e', 'icmp.type'], { encoding: 'utf8' })
      : tcpdumpRows(file);
    if (!hasTshark) tt.diagnostic('tshark is not installed here: read with tcpdump -r instead');
    const rows = out.trim().split('\n').map((l) => l.split('\t'));
    const echo = rows.filter((x) => x[2] === pod('pod-1-2').ip && x[3] === b.ip && x[4] === '8');
    // pod-1-2 is not allowed by the policy above only if it is still there; here it is allowed either way (the policy allows pod-1-2).
    assert.ok(echo.length >= 2 * 2, `each echo request on both nodes (from-endpoint, to-overlay; from-overlay, to-endpoint): ${out}`);
    assert.ok(echo.every((x) => x[0] === '98' && x[1] === '98'), 'whole 98-byte frames (under the 128-byte snap length)');
  });
});

/**
 * The rows tshark's `-T fields -e frame.len -e frame.cap_len -e ip.src -e
 * ip.dst -e icmp.type` prints, read with tcpdump: `-e` prints the frame's
 * length, and a frame cut short by the snap length would print `[|icmp]`
 * (then its captured length is not the frame's).
 */
function tcpdumpRows(file: string): string {
  const out = execFileSync('tcpdump', ['-r', file, '-nn', '-e', '-q', 'icmp'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  return out.split('\n').flatMap((l) => {
    const m = /length (\d+): (\d+\.\d+\.\d+\.\d+) > (\d+\.\d+\.\d+\.\d+): ICMP echo (request|reply)/.exec(l);
    if (!m) return [];
    return [[m[1], l.includes('[|') ? '?' : m[1], m[2], m[3], m[4] === 'request' ? '8' : '0'].join('\t')];
  }).join('\n');
}
