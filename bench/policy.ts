// Network policy: how fast an import is enforced on every node, and what a
// policy costs cross-node throughput. One 3-node lab (`membrane lab up
// --nodes 3 --pods-per-node 1`, a unique name after this process), removed on
// every path (Ctrl-C included).
//
//   1. Throughput (first, while no other policy exists): iperf3 pod-1-1 ->
//      pod-2-1 (node-1 -> node-2), 1 and 8 streams, with no policy and with a
//      policy selecting both pods (pod-2-1's ingress allows pod-1-1 on TCP
//      5201, pod-1-1's egress allows pod-2-1 there; everything else in those
//      directions is denied, so every packet takes the policy lookup and the
//      conntrack). Rounds alternate the order (none, policy; policy, none).
//      Goal: with policy >= 0.95x without.
//   2. Import -> enforced, for 1, 100 and 1,000 rules: one YAML file of N
//      CiliumNetworkPolicies, each selecting every pod (`endpointSelector:
//      {}`) and allowing pod-1-1 in on its own TCP port. Timed from the start
//      of `membrane policy import FILE --lab L` (the user's command, its
//      process start and YAML parse included) until the pinned policy map of
//      every pod on every node holds all N entries, read straight from the
//      maps (when the endpoint's policy revision moves); and the same from
//      the agent API (POST /v1/policies: no CLI process, the documents
//      already parsed). Each round re-imports the same names with new ports,
//      so each round changes N entries per pod.
//      Goal: under 1 s for 1,000 rules.
//
//   sudo node --import tsx bench/policy.ts [--rounds 3] [--seconds 5] [--only throughput|import] [-o json]
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { cpus, loadavg, release } from 'node:os';
import { stringify } from 'yaml';
import { apiCall } from '../src/api/client.ts';
import type { PolicyStatus } from '../src/agent/policy-manager.ts';
import { listEndpointPolicy, policyRevision } from '../src/datapath/policy-maps.ts';
import { MEMBRANE_BIN, REPO } from '../src/lab/layout.ts';
import type { LabStatus, LabStatusNode, LabStatusPod } from '../src/lab/status.ts';
import { Lab } from './lib/lab.ts';
import { iperf, type IperfResult } from './lib/measure.ts';
import type { Setup } from './lib/setups.ts';

interface Options { rounds: number; seconds: number; json: boolean; only?: 'throughput' | 'import' }

function parseArgs(argv: string[]): Options {
  const o: Options = { rounds: 3, seconds: 5, json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const num = () => {
      const v = Number(argv[++i]);
      if (!Number.isInteger(v) || v < 1) usage(`${a}: expected a whole number >= 1`);
      return v;
    };
    if (a === '--rounds') o.rounds = num();
    else if (a === '--seconds') o.seconds = num();
    else if (a === '--only') {
      const v = argv[++i];
      if (v !== 'throughput' && v !== 'import') usage(`${a}: expected throughput or import`);
      o.only = v;
    }
    else if (a === '-o' || a === '--output') {
      const v = argv[++i];
      if (v !== 'json' && v !== 'text') usage(`${a}: expected json or text`);
      o.json = v === 'json';
    } else if (a === '-h' || a === '--help') usage();
    else usage(`unknown argument ${a}`);
  }
  return o;
}

function usage(err?: string): never {
  if (err) process.stderr.write(`policy bench: ${err}\n`);
  process.stderr.write('usage: sudo node --import tsx bench/policy.ts [--rounds 3] [--seconds 5] [--only throughput|import] [-o json|text]\n');
  process.exit(err ? 2 : 0);
}

const opts = parseArgs(process.argv.slice(2));
const command = `sudo node --import tsx bench/policy.ts --rounds ${opts.rounds} --seconds ${opts.seconds}${opts.only ? ` --only ${opts.only}` : ''}${opts.json ? ' -o json' : ''}`;
const log = (s: string) => process.stderr.write(`${s}\n`);
const r2 = (x: number) => Math.round(x * 100) / 100;
const r3 = (x: number) => Math.round(x * 1000) / 1000;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2; };

