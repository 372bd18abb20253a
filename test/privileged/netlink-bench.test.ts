// Opt-in measurement (MEMBRANE_BENCH=1), not an assertion: create, list and
// delete 100 veth pairs in a throwaway netns through this layer and through
// one `ip` process per operation. Numbers are printed as test diagnostics.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { linkAddVeth, linkDel, linkGet, linkList, NetlinkHandle } from '../../src/netlink/index.ts';
import { isRoot, makeNetns } from '../helpers/netns.ts';

const N = 100;
const skip = !isRoot ? 'requires root' : process.env.MEMBRANE_BENCH !== '1' ? 'measurement only: set MEMBRANE_BENCH=1' : false;

function time(fn: () => void): number {
  const t0 = performance.now();
  fn();
  return performance.now() - t0;
}

test(`create + list + delete ${N} veth pairs: netlink handle vs one ip process per op`, { skip }, (t) => {
  const rows: string[] = [];
  for (let rep = 1; rep <= 3; rep++) {
    const ns = makeNetns(t);
    const h = NetlinkHandle.open(ns);
    const create = time(() => { for (let i = 0; i < N; i++) linkAddVeth(h, { name: `bh${i}`, peerName: `bp${i}` }); });
    let count = 0;
    const list = time(() => { count = linkList(h).length; });
    assert.equal(count, 2 * N + 1);
    const idx = Array.from({ length: N }, (_, i) => linkGet(h, `bh${i}`)!.index);
    const del = time(() => { for (const i of idx) linkDel(h, i); });
    h.close();

    const ip = (...a: string[]): void => void execFileSync('ip', ['-n', ns, ...a]);
    const ipCreate = time(() => { for (let i = 0; i < N; i++) ip('link', 'add', `ih${i}`, 'type', 'veth', 'peer', 'name', `ip${i}`); });
    const ipList = time(() => void execFileSync('ip', ['-n', ns, '-j', 'link', 'show']));
    const ipDel = time(() => { for (let i = 0; i < N; i++) ip('link', 'del', `ih${i}`); });
    rows.push(`rep ${rep}: netlink create ${create.toFixed(0)} ms, list ${list.toFixed(1)} ms, delete ${del.toFixed(0)} ms | ip create ${ipCreate.toFixed(0)} ms, list ${ipList.toFixed(1)} ms, delete ${ipDel.toFixed(0)} ms`);
  }
  for (const r of rows) t.diagnostic(r);
});
