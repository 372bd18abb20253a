// The CLI users run is the build (dist/cli/, by scripts/build.mjs), and it
// loads heavy dependencies only where they are used. Checked on the build
// itself: bin/membrane run from a copy of the installation without tsx or
// any TypeScript, the stale-build refusal, and esbuild's metafile for what
// each command's chunks pull in (a static import of the etcd client in a
// module the registry reads would fail here, naming the chunk).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { skipUnless } from '../helpers/skip.ts';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const DIST = join(REPO, 'dist/cli');
const BUILT = existsSync(join(DIST, '.stamp'));
const needsBuild = skipUnless(BUILT, 'dist/cli is not built: run npm run build (scripts/test.sh does)');

function run(bin: string, args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(bin, args, { encoding: 'utf8', timeout: 30_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/**
 * A copy of what an installation holds: bin/membrane, dist/cli/ and the
 * runtime dependencies, without tsx, esbuild or TypeScript, and (unless
 * `withSrc`) without src/. Removed when the test ends.
 */
function installation(t: { after: (fn: () => void) => void }): string {
  const root = join(tmpdir(), `membrane-build-test-${process.pid}-${Math.random().toString(36).slice(2, 8)}`);
  t.after(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(join(root, 'bin'), { recursive: true });
  cpSync(join(REPO, 'bin/membrane'), join(root, 'bin/membrane'));
  chmodSync(join(root, 'bin/membrane'), 0o755);
  cpSync(DIST, join(root, 'dist/cli'), { recursive: true, preserveTimestamps: true });
  mkdirSync(join(root, 'node_modules'));
  const devOnly = new Set(['tsx', 'esbuild', '@esbuild', 'typescript', '.bin']);
  for (const name of readdirSync(join(REPO, 'node_modules'))) {
    if (!devOnly.has(name)) symlinkSync(join(REPO, 'node_modules', name), join(root, 'node_modules', name));
  }
  return root;
}

describe('bin/membrane runs the build, never the TypeScript sources', () => {
  test('its command lines name dist/cli and no TypeScript or tsx', () => {
    const code = readFileSync(join(REPO, 'bin/membrane'), 'utf8').split('\n').filter((l) => !l.trimStart().startsWith('#')).join('\n');
    assert.match(code, /dist\/cli/);
    assert.doesNotMatch(code, /tsx|\.ts\b|--import|--loader/);
  });

  test('it works from an installation without tsx, esbuild, TypeScript or src/', { skip: needsBuild }, (t) => {
    const root = installation(t);
    const mine = run(join(root, 'bin/membrane'), ['--help']);
    assert.equal(mine.code, 0, mine.stderr);
    assert.equal(mine.stdout, run(join(REPO, 'bin/membrane'), ['--help']).stdout);
    assert.match(mine.stdout, /^usage: membrane <command>/);
    // A command whose run() loads further chunks (the config parser, yaml): it gets as far as reading the file.
    const agent = run(join(root, 'bin/membrane'), ['agent', '--config', join(root, 'no-such.yaml')]);
    assert.match(agent.stderr, /^membrane agent: .*no-such\.yaml/);
    assert.doesNotMatch(agent.stderr, /ERR_MODULE_NOT_FOUND|Cannot find/);
  });

  test('a build older than a source file, or none, is refused with E_NOT_BUILT and the command that fixes it', { skip: needsBuild }, (t) => {
    const root = installation(t);
    mkdirSync(join(root, 'src/agent'), { recursive: true });
    const src = join(root, 'src/agent/daemon.ts');
    writeFileSync(src, '');
    // Times relative to the stamp's (the build's start, copied with it). Directories count too (a deleted source changes its directory's mtime).
    const stamp = statSync(join(root, 'dist/cli/.stamp')).mtimeMs;
    const old = new Date(stamp - 60_000);
    for (const p of [src, join(root, 'src/agent'), join(root, 'src')]) utimesSync(p, old, old);
    assert.equal(run(join(root, 'bin/membrane'), ['--help']).code, 0, 'sources older than the build: it runs');

    const later = new Date(stamp + 60_000);
    utimesSync(src, later, later);
    const stale = run(join(root, 'bin/membrane'), ['--help']);
    assert.equal(stale.code, 1);
    assert.equal(stale.stdout, '');
    assert.equal(stale.stderr, `membrane: run ${root}/dist/cli/membrane.js: the build is older than src/agent/daemon.ts (E_NOT_BUILT)\nhint: build it: npm run build (in ${root})\n`);

    rmSync(join(root, 'dist/cli/.stamp'));
    const none = run(join(root, 'bin/membrane'), ['--help']);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /^membrane: run .*\/dist\/cli\/membrane\.js: not built \(E_NOT_BUILT\)\nhint: build it: npm run build/);
  });
});

interface MetaOutput {
  entryPoint?: string;
  inputs: Record<string, unknown>;
  imports: { path: string; kind: string; external?: boolean }[];
}

describe('heavy dependencies load only where they are used (dist/cli/meta.json)', { skip: needsBuild }, () => {
  const outputs = BUILT ? (JSON.parse(readFileSync(join(DIST, 'meta.json'), 'utf8')) as { outputs: Record<string, MetaOutput> }).outputs : {};
  const chunkOf = (entry: string): string => {
    const f = Object.keys(outputs).find((o) => outputs[o]!.entryPoint === entry);
    assert.ok(f, `no chunk for ${entry}: is it still imported with await import()?`);
    return f;
  };
  /** What loading these chunks loads: every chunk reached through static imports, their modules and external packages. */
  const closure = (entries: string[]) => {
    const files = new Set<string>();
    const visit = (f: string): void => {
      if (files.has(f)) return;
      files.add(f);
      for (const i of outputs[f]!.imports) if (!i.external && i.kind === 'import-statement') visit(i.path);
    };
    for (const e of entries) visit(chunkOf(e));
    const modules = [...files].flatMap((f) => Object.keys(outputs[f]!.inputs));
    const packages = [...files].flatMap((f) => outputs[f]!.imports.filter((i) => i.external && i.kind === 'import-statement' && !i.path.startsWith('node:')).map((i) => `${i.path} (in ${f})`));
    return { modules, packages };
  };
  const heavy = (modules: string[], prefixes: string[]) => modules.filter((m) => prefixes.some((p) => m.startsWith(p)));

  test('the registry (every command line, --help) loads neither kernel bindings, the store, the agent, nor yaml', () => {
    const c = closure(['src/cli/main.ts']);
    assert.ok(c.modules.includes('src/cli/commands/index.ts'), 'the check sees the registry');
    assert.deepEqual(c.packages, []);
    assert.deepEqual(heavy(c.modules, ['node_modules/', 'src/bpf/', 'src/netlink/', 'src/datapath/', 'src/store/', 'src/agent/', 'src/api/', 'src/connectivity/', 'src/shared/config.ts', 'src/shared/libc.ts']), []);
  });

  test('status and the agent\'s listings load netlink (to find the node) but not libbpf, a store or yaml', () => {
    const c = closure(['src/cli/main.ts', 'src/api/client.ts', 'src/datapath/node-marker.ts']);
    assert.deepEqual(c.packages.filter((p) => !p.startsWith('koffi ')), []);
    assert.deepEqual(heavy(c.modules, ['node_modules/', 'src/bpf/', 'src/store/', 'src/agent/', 'src/shared/config.ts']), []);
  });

  test('the etcd client and SQLite are loaded by their store backends alone', () => {
    for (const [pkg, backend] of [['etcd3', 'src/store/etcd-store.ts'], ['better-sqlite3', 'src/store/sqlite-store.ts']] as const) {
      const importers = Object.keys(outputs).filter((f) => outputs[f]!.imports.some((i) => i.external && i.path === pkg));
      assert.ok(importers.length > 0, `the check sees ${pkg}`);
      assert.deepEqual(importers.filter((f) => !(backend in outputs[f]!.inputs) || outputs[f]!.entryPoint !== backend), [], `${pkg} outside ${backend}'s own chunk`);
    }
  });
});
