// `lab up --store etcd --etcd-tls`: the lab's etcd on https with
// client-certificate authentication, certificates made for the lab, the
// agents connecting with the CA and the client certificate (as on real
// hosts). The nodes learn each other's pods over it, and etcd really refuses a
// client without a certificate (asked from the underlay netns with curl).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { test } from 'node:test';
import { parse } from 'yaml';
import { inNetns, labOk, labStatus, labUp } from '../helpers/lab.ts';
import { labDir, nodeDirOf, underlayNetns } from '../../src/lab/layout.ts';
import { rootOnly, skipUnless } from '../helpers/skip.ts';

test('lab up --store etcd --etcd-tls: agents on a TLS etcd with client certificates', {
  skip: rootOnly() || skipUnless(existsSync('/usr/bin/etcd'), '/usr/bin/etcd is not installed (apt-get install etcd-server)'),
}, async (t) => {
  const { name } = await labUp(t, ['--store', 'etcd', '--etcd-tls']);
  const s = await labStatus(name);
  assert.equal(s.store, 'etcd');
  assert.match(s.etcd!.endpoint, /^https:\/\/10\.13\.0\.1:2379$/);
  assert.ok(s.etcd!.running);

  // etcd's command line: TLS on the client URLs, client certificates required.
  const rec = JSON.parse(readFileSync(`${labDir(name)}/lab.json`, 'utf8'));
  for (const flag of ['--cert-file', '--key-file', '--trusted-ca-file', '--client-cert-auth']) assert.ok(rec.etcd.argv.includes(flag), `etcd runs with ${flag}`);
  const pki = `${labDir(name)}/etcd-pki`;
  assert.equal(statSync(`${pki}/client.key`).mode & 0o077, 0, 'the client key is 0600');

  // Every agent's config names the https endpoint and the CA and client certificate.
  for (const n of s.nodes) {
    const cfg = parse(readFileSync(`${nodeDirOf(name, n.name)}/config.yaml`, 'utf8'));
    assert.deepEqual(cfg.store, { backend: 'etcd', endpoints: ['https://10.13.0.1:2379'], tls: { ca: `${pki}/ca.crt`, cert: `${pki}/client.crt`, key: `${pki}/client.key` } });
  }

  await t.test('the nodes learned each other through the TLS store: every pod reaches the other node\'s pods', () => {
    for (const a of s.pods) {
      for (const b of s.pods.filter((p) => p.node !== a.node)) inNetns(a.netns, ['ping', '-c', '1', '-W', '2', b.ip!]);
    }
  });

  await t.test('lab etcd stop / start: the TLS etcd comes back (health on its metrics port) and the agents write to it again', async () => {
    await labOk(['lab', 'etcd', 'stop', '--name', name]);
    assert.equal((await labStatus(name)).etcd!.running, false);
    await labOk(['lab', 'etcd', 'start', '--name', name]);
    const added = JSON.parse((await labOk(['lab', 'add-pod', '--name', name, '--node', 'node-1', '-o', 'json'])).stdout);
    const other = s.pods.find((p) => p.node === 'node-2')!;
    // node-2 learns the new pod through the store, so its pod reaches it.
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        inNetns(other.netns, ['ping', '-c', '1', '-W', '1', added.ip]);
        break;
      } catch (e) {
        if (Date.now() > deadline) throw e;
      }
    }
  });

  await t.test('etcd refuses a client without a certificate, and answers one with it', { skip: skipUnless(existsSync('/usr/bin/curl'), 'curl is not installed') }, () => {
    const url = 'https://10.13.0.1:2379/v3/kv/range';
    const body = JSON.stringify({ key: Buffer.from('cilium/state/nodes/v1/').toString('base64'), range_end: Buffer.from('cilium/state/nodes/v10').toString('base64'), count_only: true });
    const bare = spawnSync('ip', ['netns', 'exec', underlayNetns(name), 'curl', '-sS', '--max-time', '5', '--cacert', `${pki}/ca.crt`, '-d', body, url], { encoding: 'utf8' });
    assert.notEqual(bare.status, 0, `without a client certificate curl fails (got ${bare.stdout})`);
    assert.doesNotMatch(bare.stdout, /count/);
    const ok = inNetns(underlayNetns(name), ['curl', '-sS', '--max-time', '5', '--cacert', `${pki}/ca.crt`, '--cert', `${pki}/client.crt`, '--key', `${pki}/client.key`, '-d', body, url]);
    assert.equal(JSON.parse(ok).count, String(s.nodes.length), 'with the certificate: both nodes\' keys');
  });
});
