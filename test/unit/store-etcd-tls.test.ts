// etcd as on real hosts: TLS with client-certificate authentication
// (certificates made with openssl by src/lab/etcd-pki.ts) and etcd's own
// users. The whole KVStore contract runs against a TLS etcd; then each way a
// node can be misconfigured must fail at open with its own code and a message
// naming the endpoint: wrong CA, no client certificate, a client certificate
// from another CA, http:// to a TLS etcd, wrong password, unreachable.
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, test } from 'node:test';
import { spawn } from 'node:child_process';
import { Etcd3 } from 'etcd3';
import { openStore, type EtcdStoreConfig } from '../../src/store/store.ts';
import { haveEtcd, startThrowawayEtcd, type EtcdInstance } from '../../src/lab/etcd.ts';
import { makeCa, makeEtcdPki, makeLeaf } from '../../src/lab/etcd-pki.ts';
import { collector, runStoreContract, waitFor } from './store-contract.ts';
import { skipUnless } from '../helpers/skip.ts';

const noEtcd = skipUnless(haveEtcd(), '/usr/bin/etcd is not installed (apt-get install etcd-server)');

/** The client TLS files of `etcd`'s own PKI. */
const tlsOf = (e: EtcdInstance) => ({ ca: e.pki!.ca, cert: e.pki!.clientCert, key: e.pki!.clientKey });

/** An etcd3 client with `etcd`'s client certificate (and optionally a user), for setting etcd up behind the store's back. */
function rawClient(e: EtcdInstance, auth?: { username: string; password: string }): Etcd3 {
  const t = tlsOf(e);
  return new Etcd3({
    hosts: e.url,
    credentials: { rootCertificate: readFileSync(t.ca), certChain: readFileSync(t.cert), privateKey: readFileSync(t.key) },
    ...(auth ? { auth } : {}),
  });
}

