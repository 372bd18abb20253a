// Netlink layer vs the `ip` command: create, list and delete 100 veth pairs
// in a throwaway netns through src/netlink (one socket, one request per
// operation) and through one `ip` process per operation, in the same run.
// The agent's paths use the former; this shows why (the brief's "30x").
//   sudo node --import tsx bench/netlink.ts [--pairs 100] [--rounds 3]
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { linkAddVeth, linkDel, linkGet, linkList, NetlinkHandle } from '../src/netlink/index.ts';

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const N = arg('pairs', 100);
const ROUNDS = arg('rounds', 3);

function time(fn: () => void): number {
  const t0 = performance.now();
  fn();
  return performance.now() - t0;
}

function round(ns: string): { netlink: number[]; ip: number[] } {
  const h = NetlinkHandle.open(ns);
  let netlink: number[];
  try {
    const create = time(() => { for (let i = 0; i < N; i++) linkAddVeth(h, { name: `bh${i}`, peerName: `bp${i}` }); });
    let count = 0;
    const list = time(() => { count = linkList(h).length; });
    assert.equal(count, 2 * N + 1, 'every pair and lo listed');
    const idx = Array.from({ length: N }, (_, i) => linkGet(h, `bh${i}`)!.index);
    const del = time(() => { for (const i of idx) linkDel(h, i); });
    netlink = [create, list, del];
  } finally {
    h.close();
  }
  const ip = (...a: string[]): void => void execFileSync('ip', ['-n', ns, ...a]);
  const create = time(() => { for (let i = 0; i < N; i++) ip('link', 'add', `ih${i}`, 'type', 'veth', 'peer', 'name', `ip${i}`); });
  const list = time(() => void execFileSync('ip', ['-n', ns, '-j', 'link', 'show']));
  const del = time(() => { for (let i = 0; i < N; i++) ip('link', 'del', `ih${i}`); });
  return { netlink, ip: [create, list, del] };
}

const ns = `mbench-nl-${process.pid}`;
execFileSync('ip', ['netns', 'add', ns]);
const cleanup = () => { try { execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' }); } catch { /* gone */ } };
process.once('SIGINT', () => { cleanup(); process.exit(130); });
try {
  console.log(`${N} veth pairs, ${ROUNDS} rounds (ms): create / list / delete`);
  for (let r = 1; r <= ROUNDS; r++) {
    const x = round(ns);
    const f = (v: number[]) => v.map((n) => n.toFixed(1).padStart(7)).join(' /');
    const ratio = x.ip.map((v, i) => (v / x.netlink[i]!).toFixed(1)).join('x / ');
    console.log(`round ${r}: netlink ${f(x.netlink)} | ip ${f(x.ip)} | ip/netlink ${ratio}x`);
  }
  console.log(`reproduce: sudo node --import tsx bench/netlink.ts --pairs ${N} --rounds ${ROUNDS}`);
} finally {
  cleanup();
}
