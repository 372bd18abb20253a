// Source-level rules of the C datapath that the compiler cannot enforce:
// one drop exit per program, drops only with listed reasons, no raw cb[]
// access (verifier workaround), headers with SPDX line and #pragma once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { DROP_REASONS } from '../../src/datapath/maps/drop-reasons.ts';

const BPF = fileURLToPath(new URL('../../bpf/', import.meta.url));
const programFiles = readdirSync(BPF).filter((f) => /^bpf_.*\.c$/.test(f) && f !== 'bpf_alignchecker.c');
const libHeaders = readdirSync(`${BPF}lib`).filter((f) => f.endsWith('.h')).map((f) => `lib/${f}`);
const includeHeaders = readdirSync(`${BPF}include`, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.h')).map((f) => `include/${f}`);
const read = (f: string): string => readFileSync(`${BPF}${f}`, 'utf8');

/** Bodies of every program in a .c file: SEC("tc") functions and __declare_tail() definitions. */
function programs(src: string): { name: string; body: string }[] {
  const out: { name: string; body: string }[] = [];
  const re = /SEC\("tc"\)\s*int (\w+)\(|__declare_tail\((\w+), (\w+)\)/g;
  for (const m of src.matchAll(re)) {
    const name = m[1] ?? `tail ${m[2]} ${m[3]}`;
    let i = src.indexOf('{', m.index! + m[0].length);
    const start = i;
    let depth = 0;
    for (; i < src.length; i++) {
      if (src[i] === '{') depth++;
      else if (src[i] === '}' && --depth === 0) break;
    }
    out.push({ name, body: src.slice(start, i + 1) });
  }
  return out;
}

test('every program has exactly one exit through ctx_finish()', () => {
  let n = 0;
  for (const f of programFiles) {
    for (const p of programs(read(f))) {
      n++;
      const exits = p.body.match(/\bctx_finish\(/g)?.length ?? 0;
      assert.equal(exits, 1, `${f} ${p.name}: ctx_finish() calls`);
      assert.match(p.body.trim().split('\n').slice(-2).join('\n'), /return ctx_finish\(/, `${f} ${p.name} ends in return ctx_finish(...)`);
    }
  }
  assert.equal(n, 12, 'programs found in bpf_lxc.c, bpf_host.c, bpf_overlay.c');
});

test('only the drop exit returns TC_ACT_SHOT', () => {
  for (const f of [...programFiles, ...libHeaders]) {
    const uses = read(f).split('\n').filter((l) => /TC_ACT_SHOT/.test(l) && !/^\s*(\/?\*|\/\/)/.test(l));
    if (f === 'lib/drop.h') assert.equal(uses.length, 1, 'drop.h returns TC_ACT_SHOT once');
    else assert.deepEqual(uses, [], `${f} must return DROP(reason), not TC_ACT_SHOT`);
  }
});

test('every DROP() names a reason from drop_reasons.h', () => {
  const known = new Set(DROP_REASONS.map((r) => r.name));
  let n = 0;
  for (const f of [...programFiles, ...libHeaders]) {
    for (const m of read(f).matchAll(/\bDROP(?:_EXT)?\((?:ctx, )?(\w+)/g)) {
      if (m[1] === 'reason') continue; // the macro definitions themselves
      n++;
      assert.ok(known.has(m[1]), `${f}: unknown drop reason ${m[1]}`);
    }
  }
  assert.ok(n >= 15, `found ${n} drop sites`);
});

test('skb->cb[] is only touched through ctx_store_meta/ctx_load_meta', () => {
  for (const f of [...programFiles, ...libHeaders]) {
    if (f === 'lib/common.h') continue;
    assert.doesNotMatch(read(f), /->cb\[\w/, `${f}: use ctx_store_meta/ctx_load_meta ("dereference of modified ctx ptr")`);
  }
});

test('every file has an SPDX line; headers have #pragma once and an opening paragraph', () => {
  for (const f of [...programFiles, 'bpf_alignchecker.c', ...libHeaders, ...includeHeaders]) {
    const src = read(f);
    assert.match(src.split('\n')[0], /^\/\/ SPDX-License-Identifier: /, `${f}: SPDX line`);
    assert.match(src, /^\/\* \S/m, `${f}: opening comment`);
    if (f.endsWith('.h')) assert.match(src, /^#pragma once$/m, `${f}: #pragma once`);
  }
});
