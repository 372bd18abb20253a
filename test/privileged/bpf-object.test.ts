// Loading objects, constants, tail calls, map CRUD, pins and verifier errors
// against the real kernel (root). Nothing here touches a network device.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bpffsDir, counter, fixture, u32, u64 } from '../testdata/bpf/env.ts';
import {
  BpfMap, BpfObject, ElfObject, ensureBpffs, isBpffs, MAP_TYPE, possibleCpus, progTestRun, removePinTree, VerifierError,
} from '../../src/bpf/index.ts';
import { hasErrno } from '../../src/shared/errors.ts';
import { rootOnly } from '../helpers/skip.ts';

const skip = rootOnly('requires root (CAP_BPF, CAP_NET_ADMIN)');
const COUNTER = fixture('counter.o');
const BAD = fixture('bad.o');

/** Ethernet + IPv4 header (+ 8 bytes of ICMP) from 192.0.2.9 to `dst`. */
function ipv4Frame(dst: string, proto = 1): Buffer {
  const b = Buffer.alloc(14 + 20 + 8);
  b.writeUInt16BE(0x0800, 12);
  b[14] = 0x45;
  b.writeUInt16BE(28, 16);
  b[22] = 64;
  b[23] = proto;
  Buffer.from([192, 0, 2, 9]).copy(b, 26);
  Buffer.from(dst.split('.').map(Number)).copy(b, 30);
  return b;
}

function lpmKey(prefixlen: number, addr: string): Buffer {
  const k = Buffer.alloc(8);
  k.writeUInt32LE(prefixlen, 0);
  Buffer.from(addr.split('.').map(Number)).copy(k, 4);
  return k;
}

test('load: programs with ids, constants patched, tail call slot filled', { skip }, (t) => {
  const o = BpfObject.open(COUNTER, { constants: { COUNTER_SLOT: 3, MAGIC: 0xdeadbeefn, NODE_MAC: Buffer.from('0a0b0c0d0e0f', 'hex') } });
  t.after(() => o.close());
  assert.deepEqual([...o.programs.keys()], ['count_pkts', 'tail_1_mark', 'classify']);
  for (const p of o.programs.values()) {
    assert.ok(p.fd > 0 && p.id > 0, `${p.name} fd ${p.fd} id ${p.id}`);
    assert.equal(p.section, 'tc');
  }
  // the kernel's frozen .rodata holds the patched values
  assert.equal(o.constant('COUNTER_SLOT').readUInt32LE(0), 3);
  assert.equal(o.constant('MAGIC').readBigUInt64LE(0), 0xdeadbeefn);
  assert.equal(o.constant('NODE_MAC').toString('hex'), '0a0b0c0d0e0f');
  assert.equal(o.constant('LPM_MISS_RET').readUInt16LE(0), 77); // untouched default

  // cilium_calls[1] holds tail_1_mark (a PROG_ARRAY lookup returns the program id)
  const calls = o.map('cilium_calls');
  assert.equal(calls.lookup(u32(1))?.readUInt32LE(0), o.program('tail_1_mark').id);
  assert.equal(calls.lookup(u32(0)), undefined);
  assert.deepEqual(o.fillTailCalls(), [1]);

  // behaviour: count_pkts counts at COUNTER_SLOT and the tail call runs (slot 7)
  const counters = o.map('counters');
  const r = progTestRun(o.program('count_pkts').fd, ipv4Frame('192.0.2.1'), { repeat: 4 });
  assert.equal(r.retval, 0);
  assert.equal(counter(counters, 3), 4n);
  assert.equal(counter(counters, 0), 0n);
  assert.equal(counter(counters, 7), 4n);
});

test('constant visible in behaviour: LPM_MISS_RET patched changes the miss verdict', { skip }, (t) => {
  const a = BpfObject.open(COUNTER);
  const b = BpfObject.open(COUNTER, { constants: { LPM_MISS_RET: 99 } });
  t.after(() => { a.close(); b.close(); });
  const frame = ipv4Frame('198.51.100.1');
  assert.equal(progTestRun(a.program('classify').fd, frame).retval, 77);
  assert.equal(progTestRun(b.program('classify').fd, frame).retval, 99);
});

