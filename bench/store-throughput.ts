// Rough numbers for the two store backends: sequential and concurrent puts,
// a list of those keys, and how long a change takes to reach a watcher on a
// second client. Run: node --import tsx bench/store-throughput.ts
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStore, type KVStore, type StoreConfig } from '../src/store/store.ts';
import { haveEtcd, startThrowawayEtcd } from '../src/lab/etcd.ts';

const N = 500;
const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;

async function bench(name: string, cfg: StoreConfig): Promise<void> {
  const a: KVStore = await openStore(cfg);
  const b: KVStore = await openStore(cfg);
  let t = process.hrtime.bigint();
  for (let i = 0; i < N; i++) await a.put(`bench/seq/${i}`, 'x'.repeat(200));
  const seq = ms(t);
  t = process.hrtime.bigint();
  await Promise.all(Array.from({ length: N }, (_, i) => a.put(`bench/par/${i}`, 'x'.repeat(200))));
  const par = ms(t);
  t = process.hrtime.bigint();
  const l = await b.list('bench/');
  const list = ms(t);

  const lat: number[] = [];
  let pending: ((v: void) => void) | undefined;
  const w = b.watch('bench/lat/', l.revision, () => pending?.());
  for (let i = 0; i < 50; i++) {
    const seen = new Promise<void>((r) => { pending = r; });
    t = process.hrtime.bigint();
    await a.put(`bench/lat/${i}`, 'x');
    await seen;
    lat.push(ms(t));
  }
  w.close();
  lat.sort((x, y) => x - y);
  console.log(`${name}: ${Math.round(N / (seq / 1000))} sequential puts/s, ${Math.round(N / (par / 1000))} concurrent puts/s, ` +
    `list ${l.entries.length} keys ${list.toFixed(1)} ms, watch latency to another client median ${lat[25]!.toFixed(1)} ms / max ${lat[49]!.toFixed(1)} ms`);
  await a.close();
  await b.close();
}

const dir = mkdtempSync(join(tmpdir(), 'membrane-bench-'));
try {
  await bench('sqlite', { backend: 'sqlite', path: join(dir, 'state.db') });
  if (haveEtcd()) {
    const etcd = await startThrowawayEtcd();
    try {
      await bench('etcd', { backend: 'etcd', endpoints: [etcd.endpoint] });
    } finally {
      await etcd.stop();
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
