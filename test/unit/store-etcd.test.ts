// The KVStore contract against a throwaway etcd (skipped only if etcd is not
// installed), plus outage behaviour: nothing crashes, operations fail with
// E_STORE_UNAVAILABLE naming the endpoint, and a watch resumes after a restart
// without losing the events written meanwhile.
import assert from 'node:assert/strict';
import { describe, it, test } from 'node:test';
import { Etcd3 } from 'etcd3';
import { openStore, type WatchEvent } from '../../src/store/store.ts';
import { haveEtcd, startThrowawayEtcd, type EtcdInstance } from '../../src/lab/etcd.ts';
import { collector, runStoreContract, sleep, waitFor } from './store-contract.ts';
import { skipUnless } from '../helpers/skip.ts';

const noEtcd = skipUnless(haveEtcd(), '/usr/bin/etcd is not installed (apt-get install etcd-server)');
if (noEtcd) {
  test('etcd store', { skip: noEtcd }, () => {});
} else {
  let etcd: EtcdInstance;
  runStoreContract('etcd', async () => {
    etcd = await startThrowawayEtcd();
    const endpoints = [etcd.endpoint];
    return {
      open: () => openStore({ backend: 'etcd', endpoints }),
      peerConfig: { backend: 'etcd', endpoints },
      compact: async () => {
        const raw = new Etcd3({ hosts: `http://${etcd.endpoint}` });
        try {
          const rev = (await raw.get('compact-probe').exec()).header.revision;
          await raw.kv.compact({ revision: rev, physical: true });
        } finally {
          raw.close();
        }
      },
    };
  }, async () => { await etcd?.stop(); });

  describe('etcd outage', () => {
    it('fails operations with E_STORE_UNAVAILABLE naming the endpoint, then the watch resumes with the events written meanwhile', async () => {
      const etcd = await startThrowawayEtcd();
      const endpoints = [etcd.endpoint];
      const s = await openStore({ backend: 'etcd', endpoints, requestTimeoutMs: 2000 });
      let other: Awaited<ReturnType<typeof openStore>> | undefined;
      try {
        const p = 'outage/';
        await s.put(`${p}before`, '0');
        // A lease whose keepalive has to live through the outage.
        const lease = await s.grantLease(5);
        const lost: Error[] = [];
        lease.onLost((e) => lost.push(e));
        await s.put('outage-leased/k', 'v', { lease });
        const { revision } = await s.list(p);
        const c = collector();
        const w = s.watch(p, revision, c.cb, c.onError);
        await s.put(`${p}a`, '1');
        await waitFor('the first event', () => c.events.length === 1);

        await etcd.halt();
        const t0 = Date.now();
        const unavailable = (e: any) => e.code === 'E_STORE_UNAVAILABLE' && e.message.includes(etcd.endpoint);
        await assert.rejects(s.get(`${p}a`), unavailable);
        await assert.rejects(s.put(`${p}a`, 'x'), unavailable);
        await assert.rejects(s.create(`${p}c`, 'x'), unavailable);
        assert.ok(Date.now() - t0 < 4000, `failed fast (${Date.now() - t0} ms)`);
        await assert.rejects(openStore({ backend: 'etcd', endpoints, requestTimeoutMs: 1000 }), unavailable);
        await waitFor('the watch to report the outage', () => c.errors.length > 0);
        assert.equal((c.errors[0] as any).code, 'E_STORE_UNAVAILABLE');
        assert.match(c.errors[0]!.message, new RegExp(etcd.endpoint));
        await sleep(1500); // etcd stays down a few seconds in all

        await etcd.restart();
        // Another client writes as soon as etcd is back, before our watch has reconnected.
        other = await openStore({ backend: 'etcd', endpoints });
        await other.put(`${p}b`, '2');
        await other.put(`${p}a`, '3');
        await other.delete(`${p}b`);
        await other.put('elsewhere/x', 'not watched');
        await waitFor('the events written after the restart', () => c.events.length >= 4, 5000);
        await sleep(200);
        const seen = c.events.map((e: WatchEvent) => (e.type === 'put' ? `put ${e.key}=${e.value}` : `delete ${e.key}`));
        assert.deepEqual(seen, [`put ${p}a=1`, `put ${p}b=2`, `put ${p}a=3`, `delete ${p}b`]);
        assert.ok(c.errors.every((e: any) => e.code === 'E_STORE_UNAVAILABLE'), 'only transient errors');
        assert.equal((await s.get(`${p}a`))?.value, '3', 'the first client works again');
        assert.equal((await s.get('outage-leased/k'))?.value, 'v', 'the leased key survived the outage');
        assert.deepEqual(lost, []);
        await lease.revoke();
        assert.equal(await other.get('outage-leased/k'), undefined);
        w.close();
      } finally {
        await other?.close();
        await s.close();
        await etcd.stop();
      }
    });
  });
}