test('unknown constant: error lists the known ones, nothing loaded', { skip }, () => {
  assert.throws(() => BpfObject.open(COUNTER, { constants: { COUNTER_SLOTS: 1 } }), (e: any) =>
    e.code === 'E_BPF_CONST' && /unknown constant "COUNTER_SLOTS" \(known: COUNTER_SLOT \(4 bytes\), MAGIC \(8 bytes\), NODE_MAC \(6 bytes\), LPM_MISS_RET \(2 bytes\)\)/.test(e.message));
});

test('LPM trie: longest prefix from userspace and from the program', { skip }, (t) => {
  const o = BpfObject.open(COUNTER);
  t.after(() => o.close());
  const lpm = o.map('lpm');
  assert.equal(lpm.type, MAP_TYPE.LPM_TRIE);
  lpm.update(lpmKey(8, '10.0.0.0'), u32(100));
  lpm.update(lpmKey(16, '10.1.0.0'), u32(200));
  lpm.update(lpmKey(32, '10.1.2.3'), u32(300));
  const get = (ip: string) => lpm.lookup(lpmKey(32, ip))?.readUInt32LE(0);
  assert.equal(get('10.1.2.3'), 300);
  assert.equal(get('10.1.9.9'), 200);
  assert.equal(get('10.9.9.9'), 100);
  assert.equal(get('11.0.0.1'), undefined);
  // the same in the datapath: classify returns the LPM value of the destination
  assert.equal(progTestRun(o.program('classify').fd, ipv4Frame('10.1.9.9')).retval, 200);
  assert.equal(progTestRun(o.program('classify').fd, ipv4Frame('10.1.2.3')).retval, 300);
  // a non-IPv4 frame (ARP ethertype) is not classified
  const arp = ipv4Frame('10.1.2.3');
  arp.writeUInt16BE(0x0806, 12);
  assert.equal(progTestRun(o.program('classify').fd, arp).retval, 1);
  // deleting the /16 makes 10.1.9.9 fall back to the /8
  assert.equal(lpm.delete(lpmKey(16, '10.1.0.0')), true);
  assert.equal(lpm.delete(lpmKey(16, '10.1.0.0')), false);
  assert.equal(get('10.1.9.9'), 100);
  assert.equal([...lpm.keys()].length, 2);
});

test('hash and array CRUD: flags, errors, iteration', { skip }, (t) => {
  const o = BpfObject.open(COUNTER);
  t.after(() => o.close());
  const h = o.map('hash');
  assert.deepEqual([h.keySize, h.valueSize, h.maxEntries, h.type], [4, 8, 128, MAP_TYPE.HASH]);
  for (let i = 1; i <= 10; i++) h.update(u32(i), u64(i * 1000));
  assert.equal(h.lookup(u32(7))?.readBigUInt64LE(0), 7000n);
  assert.equal(h.lookup(u32(77)), undefined);
  const out = Buffer.alloc(8);
  assert.equal(h.lookupInto(u32(9), out), true);
  assert.equal(out.readBigUInt64LE(0), 9000n);
  assert.equal(h.lookupInto(u32(77), out), false);
  assert.throws(() => h.update(u32(7), u64(1), 'noexist'), (e) => hasErrno(e, 'EEXIST') && /update map hash: file exists/.test((e as Error).message));
  assert.throws(() => h.update(u32(77), u64(1), 'exist'), (e) => hasErrno(e, 'ENOENT'));
  h.update(u32(7), u64(7), 'exist');
  assert.equal(h.lookup(u32(7))?.readBigUInt64LE(0), 7n);
  assert.equal(h.delete(u32(7)), true);
  assert.equal(h.delete(u32(7)), false);
  const entries = new Map([...h.entries()].map(([k, v]) => [k.readUInt32LE(0), v.readBigUInt64LE(0)]));
  assert.equal(entries.size, 9);
  assert.equal(entries.get(3), 3000n);
  assert.throws(() => h.lookup(Buffer.alloc(3)), (e: any) => e.code === 'E_BPF_MAP' && /key is 3 bytes, map wants 4/.test(e.message));
  assert.throws(() => h.update(u32(1), Buffer.alloc(4)), /value is 4 bytes, map wants 8/);

  const a = o.map('counters');
  a.update(u32(5), u64(55));
  assert.equal(counter(a, 5), 55n);
  assert.equal([...a.keys()].length, 8); // arrays always have every key
  assert.throws(() => a.delete(u32(5)), (e) => hasErrno(e, 'EINVAL'));
  assert.throws(() => a.update(u32(8), u64(1)), (e) => hasErrno(e, 'E2BIG'));
});

