// A second store client in its own process, driven by the contract tests over
// stdin/stdout (one JSON object per line). Started as
//   node --import tsx test/unit/store-peer.ts '<StoreConfig JSON>'
// It answers {"ready":true} once the store is open, then for each request
// {"id":N,"op":...} one {"id":N,"ok":true,"result":...} or {"id":N,"ok":false,"error":{code,message}};
// watch events arrive as {"watch":W,"event":{...}}. Not a test file itself.
import { createInterface } from 'node:readline';
import { openStore, type Lease, type StoreConfig, type Watch } from '../../src/store/store.ts';
import { IdentityAllocator } from '../../src/store/identity-allocator.ts';

const cfg = JSON.parse(process.argv[2] ?? '') as StoreConfig;
const store = await openStore(cfg);
let lease: Lease | undefined;
let allocator: IdentityAllocator | undefined;
const watches = new Map<number, Watch>();
let nextWatch = 1;

const send = (msg: unknown) => process.stdout.write(JSON.stringify(msg) + '\n');

type Req = { id: number; op: string; [k: string]: any };

async function handle(req: Req): Promise<unknown> {
  switch (req.op) {
    case 'put': return store.put(req.key, req.value, req.leased ? { lease } : {});
    case 'get': return (await store.get(req.key)) ?? null;
    case 'list': return store.list(req.prefix);
    case 'create': return store.create(req.key, req.value, req.leased ? { lease } : {});
    case 'delete': return store.delete(req.key);
    case 'lease': lease = await store.grantLease(req.ttl); return lease.id;
    case 'watch': {
      const w = nextWatch++;
      watches.set(w, store.watch(req.prefix, req.from, (event) => send({ watch: w, event }), (e) => send({ watch: w, error: { code: (e as any).code, message: e.message } })));
      return w;
    }
    case 'burst': {
      // n sequential puts as fast as possible, for concurrency tests.
      const revs: number[] = [];
      for (let i = 0; i < req.n; i++) revs.push(await store.put(`${req.prefix}${i}`, String(i)));
      return revs;
    }
    case 'allocate':
      allocator ??= await IdentityAllocator.create(store, { node: req.node, leaseTtlSeconds: 5 });
      return allocator.allocate(req.labels);
    case 'close':
      for (const w of watches.values()) w.close();
      await store.close();
      setImmediate(() => process.exit(0));
      return true;
    default: throw new Error(`unknown op ${req.op}`);
  }
}

createInterface({ input: process.stdin }).on('line', (line) => {
  const req = JSON.parse(line) as Req;
  handle(req).then(
    (result) => send({ id: req.id, ok: true, result }),
    (err: any) => send({ id: req.id, ok: false, error: { code: err?.code, message: String(err?.message ?? err) } }),
  );
});
// The parent going away (stdin closed) ends the peer too.
process.stdin.on('end', () => process.exit(0));
send({ ready: true });
