// Issue 8, fault 11 (the store's half): the cluster store holds every node's
// state, so its SQLite file and the -wal and -shm files SQLite makes beside
// it are root's alone (0600), in directories made 0700, whatever the umask;
// a store file an older build made 0644 is tightened when opened.
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { openStore } from '../../src/store/store.ts';

const root = mkdtempSync(join(tmpdir(), 'membrane-perms-'));
after(() => rmSync(root, { recursive: true, force: true }));
const mode = (p: string) => (statSync(p).mode & 0o777).toString(8);

test('a new sqlite store: directories 0700, db, -wal and -shm 0600 (umask 022)', async () => {
  const old = process.umask(0o022);
  try {
    const path = join(root, 'a', 'b', 'cluster.db');
    const s = await openStore({ backend: 'sqlite', path });
    try {
      await s.put('k', 'v'); // the -wal file gets written
      assert.equal(mode(join(root, 'a')), '700');
      assert.equal(mode(join(root, 'a', 'b')), '700');
      for (const f of [path, `${path}-wal`, `${path}-shm`]) assert.equal(mode(f), '600', f);
    } finally {
      await s.close();
    }
  } finally {
    process.umask(old);
  }
});

test('an existing store file readable by others is made 0600', async () => {
  const path = join(root, 'old.db');
  writeFileSync(path, '');
  chmodSync(path, 0o644);
  const s = await openStore({ backend: 'sqlite', path });
  try {
    await s.put('k', 'v');
    for (const f of [path, `${path}-wal`, `${path}-shm`]) assert.equal(mode(f), '600', f);
  } finally {
    await s.close();
  }
});
