// The node config's `store` mapping for etcd on real hosts: TLS files,
// username and password, several endpoints; every problem listed with its
// field, and the result frozen.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validateNodeConfig } from '../../src/shared/config.ts';
import { ConfigError } from '../../src/shared/errors.ts';

const base = { nodeName: 'node-1', routerIP: '10.244.2.1', podCIDR: '10.244.2.0/24' };

function problems(store: unknown): string[] {
  try {
    validateNodeConfig({ ...base, store });
  } catch (e) {
    assert.ok(e instanceof ConfigError, String(e));
    return e.problems;
  }
  return [];
}

test('etcd with TLS, a user and several endpoints is kept as given and frozen', () => {
  const store = {
    backend: 'etcd', endpoints: ['https://10.0.0.1:2379', 'https://10.0.0.2:2379', 'https://10.0.0.3:2379'],
    tls: { ca: '/etc/membrane/etcd/ca.crt', cert: '/etc/membrane/etcd/node.crt', key: '/etc/membrane/etcd/node.key' },
    username: 'membrane', passwordFile: '/etc/membrane/etcd/password',
  };
  const c = validateNodeConfig({ ...base, store });
  assert.deepEqual(c.store, store);
  assert.ok(Object.isFrozen(c.store));
  assert.ok(c.store.backend === 'etcd' && Object.isFrozen(c.store.tls));
});

test('each misconfiguration is named by its field', () => {
  assert.deepEqual(problems({ backend: 'etcd', endpoints: ['10.0.0.1:2379'] }), ['store.endpoints: must be a list of http(s)://host:port URLs (got ["10.0.0.1:2379"])']);
  assert.match(problems({ backend: 'etcd', endpoints: ['https://a:1', 'http://b:1'] }).join('\n'), /store\.endpoints: mixes http:\/\/ and https:\/\//);
  assert.match(problems({ backend: 'etcd', endpoints: ['http://a:1'], tls: { ca: '/ca.crt' } }).join('\n'), /store\.tls: given, but the endpoints are http:\/\//);
  assert.match(problems({ backend: 'etcd', endpoints: ['https://a:1'], tls: { cert: '/c.crt' } }).join('\n'), /store\.tls: cert without key/);
  assert.match(problems({ backend: 'etcd', endpoints: ['https://a:1'], tls: { ca: 'relative/ca.crt' } }).join('\n'), /store\.tls\.ca/);
  assert.match(problems({ backend: 'etcd', endpoints: ['https://a:1'], tls: { ca: '/ca', pem: '/x' } }).join('\n'), /store\.tls\.pem: unknown key/);
  assert.match(problems({ backend: 'etcd', endpoints: ['https://a:1'], username: 'u' }).join('\n'), /exactly one of store\.password and store\.passwordFile/);
  assert.match(problems({ backend: 'etcd', endpoints: ['https://a:1'], password: 'p' }).join('\n'), /store\.username: must be a non-empty string/);
  assert.match(problems({ backend: 'etcd', endpoints: ['https://a:1'], username: 'u', password: 'p', passwordFile: '/p' }).join('\n'), /exactly one/);
  assert.match(problems({ backend: 'sqlite', endpoints: ['https://a:1'] }).join('\n'), /store\.endpoints: unknown key for the sqlite store/);
  // Several problems at once: all listed.
  assert.equal(problems({ backend: 'etcd', endpoints: [], tls: { cert: '/c' }, password: 'p' }).length, 3);
});