const SIZES = [1, 100, 1000];
const TCP = 6;
const ENFORCE_TIMEOUT_MS = 60_000;

type Doc = Record<string, unknown>;
const cnp = (name: string, spec: Doc): Doc => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name }, spec });

/** N rules: bench-i lets pod-1-1 into every pod on TCP base + 2i (2 apart: every port is its own map entry). */
function rules(n: number, base: number): Doc[] {
  return Array.from({ length: n }, (_, i) => cnp(`bench-${i}`, {
    endpointSelector: {},
    ingress: [{ fromEndpoints: [{ matchLabels: { app: 'pod-1-1' } }], toPorts: [{ ports: [{ port: String(base + 2 * i), protocol: 'TCP' }] }] }],
  }));
}

function membrane(args: string[]): string {
  return execFileSync(MEMBRANE_BIN, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20 });
}

/** Runs `membrane ARGS` as a child; resolves with its exit code and output. */
function membraneAsync(args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve, reject) => {
    const c = spawn(MEMBRANE_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    c.stdout.on('data', (d) => { out += d; });
    c.stderr.on('data', (d) => { out += d; });
    c.on('error', reject);
    c.on('close', (code) => resolve({ code: code ?? -1, out }));
  });
}

interface Target { node: LabStatusNode; pod: LabStatusPod; dir: string }

/**
 * Waits until every pod's policy map holds all N ports of this round; ms from
 * t0 per node (NaN: timed out). Reading a map of 1,000 entries takes 4-30 ms
 * of CPU, so it is read only when the endpoint's policy revision (bumped after
 * every write to its map) has moved, and every 250 ms regardless; the revision
 * itself is polled every 5 ms. The poller would otherwise take a CPU from the
 * agents it is timing.
 */
async function untilEnforced(targets: Target[], from: number, n: number, base: number, t0: number): Promise<Map<string, number>> {
  const want = new Set(Array.from({ length: n }, (_, i) => base + 2 * i));
  const seen = new Map<string, number>();
  const checkedRev = new Map<string, number>();
  let lastFull = 0;
  while (seen.size < targets.length && performance.now() - t0 < ENFORCE_TIMEOUT_MS) {
    const full = performance.now() - lastFull > 250;
    if (full) lastFull = performance.now();
    for (const t of targets) {
      if (seen.has(t.node.name)) continue;
      const rev = policyRevision(t.dir, t.pod.endpointID!);
      if (!full && checkedRev.get(t.node.name) === rev) continue;
      checkedRev.set(t.node.name, rev);
      const have = listEndpointPolicy(t.dir, t.pod.endpointID!).filter((e) => !e.egress && !e.deny && e.identity === from && e.protocol === TCP && e.portPrefixLen === 16 && want.has(e.port)).length;
      if (have === n) seen.set(t.node.name, performance.now() - t0);
    }
    if (seen.size < targets.length) await sleep(5);
  }
  for (const t of targets) if (!seen.has(t.node.name)) seen.set(t.node.name, NaN);
  return seen;
}

/** Waits until every node's agent reports at least `revision` applied. */
async function waitRevision(nodes: LabStatusNode[], revision: number): Promise<void> {
  const t0 = performance.now();
  for (;;) {
    const st = await Promise.all(nodes.map((n) => apiCall<PolicyStatus>(n.apiSocket, 'GET', '/v1/policy')));
    if (st.every((s) => s.revision >= revision && s.appliedAt)) return;
    if (performance.now() - t0 > ENFORCE_TIMEOUT_MS) throw new Error(`policy revision ${revision} not applied on every node after ${ENFORCE_TIMEOUT_MS} ms`);
    await sleep(10);
  }
}