test('per-CPU hash: one slot per possible CPU', { skip }, (t) => {
  const o = BpfObject.open(COUNTER);
  t.after(() => o.close());
  const m = o.map('proto_count');
  assert.equal(m.isPerCpu, true);
  assert.equal(m.valueBufferSize, 8 * possibleCpus()); // 4-byte values padded to 8
  progTestRun(o.program('classify').fd, ipv4Frame('10.0.0.1', 17), { repeat: 5 });
  const slots = m.lookupPerCpu(u32(17))!;
  assert.equal(slots.length, possibleCpus());
  assert.equal(slots.reduce((s, b) => s + b.readUInt32LE(0), 0), 5);
  m.update(u32(6), u32(42)); // one value, written to every CPU
  assert.deepEqual(m.lookupPerCpu(u32(6))!.map((b) => b.readUInt32LE(0)), Array(possibleCpus()).fill(42));
  assert.equal(m.lookupPerCpu(u32(99)), undefined);
});

test('handles die with the object; dup() outlives it', { skip }, () => {
  const o = BpfObject.open(COUNTER);
  const borrowed = o.map('hash');
  const kept = o.map('hash').dup();
  borrowed.update(u32(1), u64(11));
  o.close();
  o.close(); // idempotent
  assert.throws(() => borrowed.lookup(u32(1)), (e: any) => e.code === 'E_CLOSED');
  assert.throws(() => o.map('hash'), (e: any) => e.code === 'E_CLOSED');
  assert.equal(kept.lookup(u32(1))?.readBigUInt64LE(0), 11n);
  kept.close();
});

