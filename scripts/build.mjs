// Builds the JavaScript that bin/membrane runs: src/cli/main.ts (and so the
// agent, which is `membrane agent`) bundled by esbuild into dist/cli/.
//
//   node scripts/build.mjs [--force]    (npm run build[:js]; scripts/up.sh and scripts/test.sh run it)
//
// Plain JavaScript, not TypeScript: the build must run before anything is
// built, without tsx. Choices, and why:
// - Code splitting: every `await import()` in the sources stays a separate
//   chunk, loaded only when reached, so `membrane --help` does not pay for
//   libbpf bindings and `status` does not pay for the agent.
// - Native and heavy packages stay external (loaded from node_modules at run
//   time): koffi and better-sqlite3 carry native code, etcd3 drags in grpc and
//   protobufjs, which load .proto files relative to their own directory.
//   yaml is bundled (it is plain JavaScript and only loaded where a file is parsed).
// - Output at dist/cli/*.js, two levels under the repository like src/<dir>/*.ts:
//   src/lab/layout.ts and src/datapath/objects.ts find the repository (bpf/*.o,
//   bin/) with new URL('../../', import.meta.url), which is then still right.
//   Chunks must therefore not go into a subdirectory; checked below.
// - Linked source maps without sources content: with --enable-source-maps
//   stack frames name src/**/*.ts lines (bin/membrane decides when; they cost
//   start time).
// - Up to date (no file under src/, nor this script, package.json or the lock
//   newer than dist/cli/.stamp): nothing to do, like make. The stamp carries
//   the time the build started, so a file saved during a build counts as newer.
// - Built next to dist/cli/ and swapped in with two renames: a command started
//   meanwhile finds the old build or the new one, never half of one, and a
//   process that loaded the old entry still finds every chunk whose content
//   did not change (chunk names are content hashes).
import { build } from 'esbuild';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..');
const outdir = join(repo, 'dist', 'cli');
const stampFile = join(outdir, '.stamp');

/** Packages loaded from node_modules at run time rather than bundled. */
export const EXTERNAL = ['koffi', 'better-sqlite3', 'etcd3'];

/** The first input newer than the stamp (directories count: a deleted file changes its directory), or undefined. */
function newerThanStamp() {
  if (!existsSync(stampFile)) return 'no build';
  const stamp = statSync(stampFile).mtimeMs;
  for (const f of ['scripts/build.mjs', 'package.json', 'package-lock.json']) {
    if (statSync(join(repo, f)).mtimeMs > stamp) return f;
  }
  const walk = (dir) => {
    if (statSync(dir).mtimeMs > stamp) return dir;
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      const hit = e.isDirectory() ? walk(p) : statSync(p).mtimeMs > stamp ? p : undefined;
      if (hit) return hit;
    }
    return undefined;
  };
  const hit = walk(join(repo, 'src'));
  return hit && relative(repo, hit);
}

const force = process.argv.includes('--force');
const why = force ? '--force' : newerThanStamp();
if (!why) {
  process.stderr.write('  BUILD  dist/cli: up to date\n');
  process.exit(0);
}

const startedAt = new Date();
const t0 = performance.now();
const tmp = join(repo, 'dist', `.cli-${process.pid}`);
rmSync(tmp, { recursive: true, force: true });
mkdirSync(tmp, { recursive: true });
try {
  const result = await build({
    absWorkingDir: repo,
    entryPoints: { membrane: 'src/cli/main.ts' },
    outdir: tmp,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    external: EXTERNAL,
    // Class and function names as written: errors print err.name (MembraneError, not esbuild's _MembraneError).
    keepNames: true,
    sourcemap: 'linked',
    sourcesContent: false,
    // Chunks flat next to the entry (see the header: the depth under the repository matters).
    chunkNames: '[name]-[hash]',
    metafile: true,
    logLevel: 'warning',
    // yaml (bundled) is CommonJS and calls require('process'); a bundle in ESM has no `require` of its own.
    banner: { js: "import { createRequire as __membraneRequire } from 'node:module'; const require = __membraneRequire(import.meta.url);" },
  });
  for (const f of Object.keys(result.metafile.outputs)) {
    if (dirname(join(repo, f)) !== tmp) throw new Error(`build: ${f}: written outside the output directory, which breaks new URL('../../', import.meta.url) in the sources`);
  }
  // Which chunk holds which modules and imports which, named as they will be
  // (dist/cli/...): test/unit/build.test.ts reads it to check what each command loads.
  const tmpRel = relative(repo, tmp);
  writeFileSync(join(tmp, 'meta.json'), JSON.stringify(result.metafile).replaceAll(`${tmpRel}/`, 'dist/cli/'));
  writeFileSync(join(tmp, '.stamp'), `built ${startedAt.toISOString()} (${why} was newer)\n`);
  utimesSync(join(tmp, '.stamp'), startedAt, startedAt);
  const old = join(repo, 'dist', `.old-${process.pid}`);
  if (existsSync(outdir)) renameSync(outdir, old);
  renameSync(tmp, outdir);
  rmSync(old, { recursive: true, force: true });
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
const files = readdirSync(outdir).filter((f) => f.endsWith('.js'));
process.stderr.write(`  BUILD  dist/cli: ${files.length} files in ${(performance.now() - t0).toFixed(0)} ms (${why} was newer)\n`);
