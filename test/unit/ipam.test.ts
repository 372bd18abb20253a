// IPAM over a pod CIDR: reserved addresses, exhaustion, restore, and no early reuse.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Ipam } from '../../src/agent/ipam.ts';

test('never hands out network, broadcast or router addresses, and says when the pool is exhausted', () => {
  const ipam = new Ipam('10.1.0.0/29', '10.1.0.1');
  const got = Array.from({ length: ipam.capacity }, (_, i) => ipam.allocate(`c${i}`));
  assert.deepEqual(got, ['10.1.0.2', '10.1.0.3', '10.1.0.4', '10.1.0.5', '10.1.0.6']);
  assert.throws(() => ipam.allocate('extra'), (e: any) => e.code === 'E_IPAM_EXHAUSTED' && /pool 10\.1\.0\.0\/29 exhausted \(5\/5 in use\)/.test(e.message));
});

test('a released IP is the last one reused, and never given to two owners', () => {
  const ipam = new Ipam('10.1.0.0/28', '10.1.0.1');
  const a = ipam.allocate('a');
  ipam.allocate('b');
  assert.equal(ipam.release(a, 'a'), true);
  assert.equal(ipam.release(a, 'a'), false, 'second release is a no-op');
  const next = ipam.allocate('c');
  assert.notEqual(next, a, 'the cursor moves on instead of reusing the released address');
  assert.throws(() => ipam.claim(next, 'd'), /already allocated to c/);
});

test('restores from a snapshot with the same owners and cursor', () => {
  const ipam = new Ipam('10.1.0.0/24', '10.1.0.1');
  ipam.allocate('a');
  ipam.allocate('b');
  const again = new Ipam('10.1.0.0/24', '10.1.0.1', ipam.snapshot());
  assert.equal(again.ownerOf('10.1.0.2'), 'a');
  assert.equal(again.allocate('c'), '10.1.0.4');
  assert.throws(() => again.claim('10.1.0.1', 'x'), /not allocatable/);
});