test('pins: pinRoot pins by-name maps and reuses them; mapPins; incompatible pin', { skip }, (t) => {
  const dir = bpffsDir(t, 'obj');
  const o1 = BpfObject.open(COUNTER, { pinRoot: `${dir}/globals`, mapPins: { hash: `${dir}/explicit/hash` } });
  t.after(() => o1.close());
  assert.ok(existsSync(`${dir}/globals/pinned_counters`));
  assert.ok(!existsSync(`${dir}/globals/counters`), 'maps without pinning stay unpinned');
  assert.ok(existsSync(`${dir}/explicit/hash`));
  o1.map('pinned_counters').update(u32(2), u64(222));

  // a second load shares the pinned maps
  const o2 = BpfObject.open(COUNTER, { pinRoot: `${dir}/globals`, mapPins: { hash: `${dir}/explicit/hash` } });
  t.after(() => o2.close());
  assert.equal(o2.map('pinned_counters').id, o1.map('pinned_counters').id);
  assert.equal(o2.map('hash').id, o1.map('hash').id);
  assert.notEqual(o2.map('counters').id, o1.map('counters').id);
  assert.equal(counter(o2.map('pinned_counters'), 2), 222n);
  const pinned = BpfMap.openPinned(`${dir}/globals/pinned_counters`);
  assert.equal(counter(pinned, 2), 222n);
  pinned.close();

  // an LPM trie cannot reuse an array pin: the error names the pin and the differences
  assert.throws(() => BpfObject.open(COUNTER, { mapPins: { lpm: `${dir}/globals/pinned_counters` } }), (e: any) =>
    e.code === 'E_BPF_PIN_INCOMPATIBLE' && e.message.includes(`reuse pinned map ${dir}/globals/pinned_counters`) &&
    /type array != lpm_trie/.test(e.message) && /key size 4 != 8/.test(e.message));
  assert.throws(() => BpfObject.open(COUNTER, { mapPins: { nope: `${dir}/x` } }), /no map "nope" to pin \(maps: counters, pinned_counters/);

  // 'replace' loads a fresh map and swaps the pin; the old map lives on for its users
  const o3 = BpfObject.open(COUNTER, { mapPins: { lpm: `${dir}/globals/pinned_counters` }, onIncompatiblePin: 'replace' });
  t.after(() => o3.close());
  const swapped = BpfMap.openPinned(`${dir}/globals/pinned_counters`);
  assert.equal(swapped.type, MAP_TYPE.LPM_TRIE);
  assert.equal(swapped.id, o3.map('lpm').id);
  swapped.close();
  assert.equal(counter(o1.map('pinned_counters'), 2), 222n);
});

test('bpffs checks: ensureBpffs explains how to mount; removePinTree refuses other filesystems', { skip }, (t) => {
  const dir = bpffsDir(t, 'fs');
  assert.equal(isBpffs(dir), true);
  ensureBpffs(`${dir}/a/b`);
  assert.ok(existsSync(`${dir}/a/b`));
  const plain = mkdtempSync(join(tmpdir(), 'mbt-notbpffs-'));
  t.after(() => rmSync(plain, { recursive: true, force: true }));
  assert.equal(isBpffs(plain), false);
  assert.throws(() => ensureBpffs(`${plain}/pins`), (e: any) =>
    e.code === 'E_BPFFS' && e.message.includes(`mount -t bpf bpffs ${plain}/pins`) && /ip netns exec/.test(e.message));
  assert.throws(() => removePinTree(plain), (e: any) => e.code === 'E_BPFFS');
  assert.ok(existsSync(plain));
  assert.throws(() => BpfObject.open(COUNTER, { pinRoot: `${plain}/pins` }), (e: any) => e.code === 'E_BPFFS');
});

test('verifier error: operation, program, reason, source line; full log kept', { skip }, () => {
  let err: unknown;
  try {
    BpfObject.open(BAD).close();
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof VerifierError, String(err));
  assert.equal(err.program, 'bad_deref');
  assert.equal(err.errnoName, 'EACCES');
  assert.match(err.message, /^load program bad_deref from bad\.o: permission denied \(EACCES\): verifier: /);
  assert.match(err.message, /R0 invalid mem access 'map_value_or_null'/);
  assert.match(err.message, /\(at bad\.c:\d+: return \*v == 42;\)/);
  assert.match(err.message, /\(\d+ lines omitted\)$/);
  assert.ok(err.log.some((l) => l.startsWith('processed ')), 'full log kept');
  assert.ok(err.libbpfLog.some((l) => l.includes("prog 'bad_deref'")));
});

test('verifier log larger than the buffer: load is retried with a big buffer', { skip }, () => {
  assert.throws(() => BpfObject.open(BAD, { logSize: 64 }), (e: any) =>
    e instanceof VerifierError && e.errnoName === 'EACCES' && /invalid mem access/.test(e.message));
});

test('logLevel 1 keeps the verifier log of successful loads', { skip }, (t) => {
  const o = BpfObject.open(COUNTER, { logLevel: 1 });
  t.after(() => o.close());
  assert.ok(o.program('classify').log.some((l) => /^processed \d+ insns/.test(l)));
});

test('libbpf output is captured, not printed: failures say it in the error instead', { skip }, () => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', fixture('load-quiet-child.ts'), COUNTER, BAD], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '');
  const [good, bad, missing] = JSON.parse(r.stdout) as string[];
  assert.equal(good, 'good loaded');
  assert.match(bad!, /load program bad_deref from bad\.o: permission denied \(EACCES\)/);
  // a missing file is caught by the ELF reader before libbpf is involved
  assert.match(missing!, /read bpf object .*bad\.o\.missing: ENOENT/);
});

test('libbpf refusals carry libbpf\'s own explanation', { skip }, (t) => {
  // a file that is ELF for our reader but that libbpf cannot open: truncate the BTF of a copy
  const dir = mkdtempSync(join(tmpdir(), 'mbt-badbtf-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const elf = ElfObject.fromFile(COUNTER);
  const btf = elf.section('.BTF')!;
  const bytes = readFileSync(COUNTER);
  bytes.writeUInt16LE(0x1234, btf.offset); // BTF magic
  writeFileSync(join(dir, 'badbtf.o'), bytes);
  assert.throws(() => BpfObject.open(join(dir, 'badbtf.o')), (e: any) =>
    e.code === 'E_BPF_LOAD' && /open bpf object .*badbtf\.o: bpf_object__open_file: .*\(libbpf: /.test(e.message) &&
    e.cause.libbpfLog.length > 0);
});
