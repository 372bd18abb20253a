// Pure pieces of the bpf layer: verifier log summaries, CPU lists, option
// struct encoders (offsets checked against the libbpf 1.4.6 headers).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { summarizeVerifierLog, VerifierError } from '../../src/bpf/verifier-error.ts';
import { parseCpuList } from '../../src/bpf/cpus.ts';
import {
  decodeLinkInfo, decodeMapInfo, decodeProgInfo, decodeTcOpts, encodeProgQueryOpts, encodeTcHook, encodeTcOpts, encodeTestRunOpts, mapTypeName,
} from '../../src/bpf/native/structs.ts';

// A real log from the bad.o fixture on Linux 6.18.
const LOG = `0: R1=ctx() R10=fp0
; int bad_deref(struct __sk_buff *skb) @ bad.c:23
0: (b4) w1 = 0                        ; R1=0
; __u32 key = 0; @ bad.c:25
1: (63) *(u32 *)(r10 -4) = r1         ; R1=0 R10=fp0 fp-8=0000????
2: (bf) r2 = r10                      ; R2=fp0 R10=fp0
;  @ bad.c:0
3: (07) r2 += -4                      ; R2=fp-4
; __u64 *v = bpf_map_lookup_elem(&values, &key); @ bad.c:26
4: (18) r1 = 0xffff888109b60800       ; R1=map_ptr(map=values,ks=4,vs=8)
6: (85) call bpf_map_lookup_elem#1    ; R0=map_value_or_null(id=1,map=values,ks=4,vs=8)
; return *v == 42; @ bad.c:27
7: (79) r1 = *(u64 *)(r0 +0)
R0 invalid mem access 'map_value_or_null'
processed 7 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0
`.split('\n').slice(0, -1);

test('verifier log summary: failing instruction, reason, source line, omitted count', () => {
  const s = summarizeVerifierLog(LOG);
  assert.deepEqual(s.lines, ['7: (79) r1 = *(u64 *)(r0 +0)', "R0 invalid mem access 'map_value_or_null'"]);
  assert.equal(s.source, 'bad.c:27: return *v == 42;');
  assert.equal(s.omitted, LOG.length - 3);
});

test('VerifierError message: operation, program, errno, summary; log kept whole', () => {
  const e = new VerifierError('load program bad_deref from bad.o', 'bad_deref', -13, LOG);
  assert.equal(e.message,
    "load program bad_deref from bad.o: permission denied (EACCES): verifier: 7: (79) r1 = *(u64 *)(r0 +0) | " +
    "R0 invalid mem access 'map_value_or_null' (at bad.c:27: return *v == 42;) (12 lines omitted)");
  assert.equal(e.code, 'E_BPF_VERIFIER');
  assert.equal(e.errnoName, 'EACCES');
  assert.equal(e.log.length, LOG.length);
  assert.match(new VerifierError('load program x from y.o', 'x', -22, []).message, /invalid argument \(EINVAL\): no verifier log$/);
});

test('cpu lists', () => {
  assert.equal(parseCpuList('0-1\n'), 2);
  assert.equal(parseCpuList('0'), 1);
  assert.equal(parseCpuList('0-3,8-11,14'), 9);
  assert.throws(() => parseCpuList('0-x'), /bad range/);
});

test('tc hook/opts layout (libbpf 1.4: 24 and 32 bytes)', () => {
  const h = encodeTcHook(7, 3);
  assert.equal(h.length, 24);
  assert.deepEqual([h.readBigUInt64LE(0), h.readInt32LE(8), h.readInt32LE(12)], [24n, 7, 3]);
  const o = encodeTcOpts({ progFd: 9, flags: 1, handle: 1, priority: 1 });
  assert.equal(o.length, 32);
  assert.deepEqual(decodeTcOpts(o), { progFd: 9, flags: 1, progId: 0, handle: 1, priority: 1 });
});

test('prog query and test run opts put pointers and sizes at the header offsets', () => {
  const q = encodeProgQueryOpts({ progIds: 0x1000n, linkIds: 0x2000n, count: 64 });
  assert.deepEqual([q.length, q.readBigUInt64LE(16), q.readUInt32LE(24), q.readBigUInt64LE(40)], [64, 0x1000n, 64, 0x2000n]);
  const t = encodeTestRunOpts({ dataIn: 0x10n, dataSizeIn: 60, dataOut: 0x20n, dataSizeOut: 600, repeat: 5 });
  assert.deepEqual([t.length, t.readBigUInt64LE(8), t.readBigUInt64LE(16), t.readUInt32LE(24), t.readUInt32LE(28), t.readInt32LE(60)],
    [80, 0x10n, 0x20n, 60, 600, 5]);
});

test('info decoders', () => {
  const p = Buffer.alloc(256);
  p.writeUInt32LE(3, 0); p.writeUInt32LE(42, 4); p.write('count_pkts', 64); p.writeUInt32LE(5, 128);
  assert.deepEqual(decodeProgInfo(p), { type: 3, id: 42, tag: '0000000000000000', name: 'count_pkts', btfId: 5, funcInfoRecSize: 0, nrFuncInfo: 0 });
  const m = Buffer.alloc(128);
  m.writeUInt32LE(11, 0); m.writeUInt32LE(8, 8); m.writeUInt32LE(64, 16); m.writeUInt32LE(1, 20); m.write('lpm', 24);
  assert.equal(decodeMapInfo(m).name, 'lpm');
  assert.equal(mapTypeName(decodeMapInfo(m).type), 'lpm_trie');
  const l = Buffer.alloc(128);
  l.writeUInt32LE(11, 0); l.writeUInt32LE(3, 4); l.writeUInt32LE(210, 8); l.writeUInt32LE(2, 16); l.writeUInt32LE(46, 20);
  assert.deepEqual(decodeLinkInfo(l), { type: 11, id: 3, progId: 210, tcxIfindex: 2, tcxAttachType: 46 });
});