if (noEtcd) {
  test('etcd store with TLS', { skip: noEtcd }, () => {});
} else {
  let etcd: EtcdInstance;
  runStoreContract('etcd (TLS, client certificates)', async () => {
    etcd = await startThrowawayEtcd(10_000, { tls: true });
    const cfg: EtcdStoreConfig = { backend: 'etcd', endpoints: [etcd.url], tls: tlsOf(etcd) };
    return {
      open: () => openStore(cfg),
      peerConfig: cfg,
      compact: async () => {
        const raw = rawClient(etcd);
        try {
          const rev = (await raw.get('compact-probe').exec()).header.revision;
          await raw.kv.compact({ revision: rev, physical: true });
        } finally {
          raw.close();
        }
      },
    };
  }, async () => { await etcd?.stop(); });

  describe('etcd TLS misconfigurations', () => {
    let e: EtcdInstance;
    let scratch: string;
    before(async () => {
      e = await startThrowawayEtcd(10_000, { tls: true });
      scratch = mkdtempSync(join(tmpdir(), 'membrane-tls-test-'));
    });
    after(async () => {
      await e?.stop();
      if (scratch) rmSync(scratch, { recursive: true, force: true });
    });

    /** Opening with `cfg` fails with `code` and a message naming the endpoint and matching `re`. */
    async function refused(cfg: Partial<EtcdStoreConfig>, code: string, re: RegExp): Promise<Error> {
      let caught: any;
      await assert.rejects(openStore({ backend: 'etcd', endpoints: [e.url], requestTimeoutMs: 3000, ...cfg } as EtcdStoreConfig), (err: any) => { caught = err; return true; });
      assert.equal(caught.code, code, caught.message);
      const endpoint = (cfg.endpoints ?? [e.url])[0]!;
      assert.ok(caught.message.includes(endpoint), `names the endpoint ${endpoint}: ${caught.message}`);
      assert.match(caught.message, re);
      return caught;
    }

    it('connects with the CA and a client certificate, and reads and writes', async () => {
      const s = await openStore({ backend: 'etcd', endpoints: [e.url], tls: tlsOf(e) });
      try {
        await s.put('cilium/tls-probe', 'ok');
        assert.equal((await s.get('cilium/tls-probe'))?.value, 'ok');
      } finally {
        await s.close();
      }
    });

    it('refuses a server certificate from another CA (wrong store.tls.ca)', async () => {
      const other = makeCa(`${scratch}/other`, 'ca', 'another CA');
      const err = await refused({ tls: { ...tlsOf(e), ca: other.cert } }, 'E_STORE_TLS', /not signed by the CA in store\.tls\.ca/);
      assert.match((err as any).hint, /openssl verify -CAfile/);
    });

    it('refuses when no client certificate is configured', async () => {
      await refused({ tls: { ca: e.pki!.ca } }, 'E_STORE_TLS', /requires a client certificate/);
    });

    it('is refused with a client certificate another CA signed', async () => {
      const other = makeCa(`${scratch}/rogue`, 'ca', 'rogue CA');
      const leaf = makeLeaf(`${scratch}/rogue`, 'client', other, { cn: 'membrane', usage: 'client' });
      await refused({ tls: { ca: e.pki!.ca, cert: leaf.cert, key: leaf.key } }, 'E_STORE_TLS', /refused the client certificate in store\.tls\.cert/);
    });

    it('says so when an http:// endpoint points at a TLS etcd', async () => {
      await refused({ endpoints: [e.url.replace('https:', 'http:')] }, 'E_STORE_TLS', /TLS behind an http:\/\/ endpoint/);
    });

    it('names an unreachable endpoint, and opens while another endpoint answers', async () => {
      const dead = 'https://127.0.0.1:1';
      await refused({ endpoints: [dead], tls: tlsOf(e) }, 'E_STORE_UNAVAILABLE', /unreachable \(connection refused\)/);
      const s = await openStore({ backend: 'etcd', endpoints: [dead, e.url], tls: tlsOf(e), requestTimeoutMs: 3000 });
      try {
        for (let i = 0; i < 5; i++) await s.put(`cilium/multi/${i}`, String(i));
        assert.equal((await s.list('cilium/multi/')).entries.length, 5);
      } finally {
        await s.close();
      }
    });

    it('checks the files before connecting: a key readable by everyone, a key of another certificate, a CA that is not a CA', async () => {
      const loose = `${scratch}/loose.key`;
      writeFileSync(loose, '');
      chmodSync(loose, 0o644);
      await assert.rejects(openStore({ backend: 'etcd', endpoints: [e.url], tls: { ...tlsOf(e), key: loose } }), (err: any) => err.code === 'E_CONFIG' && /readable by every user/.test(err.message) && err.message.includes(loose));
      await assert.rejects(openStore({ backend: 'etcd', endpoints: [e.url], tls: { ...tlsOf(e), key: e.pki!.serverKey } }), (err: any) => err.code === 'E_CONFIG' && /not the key of the certificate/.test(err.message));
      await assert.rejects(openStore({ backend: 'etcd', endpoints: [e.url], tls: { ...tlsOf(e), ca: e.pki!.serverCert } }), (err: any) => err.code === 'E_CONFIG' && /not a CA certificate/.test(err.message));
    });

    describe('with etcd authentication on', () => {
      before(async () => {
        // As an operator would: root user and role, a membrane user with readwrite on cilium/, then auth enable.
        const raw = rawClient(e);
        try {
          await raw.role('root').create();
          await raw.user('root').create('root-secret');
          await raw.user('root').addRole('root');
          const role = await raw.role('membrane').create();
          await role.grant({ permission: 'Readwrite', range: raw.range({ prefix: 'cilium/' }) });
          await raw.user('membrane-node').create('node-secret');
          await raw.user('membrane-node').addRole('membrane');
          await raw.user('reader').create('reader-secret');
          await raw.auth.authEnable();
        } finally {
          raw.close();
        }
      });

      it('works with the right user and password (from a 0600 password file)', async () => {
        const pw = `${scratch}/password`;
        writeFileSync(pw, 'node-secret\n', { mode: 0o600 });
        const s = await openStore({ backend: 'etcd', endpoints: [e.url], tls: tlsOf(e), username: 'membrane-node', passwordFile: pw });
        try {
          await s.put('cilium/auth-probe', 'ok');
          assert.equal((await s.get('cilium/auth-probe'))?.value, 'ok');
        } finally {
          await s.close();
        }
      });

      it('refuses a wrong password with E_STORE_AUTH naming the endpoint and the user', async () => {
        await refused({ tls: tlsOf(e), username: 'membrane-node', password: 'wrong' }, 'E_STORE_AUTH', /authentication failed for user "membrane-node"/);
      });

      it('refuses a user without readwrite on cilium/', async () => {
        await refused({ tls: tlsOf(e), username: 'reader', password: 'reader-secret' }, 'E_STORE_AUTH', /"reader" may not read and write the cilium\/ prefix/);
      });
    });
  });

  describe('a three-member TLS etcd cluster', () => {
    it('keeps working through the loss of one member (calls move to the others, the watch resumes); losing quorum is E_STORE_UNAVAILABLE naming the endpoints', async (t) => {
      const dir = mkdtempSync(join(tmpdir(), 'membrane-etcd3-'));
      const pki = makeEtcdPki(`${dir}/pki`, ['127.0.0.1']);
      const base = 20_000 + Math.floor(Math.random() * 30_000);
      const members = [0, 1, 2].map((i) => ({ name: `m${i}`, client: base + i * 3, peer: base + i * 3 + 1, metrics: base + i * 3 + 2 }));
      const cluster = members.map((m) => `${m.name}=http://127.0.0.1:${m.peer}`).join(',');
      const procs = members.map((m) => spawn('setpriv', ['--pdeathsig', 'SIGKILL', '/usr/bin/etcd',
        '--name', m.name, '--data-dir', `${dir}/${m.name}`,
        '--listen-client-urls', `https://127.0.0.1:${m.client}`, '--advertise-client-urls', `https://127.0.0.1:${m.client}`,
        '--listen-peer-urls', `http://127.0.0.1:${m.peer}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${m.peer}`,
        '--initial-cluster', cluster, '--initial-cluster-state', 'new', '--listen-metrics-urls', `http://127.0.0.1:${m.metrics}`,
        '--cert-file', pki.serverCert, '--key-file', pki.serverKey, '--trusted-ca-file', pki.ca, '--client-cert-auth',
        '--heartbeat-interval', '20', '--election-timeout', '200', '--log-level', 'error'], { stdio: 'ignore' }));
      t.after(() => { for (const p of procs) p.kill('SIGKILL'); rmSync(dir, { recursive: true, force: true }); });
      const healthy = async (m: typeof members[0]) => fetch(`http://127.0.0.1:${m.metrics}/health`, { signal: AbortSignal.timeout(500) }).then(async (r) => /"health":"true"/.test(await r.text()), () => false);
      await waitFor('all three members healthy', async () => (await Promise.all(members.map(healthy))).every(Boolean), 20_000);

      const endpoints = members.map((m) => `https://127.0.0.1:${m.client}`);
      const tls = { ca: pki.ca, cert: pki.clientCert, key: pki.clientKey };
      const s = await openStore({ backend: 'etcd', endpoints, tls, requestTimeoutMs: 3000 });
      try {
        const { revision } = await s.list('cilium/ha/');
        const c = collector();
        const w = s.watch('cilium/ha/', revision, c.cb, c.onError);
        for (let i = 0; i < 10; i++) await s.put(`cilium/ha/a${i}`, String(i));
        procs[0]!.kill('SIGKILL');
        // Every write after the loss succeeds (the two left keep quorum); creates too, which are never retried once sent.
        for (let i = 0; i < 20; i++) await s.put(`cilium/ha/b${i}`, String(i));
        for (let i = 0; i < 5; i++) assert.equal(await s.create(`cilium/ha/c${i}`, 'x'), true);
        assert.equal((await s.list('cilium/ha/')).entries.length, 35);
        await waitFor('the watch saw all 35 writes', () => c.events.length === 35, 10_000);
        assert.deepEqual(c.events.map((e) => e.key), [...[...Array(10).keys()].map((i) => `cilium/ha/a${i}`), ...[...Array(20).keys()].map((i) => `cilium/ha/b${i}`), ...[...Array(5).keys()].map((i) => `cilium/ha/c${i}`)]);
        w.close();
        // A second member gone: no quorum, no write can succeed.
        procs[1]!.kill('SIGKILL');
        await assert.rejects(s.put('cilium/ha/after', 'x'), (err: any) => err.code === 'E_STORE_UNAVAILABLE' && /127\.0\.0\.1:\d+/.test(err.message));
      } finally {
        await s.close();
      }
    });
  });
}
