// Shared setup for the privileged bpf tests: a unique bpffs directory under
// the project's bpffs mount, and a veth pair between two throwaway netns.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import type { TestContext } from 'node:test';
import { makeNetns, nsExec, uniqueName } from '../../helpers/netns.ts';
import { isBpffs, removePinTree } from '../../../src/bpf/pin.ts';
import { BpfMap } from '../../../src/bpf/map.ts';

export const FIXTURES = dirname(fileURLToPath(import.meta.url));
export const fixture = (name: string) => join(FIXTURES, name);

export const BPFFS_ROOT = '/run/membrane/bpffs';

/**
 * A fresh directory on the project's bpffs, removed when the test ends.
 * Mounts the bpffs in the root mount namespace if it is not there yet (the
 * mount itself is the project's standing location and is left in place).
 */
export function bpffsDir(t: TestContext, tag = 'bpf'): string {
  if (!isBpffs(BPFFS_ROOT)) {
    mkdirSync(BPFFS_ROOT, { recursive: true });
    try {
      execFileSync('mountpoint', ['-q', BPFFS_ROOT]);
    } catch {
      execFileSync('mount', ['-t', 'bpf', 'bpffs', BPFFS_ROOT]);
    }
  }
  const dir = join(BPFFS_ROOT, `test-${tag}-${process.pid}-${uniqueName('d')}`);
  mkdirSync(dir);
  t.after(() => removePinTree(dir));
  return dir;
}

export interface VethPair {
  nsA: string;
  nsB: string;
  /** Device in nsA and its address (192.0.2.1/24). */
  devA: string;
  ipA: string;
  /** Peer in nsB (192.0.2.2/24). */
  devB: string;
  ipB: string;
}

/** Two netns joined by a veth pair, both ends up and addressed; removed when the test ends. */
export function vethPair(t: TestContext): VethPair {
  const nsA = makeNetns(t, 'a');
  const nsB = makeNetns(t, 'b');
  const devA = 'mbta0';
  const devB = 'mbtb0';
  execFileSync('ip', ['-n', nsA, 'link', 'add', devA, 'type', 'veth', 'peer', 'name', devB, 'netns', nsB]);
  execFileSync('ip', ['-n', nsA, 'addr', 'add', '192.0.2.1/24', 'dev', devA]);
  execFileSync('ip', ['-n', nsB, 'addr', 'add', '192.0.2.2/24', 'dev', devB]);
  execFileSync('ip', ['-n', nsA, 'link', 'set', devA, 'up']);
  execFileSync('ip', ['-n', nsB, 'link', 'set', devB, 'up']);
  return { nsA, nsB, devA, ipA: '192.0.2.1', devB, ipB: '192.0.2.2' };
}

/** ifindex of a device inside a netns. */
export function ifindexIn(ns: string, dev: string): number {
  const out = JSON.parse(execFileSync('ip', ['-n', ns, '-j', 'link', 'show', dev], { encoding: 'utf8' })) as { ifindex: number }[];
  return out[0]!.ifindex;
}

/** `count` pings from `ns` to `ip`; returns true if all were answered. */
export function ping(ns: string, ip: string, count = 3): boolean {
  try {
    nsExec(ns, ['ping', '-n', '-q', '-c', String(count), '-i', '0.2', '-W', '1', ip]);
    return true;
  } catch {
    return false;
  }
}

export function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

export function u64(n: number | bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
}

/** u64 counter at `slot` of an ARRAY map. */
export function counter(map: BpfMap, slot: number): bigint {
  return map.lookup(u32(slot))?.readBigUInt64LE(0) ?? 0n;
}

/** `bpftool -j net show` inside a netns, tc part only. */
export function bpftoolTc(ns: string): { devname: string; ifindex: number; kind: string; name: string; prog_id?: number; id?: number; link_id?: number }[] {
  const out = JSON.parse(nsExec(ns, ['bpftool', '-j', 'net', 'show'])) as { tc?: any[] }[];
  return out.flatMap((o) => o.tc ?? []);
}

export { existsSync };