interface ImportRound {
  rules: number;
  via: 'cli' | 'api';
  /** Start -> the last node's maps hold every entry. */
  ms: number;
  perNodeMs: Record<string, number>;
  /** Start -> the store has it: the CLI exited (it exits once the agent answered the POST), or the POST returned. */
  storedMs: number;
  /** Each agent's own report of its last recompute (store event -> maps written), node order. */
  agentApplyMs: number[];
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) usage('must run as root (it creates network namespaces)');
  execFileSync('npm', ['run', '-s', 'build'], { cwd: REPO, stdio: ['ignore', 'ignore', 'inherit'] });
  const loadStart = loadavg().map(r2);
  const bench = new Lab('mbpol');
  const name = bench.tag;
  let up = false;
  // lab down on every path: normal end, error, and (through Lab's signal handlers, which exit) Ctrl-C.
  const down = () => { if (up) { up = false; spawnSync(MEMBRANE_BIN, ['lab', 'down', '--name', name], { stdio: 'ignore' }); } };
  process.once('exit', down);
  try {
    log(`lab up --name ${name} --nodes 3 --pods-per-node 1`);
    up = true;
    membrane(['lab', 'up', '--name', name, '--nodes', '3', '--pods-per-node', '1']);
    const s = JSON.parse(membrane(['lab', 'status', '--name', name, '-o', 'json'])) as LabStatus;
    const pod = (n: string) => s.pods.find((p) => p.name === n)!;
    const [p11, p21] = [pod('pod-1-1'), pod('pod-2-1')];
    const targets: Target[] = s.nodes.map((n) => ({ node: n, pod: s.pods.find((p) => p.node === n.name)!, dir: `${s.pinRoot}/${n.name}` }));
    const api = s.nodes[0]!.apiSocket;
    const doThroughput = opts.only !== 'import';
    const doImport = opts.only !== 'throughput';

    // ---- 1. throughput: no policy vs a policy selecting both pods ----
    const setup: Setup = { name: 'membrane', description: `lab ${name}: pod-1-1 (node-1) -> pod-2-1 (node-2)`, client: { ns: p11.netns, ip: p11.ip! }, server: { ns: p21.netns, ip: p21.ip! } };
    const tput = [
      cnp('tput-server', { endpointSelector: { matchLabels: { app: 'pod-2-1' } }, ingress: [{ fromEndpoints: [{ matchLabels: { app: 'pod-1-1' } }], toPorts: [{ ports: [{ port: '5201', protocol: 'TCP' }] }] }] }),
      cnp('tput-client', { endpointSelector: { matchLabels: { app: 'pod-1-1' } }, egress: [{ toEndpoints: [{ matchLabels: { app: 'pod-2-1' } }], toPorts: [{ ports: [{ port: '5201', protocol: 'TCP' }] }] }] }),
    ];
    const setPolicy = async (on: boolean) => {
      let rev = 0;
      if (on) rev = (await apiCall<{ revision: number }>(api, 'POST', '/v1/policies', { documents: tput })).revision;
      else for (const d of tput) rev = (await apiCall<{ revision: number }>(api, 'DELETE', `/v1/policies/default/${(d.metadata as { name: string }).name}`)).revision;
      await waitRevision(s.nodes, rev);
    };
    const runs = { none: { p1: [] as IperfResult[], p8: [] as IperfResult[] }, policy: { p1: [] as IperfResult[], p8: [] as IperfResult[] } };
    let policyOn = false;
    for (let round = 1; doThroughput && round <= opts.rounds; round++) {
      const order: ('none' | 'policy')[] = round % 2 === 1 ? ['none', 'policy'] : ['policy', 'none'];
      for (const which of order) {
        if ((which === 'policy') !== policyOn) { await setPolicy(which === 'policy'); policyOn = which === 'policy'; }
        const p1 = await iperf(bench, setup, 1, opts.seconds);
        const p8 = await iperf(bench, setup, 8, opts.seconds);
        runs[which].p1.push(p1);
        runs[which].p8.push(p8);
        log(`  throughput round ${round}/${opts.rounds} ${which.padEnd(6)} 1 stream ${p1.gbps.toFixed(2)} Gbit/s (retr ${p1.retransmits}), 8 streams ${p8.gbps.toFixed(2)} Gbit/s (retr ${p8.retransmits})`);
      }
    }
    if (policyOn) await setPolicy(false);
    const best = (xs: IperfResult[]) => Math.max(...xs.map((x) => x.gbps));
    const paired = (a: IperfResult[], b: IperfResult[]) => a.map((x, i) => r2(x.gbps / b[i]!.gbps));
    const p1r = paired(runs.policy.p1, runs.none.p1);
    const p8r = paired(runs.policy.p8, runs.none.p8);
    const throughput = !doThroughput ? undefined : {
      none: { stream1: r3(best(runs.none.p1)), stream8: r3(best(runs.none.p8)) },
      policy: { stream1: r3(best(runs.policy.p1)), stream8: r3(best(runs.policy.p8)) },
      stream1Ratio: r2(best(runs.policy.p1) / best(runs.none.p1)), stream8Ratio: r2(best(runs.policy.p8) / best(runs.none.p8)),
      stream1PerRound: p1r, stream8PerRound: p8r, stream1PerRoundMedian: r2(median(p1r)), stream8PerRoundMedian: r2(median(p8r)),
      runs: { none: runs.none, policy: runs.policy },
    };

    // ---- 2. import -> enforced on every node ----
    const rounds: ImportRound[] = [];
    let k = 0;
    for (const n of doImport ? SIZES : []) {
      for (let round = 1; round <= opts.rounds; round++) {
        for (const via of ['cli', 'api'] as const) {
          const base = 2000 + 2000 * k++;
          const docs = rules(n, base);
          const t0 = performance.now();
          let cli: Promise<{ code: number; out: string }> | undefined;
          if (via === 'cli') {
            const f = `${bench.dir}/rules-${n}.yaml`;
            writeFileSync(f, docs.map((d) => stringify(d)).join('---\n'));
            const t1 = performance.now();
            let exited = NaN;
            cli = membraneAsync(['policy', 'import', f, '--lab', name]).then((r) => { exited = performance.now() - t1; return r; });
            const seen = await untilEnforced(targets, p11.identity!, n, base, t1);
            const r = await cli;
            if (r.code !== 0) throw new Error(`membrane policy import (${n} rules) exited ${r.code}: ${r.out}`);
            rounds.push(await record(n, via, seen, exited));
          } else {
            let stored = NaN;
            const post = apiCall(api, 'POST', '/v1/policies', { documents: docs }).then(() => { stored = performance.now() - t0; });
            const seen = await untilEnforced(targets, p11.identity!, n, base, t0);
            await post;
            rounds.push(await record(n, via, seen, stored));
          }
          const last = rounds[rounds.length - 1]!;
          log(`  ${String(n).padStart(4)} rules via ${via}: stored after ${last.storedMs} ms, enforced on every node after ${last.ms} ms (${Object.entries(last.perNodeMs).map(([x, ms]) => `${x} ${ms}`).join(', ')}; agents' apply ${last.agentApplyMs.join(', ')} ms)`);
        }
      }
    }
    async function record(n: number, via: 'cli' | 'api', seen: Map<string, number>, storedMs: number): Promise<ImportRound> {
      const st = await Promise.all(s.nodes.map((x) => apiCall<PolicyStatus>(x.apiSocket, 'GET', '/v1/policy')));
      const per = Object.fromEntries([...seen].map(([x, ms]) => [x, Math.round(ms)]));
      return { rules: n, via, ms: Math.round(Math.max(...seen.values())), perNodeMs: per, storedMs: Math.round(storedMs), agentApplyMs: st.map((x) => Math.round(x.lastApplyMs ?? NaN)) };
    }
    const imports = !doImport ? undefined : SIZES.map((n) => {
      const of = (via: 'cli' | 'api', k: 'ms' | 'storedMs' = 'ms') => rounds.filter((r) => r.rules === n && r.via === via).map((r) => r[k]);
      const applies = rounds.filter((r) => r.rules === n).flatMap((r) => r.agentApplyMs);
      return {
        rules: n, cliMedianMs: Math.round(median(of('cli'))), cliMaxMs: Math.round(Math.max(...of('cli'))), cliStoredMedianMs: Math.round(median(of('cli', 'storedMs'))),
        apiMedianMs: Math.round(median(of('api'))), apiMaxMs: Math.round(Math.max(...of('api'))), apiStoredMedianMs: Math.round(median(of('api', 'storedMs'))),
        agentApplyMedianMs: Math.round(median(applies)),
      };
    });

    const report = {
      date: new Date().toISOString(), command, kernel: release(), cpus: cpus().length, loadavg: { start: loadStart, end: loadavg().map(r2) },
      lab: { name, nodes: s.nodes.length, pods: s.pods.length },
      throughput, throughputGoal: throughput && { target: 'with a policy selecting both pods >= 0.95x without', met: throughput.stream1Ratio >= 0.95 && throughput.stream8Ratio >= 0.95 },
      imports, importRounds: rounds,
      importGoal: imports && { target: '1,000 rules enforced on every node in under 1 s', met: imports.find((i) => i.rules === 1000)!.cliMaxMs < 1000 },
    };
    if (opts.json) process.stdout.write(JSON.stringify(report, null, 2) + '\n');
    else {
      const out: string[] = [];
      out.push(`network policy (${report.date}, kernel ${release()}, ${cpus().length} CPUs, lab of 3 nodes x 1 pod)`);
      if (throughput) {
        out.push('');
        out.push(`cross-node TCP throughput pod-1-1 -> pod-2-1, iperf3 ${opts.seconds} s, best of ${opts.rounds} rounds (Gbit/s):`);
        out.push(`  no policy            1 stream ${throughput.none.stream1.toFixed(2)}   8 streams ${throughput.none.stream8.toFixed(2)}`);
        out.push(`  policy on both pods  1 stream ${throughput.policy.stream1.toFixed(2)}   8 streams ${throughput.policy.stream8.toFixed(2)}`);
        out.push(`  ratio (best of rounds) 1 stream ${throughput.stream1Ratio}x, 8 streams ${throughput.stream8Ratio}x; per round ${p1r.join(', ')} / ${p8r.join(', ')} (medians ${throughput.stream1PerRoundMedian}x / ${throughput.stream8PerRoundMedian}x)`);
        out.push(`  goal >= 0.95x: ${report.throughputGoal!.met ? 'met' : 'NOT met'}`);
      }
      process.stdout.write(out.join('\n') + '\n');
    }
    if (!opts.json && imports) {
      const out: string[] = [];
      out.push('');
      out.push(`import -> enforced in every pod's map on all 3 nodes (ms, ${opts.rounds} rounds):`);
      const head = ['rules', 'CLI median', 'CLI max', '(CLI exited)', 'API median', 'API max', '(POST returned)', 'agent apply'];
      const rows = imports.map((i) => [i.rules, i.cliMedianMs, i.cliMaxMs, i.cliStoredMedianMs, i.apiMedianMs, i.apiMaxMs, i.apiStoredMedianMs, i.agentApplyMedianMs].map(String));
      const w = head.map((h, j) => Math.max(h.length, ...rows.map((r) => r[j]!.length)));
      for (const r of [head, ...rows]) out.push(`  ${r.map((c, j) => c.padStart(w[j]!)).join('   ')}`);
      out.push('  (CLI exited), (POST returned): when the store had it (medians); agent apply: each agent\'s store event -> maps written (median)');
      out.push(`  goal 1,000 rules < 1 s (CLI, worst round): ${report.importGoal!.met ? 'met' : 'NOT met'}`);
      process.stdout.write(out.join('\n') + '\n');
    }
    if (!opts.json) {
      const out: string[] = [];
      out.push(`note: the lab's 3 agents, the pods and the tools share ${cpus().length} CPUs (load average ${report.loadavg.start.join(' ')} at start, ${report.loadavg.end.join(' ')} at end)`);
      out.push(`reproduce: ${command}`);
      process.stdout.write(out.join('\n') + '\n');
    }
  } finally {
    down();
    bench.cleanup();
  }
}

main().catch((e) => {
  log(`policy bench: ${e instanceof Error ? e.stack ?? e.message : e}`);
  process.exit(1);
});
