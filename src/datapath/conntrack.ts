// The node's conntrack tables (bpf/lib/conntrack.h): listing and garbage
// collection. The programs treat an expired entry as missing and overwrite
// it, and the LRU evicts the oldest when a table is full, but only the GC
// removes expired entries, so the tables keep room and listings show live
// connections. Lifetimes are seconds of CLOCK_MONOTONIC, compared with
// monotonicSeconds() (the same clock as the programs' bpf_ktime_get_coarse_ns).
//
// Reading is batched (BPF_MAP_LOOKUP_BATCH, 4096 entries per syscall), so a
// full table costs a few dozen syscalls, not two per entry.
import { pinExists } from '../bpf/index.ts';
import * as ct from './maps/conntrack.ts';
import * as nat from './maps/nat.ts';
import { withNodeMap } from './node-maps.ts';
import { globalsDir } from './paths.ts';

export const CT_TABLES = [ct.CT_TCP_MAP_NAME, ct.CT_ANY_MAP_NAME] as const;

export interface CtGcResult {
  /** Entries looked at, in both tables. */
  scanned: number;
  /** Expired entries removed. */
  deleted: number;
  /** Entries left. */
  alive: number;
  /** Wall time of the whole collection. */
  durationMs: number;
  tables: { name: string; scanned: number; deleted: number }[];
  /** The masquerade's translations (cilium_snat_v4_external): those whose connection is gone are deleted with it. */
  nat: { scanned: number; deleted: number };
}

const LIFETIME_OFF = ct.CT_ENTRY.fields.lifetime;

/**
 * Deletes every entry whose lifetime is at or before `now` (seconds of
 * CLOCK_MONOTONIC). An entry a packet revives between the read and the
 * delete (a few ms) is lost once: its next packet is looked up as new and
 * goes through policy again.
 */
export function gcConntrack(nodeDir: string, now: number = ct.monotonicSeconds()): CtGcResult {
  const start = process.hrtime.bigint();
  const tables = CT_TABLES.map((name) => withNodeMap(nodeDir, name, (m) => {
    const expired: Buffer[] = [];
    let scanned = 0;
    for (const [k, v] of m.batchEntries()) {
      scanned++;
      if (v.readUInt32LE(LIFETIME_OFF) <= now) expired.push(k);
    }
    return { name, scanned, deleted: expired.length ? m.deleteBatch(expired) : 0 };
  }));
  const scanned = tables.reduce((s, t) => s + t.scanned, 0);
  const deleted = tables.reduce((s, t) => s + t.deleted, 0);
  const natResult = gcNat(nodeDir, now);
  return { scanned, deleted, alive: scanned - deleted, durationMs: Number(process.hrtime.bigint() - start) / 1e6, tables, nat: natResult };
}

/**
 * Deletes the NAT entries whose connection has ended: an egress entry lives
 * while the pod's conntrack entry (OUT, same tuple) is alive; an ingress
 * entry while the egress entry of its connection is kept and still points at
 * it (two first packets of one flow on two CPUs may both allocate: the loser's
 * reply entry is orphaned and goes here). Run after the conntrack GC, so a
 * connection's conntrack and NAT entries go in the same collection.
 */
