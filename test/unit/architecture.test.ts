// The layering docs/architecture.md describes, checked on the sources: who
// may import whom, that kernel access stays in src/netlink and src/bpf
// behind src/datapath, and that the MEMBRANE_* switches are read in one
// place and documented. A new import across a line fails here, naming the
// file and the import.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ENV_VARS } from '../../src/shared/env.ts';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const SRC = join(REPO, 'src');

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    return e.isDirectory() ? sources(p) : e.name.endsWith('.ts') ? [p] : [];
  });
}

/** Top-level directory under src/ of a path ("agent", "datapath", ...). */
const layer = (p: string): string => relative(SRC, p).split('/')[0]!;

interface Import { file: string; target: string; from: string; to: string }

/** Every relative import (static, type-only and dynamic) of every file in src/. */
function imports(): Import[] {
  const out: Import[] = [];
  for (const file of sources(SRC)) {
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/(?:from\s+|import\s*\(\s*|^import\s+)'(\.[^']+)'/gm)) {
      const target = resolve(dirname(file), m[1]!);
      out.push({ file: relative(REPO, file), target: relative(REPO, target), from: layer(file), to: layer(target) });
    }
  }
  return out;
}

/** Which layers each layer may import (besides itself). */
const ALLOWED: Record<string, string[]> = {
  shared: [],
  netlink: ['shared'],
  bpf: ['shared'],
  store: ['shared'],
  datapath: ['netlink', 'bpf', 'shared'],
  cni: ['shared'],
  api: ['shared'],
  // The policy engine is pure: documents, selectors and policy map contents from policies and identities.
  policy: ['shared'],
  // The agent decides state; the datapath decides what it means in the kernel. It serves the API and the CNI handler.
  agent: ['datapath', 'store', 'shared', 'api', 'cni', 'policy'],
  lab: ['agent', 'api', 'cni', 'datapath', 'shared', 'netlink'],
  connectivity: ['agent', 'api', 'datapath', 'lab', 'shared'],
  // The web UI's server reads the agents' APIs and, in each node's netns, what `datapath explain` reads.
  ui: ['api', 'datapath', 'shared'],
  cli: ['agent', 'api', 'connectivity', 'datapath', 'lab', 'shared', 'policy', 'ui'],
};

/** The one place outside src/datapath that uses src/netlink: the lab builds the machines (netns, bridge, veths), not a node's datapath. */
const NETLINK_OUTSIDE_DATAPATH = new Set(['src/lab/namespaces.ts']);

test('every layer imports only the layers below it', () => {
  const bad = imports().filter((i) => i.from !== i.to && !(ALLOWED[i.from] ?? []).includes(i.to));
  assert.deepEqual(bad.map((i) => `${i.file} imports ${i.target}`), []);
});

test('src/agent never touches the kernel layers; only src/datapath uses src/bpf and src/netlink', () => {
  const all = imports();
  assert.ok(all.some((i) => i.from === 'agent' && i.to === 'datapath'), 'the check sees the agent\'s imports');
  const kernel = all.filter((i) => (i.to === 'bpf' || i.to === 'netlink') && i.from !== i.to
    && i.from !== 'datapath' && !(i.to === 'netlink' && NETLINK_OUTSIDE_DATAPATH.has(i.file)));
  assert.deepEqual(kernel.map((i) => `${i.file} imports ${i.target}`), []);
});

test('benchmarks use the product\'s own runners, never test helpers', () => {
  const bench = sources(join(REPO, 'bench'));
  assert.ok(bench.length > 3, 'the check sees the benchmarks');
  const bad = bench.flatMap((file) => [...readFileSync(file, 'utf8').matchAll(/(?:from\s+|import\s*\(\s*)'(\.[^']+)'/g)]
    .map((m) => relative(REPO, resolve(dirname(file), m[1]!)))
    .filter((target) => target.startsWith('test/'))
    .map((target) => `${relative(REPO, file)} imports ${target}`));
  assert.deepEqual(bad, []);
});

test('MEMBRANE_* switches are read only in src/shared/env.ts, and each is documented', () => {
  // A read is a property access: env.MEMBRANE_X or env['MEMBRANE_X'] (help texts may name them).
  const readers = sources(SRC).filter((f) => /\.MEMBRANE_[A-Z_]+|\[['"]MEMBRANE_/.test(readFileSync(f, 'utf8')));
  assert.deepEqual(readers.map((f) => relative(REPO, f)), ['src/shared/env.ts']);
  const doc = readFileSync(join(REPO, 'docs/environment.md'), 'utf8');
  for (const name of Object.keys(ENV_VARS)) assert.match(doc, new RegExp(`\`${name}\``), `${name} is in docs/environment.md`);
  // And the doc names no switch the code does not read (the plugin's and the test runner's are listed apart).
  const documented = new Set([...doc.matchAll(/`(MEMBRANE_[A-Z_]+)`/g)].map((m) => m[1]!));
  const elsewhere = new Set(['MEMBRANE_CNI_TIMEOUT_MS', 'MEMBRANE_TEST_STRICT']);
  assert.deepEqual([...documented].filter((n) => !(n in ENV_VARS) && !elsewhere.has(n)), []);
});
