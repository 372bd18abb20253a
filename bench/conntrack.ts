// Conntrack and policy on the hot path, at scale: what one packet costs in
// the checkpoints that enforce them, with the conntrack tables empty and
// holding 100,000 connections, and what the agent's GC costs on a table that
// size. Runs the real bpf_lxc.o with BPF_PROG_TEST_RUN (repeat N: the
// kernel's average per run, best of 3) in a fresh pin root; no device.
//
//   egress   pod A's cil_from_container, an established TCP connection to a
//            remote pod: egress policy (--rules entries) + conntrack, then
//            encapsulation (the cross-node path of bench/throughput.ts);
//   reply    the same program, a reply of a connection the remote pod
//            opened: two conntrack lookups, no policy;
//   ingress  pod B's cil_to_container, an established connection from the
//            remote pod: ingress policy (--rules entries) + conntrack.
// An established connection caches its verdict per policy revision, so the
// first run looks the policy up (two LPM lookups, ~40 ns each at 1,000
// entries) and the others do not, as established traffic does.
// (Same-node delivery decrements the TTL in place, and a test run reuses one
// skb for every repeat, so it cannot be timed this way; its checks are the
// egress and ingress ones above.)
//
//   sudo node --import tsx bench/conntrack.ts [--entries 100000] [--rules 1000] [--repeat 200000] [--baseline DIR] [-o json]
//
// --baseline DIR times the same packets through DIR/bpf/bpf_lxc.o too (a
// checkout from before policy and conntrack, e.g. a git worktree), for the
// per-packet cost they add.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { progTestRun } from '../src/bpf/index.ts';
import { gcConntrack } from '../src/datapath/conntrack.ts';
import * as ct from '../src/datapath/maps/conntrack.ts';
import * as policy from '../src/datapath/maps/policy.ts';

import { A, B, NODE, PROBES, REMOTE, TCP, loadLxcPair, plantConnections, setPolicy, unloadLxcPair, type LxcPair, type Probe } from './lib/lxc-pair.ts';

const REPO = fileURLToPath(new URL('../', import.meta.url));

interface Options {
  entries: number;
  rules: number;
  repeat: number;
  baseline?: string;
  json: boolean;
}

function parseArgs(argv: string[]): Options {
  const o: Options = { entries: 100_000, rules: 1000, repeat: 200_000, json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const val = () => {
      const v = argv[++i];
      if (v === undefined) usage(`${a} needs a value`);
      return v!;
    };
    if (a === '--entries') o.entries = Number(val());
    else if (a === '--repeat') o.repeat = Number(val());
    else if (a === '--rules') o.rules = Number(val());
    else if (a === '--baseline') o.baseline = val();
    else if (a === '-o') o.json = val() === 'json';
    else if (a === '-h' || a === '--help') usage();
    else usage(`unknown argument ${a}`);
  }
  if (!Number.isInteger(o.entries) || o.entries < 0 || o.entries > ct.CT_TCP_MAX_ENTRIES - 1000) usage(`--entries: 0..${ct.CT_TCP_MAX_ENTRIES - 1000}`);
  if (!Number.isInteger(o.repeat) || o.repeat < 1) usage('--repeat: a positive integer');
  if (!Number.isInteger(o.rules) || o.rules < 2 || o.rules > 16000) usage('--rules: 2..16000');
  return o;
}

function usage(err?: string): never {
  if (err) process.stderr.write(`conntrack bench: ${err}\n`);
  process.stderr.write('usage: sudo node --import tsx bench/conntrack.ts [--entries 100000] [--rules 1000] [--repeat 200000] [--baseline DIR] [-o json]\n');
  process.exit(err ? 2 : 0);
}

// --- packets and endpoints ------------------------------------------------------

// --- one node's maps, with pod A's and pod B's bpf_lxc.o loaded ---------------------

/** `objectFile` for both pods; with `rules`, both selected both ways by that many entries (one in seven a deny), one of which allows the remote pod on TCP 80. */
function load(objectFile: string, tag: string, rules: number): LxcPair {
  const n = loadLxcPair(objectFile, `bench-ct-${tag}`, NODE);
  if (rules > 0) {
    const entries = (egress: boolean): policy.PolicyMapEntry[] => {
      const out: policy.PolicyMapEntry[] = [policy.allowAll(!egress), { identity: REMOTE.identity, egress, protocol: TCP, port: 80, portPrefixLen: 16, deny: false }];
      for (let i = 0; i < rules - 2; i++) out.push({ identity: 10_000 + i, egress, protocol: TCP, port: 1000 + (i % 500), portPrefixLen: 16, deny: i % 7 === 0 });
      return out;
    };
    setPolicy(n.a, A.id, entries(true));
    setPolicy(n.a, B.id, entries(false));
  }
  return n;
}