export function gcNat(nodeDir: string, now: number = ct.monotonicSeconds()): { scanned: number; deleted: number } {
  if (!pinExists(`${globalsDir(nodeDir)}/${nat.NAT_MAP_NAME}`)) return { scanned: 0, deleted: 0 }; // a node set up before masquerade
  return withNodeMap(nodeDir, nat.NAT_MAP_NAME, (m) => {
    const entries = [...m.batchEntries()].map(([k, v]) => ({ raw: Buffer.from(k), key: nat.decodeKey(k), value: nat.decodeValue(v) }));
    if (!entries.length) return { scanned: 0, deleted: 0 };
    const egressAlive = new Map<string, nat.NatValue>();
    const dead: Buffer[] = [];
    const ctAlive = (t: Omit<ct.CtTuple, 'dir'>): boolean => withNodeMap(nodeDir, t.proto === 6 ? ct.CT_TCP_MAP_NAME : ct.CT_ANY_MAP_NAME, (c) => {
      const v = c.lookup(ct.encodeKey({ ...t, dir: 'out' }));
      return !!v && ct.decodeValue(v).lifetime > now;
    });
    for (const e of entries.filter((x) => x.key.dir === 'egress')) {
      if (ctAlive(e.key)) egressAlive.set(e.raw.toString('hex'), e.value);
      else dead.push(e.raw);
    }
    for (const e of entries.filter((x) => x.key.dir === 'ingress')) {
      const orig = nat.originalOfIngress(e.key, e.value);
      const fwd = egressAlive.get(nat.encodeKey({ ...orig, dir: 'egress' }).toString('hex'));
      if (!fwd || fwd.toAddr !== e.key.daddr || fwd.toPort !== nat.translatedPortOfIngress(e.key)) dead.push(e.raw);
    }
    return { scanned: entries.length, deleted: dead.length ? m.deleteBatch(dead) : 0 };
  });
}

export interface NatListEntry extends nat.NatKey, nat.NatValue {
  /** "TCP egress 10.244.1.5:40000 -> 10.13.0.254:80 => 10.13.0.11:61234". */
  summary: string;
}

/** The masquerade's translations (empty on a node set up before it existed). */
export function listNat(nodeDir: string): NatListEntry[] {
  if (!pinExists(`${globalsDir(nodeDir)}/${nat.NAT_MAP_NAME}`)) return [];
  return withNodeMap(nodeDir, nat.NAT_MAP_NAME, (m) => [...m.batchEntries()].map(([k, v]) => {
    const key = nat.decodeKey(k);
    const value = nat.decodeValue(v);
    const proto = key.proto === 6 ? 'TCP' : key.proto === 17 ? 'UDP' : key.proto === 1 ? 'ICMP' : `proto ${key.proto}`;
    const side = key.dir === 'egress' ? 'source' : 'destination';
    return { ...key, ...value, summary: `${proto} ${key.dir} ${key.saddr}:${key.sport} -> ${key.daddr}:${key.dport}: ${side} becomes ${value.toAddr}:${value.toPort}` };
  }));
}

export interface CtListEntry extends ct.CtTuple, ct.CtEntry {
  /** The table it is in. */
  table: string;
  /** Seconds left (<= 0: expired, waiting for the GC). */
  expiresIn: number;
  /** "TCP OUT 10.0.1.5:40000 -> 10.0.1.6:80". */
  summary: string;
  /** Entry flags and TCP flags seen, as names. */
  flagNames: string[];
  txFlagNames: string[];
  rxFlagNames: string[];
}

/** Every conntrack entry of the node (expired ones too, marked by expiresIn <= 0), TCP first, by address. */
export function listConntrack(nodeDir: string, now: number = ct.monotonicSeconds()): CtListEntry[] {
  const rows: CtListEntry[] = [];
  for (const table of CT_TABLES) {
    withNodeMap(nodeDir, table, (m) => {
      for (const [k, v] of m.batchEntries()) {
        const t = ct.decodeKey(k);
        const e = ct.decodeValue(v);
        rows.push({
          table, ...t, ...e, expiresIn: e.lifetime - now, summary: ct.describeTuple(t),
          flagNames: ct.entryFlagNames(e.flags), txFlagNames: ct.tcpFlagNames(e.txFlagsSeen), rxFlagNames: ct.tcpFlagNames(e.rxFlagsSeen),
        });
      }
    });
  }
  const ip = (a: string) => a.split('.').reduce((n, o) => n * 256 + Number(o), 0);
  return rows.sort((a, b) => CT_TABLES.indexOf(a.table as never) - CT_TABLES.indexOf(b.table as never)
    || ip(a.saddr) - ip(b.saddr) || ip(a.daddr) - ip(b.daddr) || a.sport - b.sport || a.dport - b.dport || a.dir.localeCompare(b.dir));
}