/** Average ns per run (best of 3); the verdict must be the probe's. */
function perPacket(n: LxcPair, p: Probe, repeat: number): number {
  const prog = p.obj(n).program(p.program);
  const warm = progTestRun(prog.fd, p.frame, { repeat: 1000, ctx: p.ctx });
  if (warm.retval !== p.want) throw new Error(`${p.name}: ${p.program} returned ${warm.retval}, want ${p.want}`);
  return Math.min(...[0, 1, 2].map(() => progTestRun(prog.fd, p.frame, { repeat, ctx: p.ctx }).durationNs));
}

function measure(n: LxcPair, repeat: number): Record<string, number> {
  return Object.fromEntries(PROBES.map((p) => [p.name, perPacket(n, p, repeat)]));
}

/** Fills the TCP table with `count` other connections, `expiredShare` of them expired. Returns ms. */
function fill(n: LxcPair, count: number, expiredShare: number): number {
  const m = n.a.map(ct.CT_TCP_MAP_NAME);
  const now = ct.monotonicSeconds();
  const start = process.hrtime.bigint();
  for (let i = 0; i < count; i++) {
    const t: ct.CtTuple = {
      saddr: `10.${100 + (i >> 16)}.${(i >> 8) & 0xff}.${i & 0xff}`, daddr: B.ip, sport: 1024 + (i % 60000), dport: 80, proto: TCP, dir: i % 2 ? 'in' : 'out',
    };
    m.update(ct.encodeKey(t), ct.encodeValue({ lifetime: i < count * expiredShare ? now - 5 : now + 3600, created: now - 10, flags: ct.CT_ENTRY_F_SEEN_NON_SYN, srcSecId: 1000 }));
  }
  return Number(process.hrtime.bigint() - start) / 1e6;
}

const fmt = (r: Record<string, number>) => PROBES.map((p) => `${p.name} ${String(r[p.name]).padStart(4)} ns`).join('   ');

function main(): void {
  const o = parseArgs(process.argv.slice(2));
  if (process.getuid?.() !== 0) usage('run as root (BPF_PROG_TEST_RUN, bpffs)');
  const objFile = `${REPO}bpf/bpf_lxc.o`;
  if (!existsSync(objFile)) usage(`${objFile} is missing: make -C bpf`);
  const result: Record<string, unknown> = { entries: o.entries, rules: o.rules, repeat: o.repeat };
  const log = (s: string) => { if (!o.json) process.stdout.write(`${s}\n`); };

  log(`per packet (TCP, 1454 bytes; ns per run, best of 3 x ${o.repeat} runs; trace level 0)`);
  if (o.baseline) {
    const base = load(`${o.baseline}/bpf/bpf_lxc.o`, 'base', 0);
    try {
      result.baseline = measure(base, o.repeat);
      log(`  baseline ${o.baseline} (no policy, no conntrack):    ${fmt(result.baseline as Record<string, number>)}`);
    } finally {
      unloadLxcPair(base);
    }
  }
  const n = load(objFile, 'ct', o.rules);
  try {
    plantConnections(n);
    result.empty = measure(n, o.repeat);
    log(`  policy (${o.rules} entries per pod) + conntrack, tables empty: ${fmt(result.empty as Record<string, number>)}`);
    const fillMs = fill(n, o.entries, 0.5);
    result.full = measure(n, o.repeat);
    log(`  policy + conntrack, ${o.entries} other connections:           ${fmt(result.full as Record<string, number>)}   (filled in ${fillMs.toFixed(0)} ms)`);

    // GC as the agent runs it: half the entries expired, then a pass over the survivors.
    const first = gcConntrack(n.nodeDir);
    const second = gcConntrack(n.nodeDir);
    result.gc = { first, second };
    log(`gc: ${first.scanned} entries scanned, ${first.deleted} expired deleted in ${first.durationMs.toFixed(1)} ms; `
      + `again (nothing expired): ${second.scanned} scanned in ${second.durationMs.toFixed(1)} ms`);
    result.afterGc = measure(n, o.repeat);
    log(`  after gc:                                                    ${fmt(result.afterGc as Record<string, number>)}`);
  } finally {
    unloadLxcPair(n);
  }
  if (o.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  log(`reproduce: sudo node --import tsx bench/conntrack.ts --entries ${o.entries} --rules ${o.rules} --repeat ${o.repeat}${o.baseline ? ` --baseline ${o.baseline}` : ''}`);
}

main();
