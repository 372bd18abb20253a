// Builds the JavaScript that bin/membrane runs: src/cli/main.ts (and so the
// agent, which is `membrane agent`) bundled by esbuild into dist/cli/.
//
//   node scripts/build.mjs          (npm run build; scripts/up.sh and scripts/test.sh run it)
//
// Plain JavaScript, not TypeScript: the build must run before anything is
// built, without tsx. Choices, and why:
// - Code splitting: every `await import()` in the sources stays a separate
//   chunk, loaded only when reached, so `membrane --help` does not pay for
//   libbpf bindings and `status` does not pay for the agent.
// - Native and heavy packages stay external (loaded from node_modules at run
//   time): koffi and better-sqlite3 carry native code, etcd3 drags in grpc and
//   protobufjs, which load .proto files relative to their own directory.
// - Output at dist/cli/*.js, two levels under the repository like src/<dir>/*.ts:
//   src/lab/layout.ts and src/datapath/objects.ts find the repository (bpf/*.o,
//   bin/) with new URL('../../', import.meta.url), which is then still right.
//   Chunks must therefore not go into a subdirectory; checked below.
// - Linked source maps without sources content: node --enable-source-maps
//   maps stack frames to src/**/*.ts (bin/membrane decides when to enable it).
// - dist/cli/.stamp is written last: bin/membrane refuses to run a build older
//   than any file under src/ (a half-written build has no fresh stamp either).
import { build } from 'esbuild';
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..');
const outdir = join(repo, 'dist', 'cli');

/** Packages loaded from node_modules at run time rather than bundled. */
export const EXTERNAL = ['koffi', 'better-sqlite3', 'etcd3'];

const t0 = performance.now();
// A clean directory: chunk names carry content hashes, so old chunks would pile up.
rmSync(join(repo, 'dist'), { recursive: true, force: true });
mkdirSync(outdir, { recursive: true });
const result = await build({
  absWorkingDir: repo,
  entryPoints: { membrane: 'src/cli/main.ts' },
  outdir,
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
  chunkNames: 'chunk-[name]-[hash]',
  metafile: true,
  logLevel: 'warning',
  // yaml (bundled) is CommonJS and calls require('process'); a bundle in ESM has no `require` of its own.
  banner: { js: "import { createRequire as __membraneRequire } from 'node:module'; const require = __membraneRequire(import.meta.url);" },
});

for (const f of Object.keys(result.metafile.outputs)) {
  if (dirname(join(repo, f)) !== outdir) throw new Error(`build: ${f}: written outside ${relative(repo, outdir)}/, which breaks new URL('../../', import.meta.url) in the sources`);
}
// Which chunk holds which modules and imports which: test/unit/build.test.ts reads it to check what each command loads.
writeFileSync(join(outdir, 'meta.json'), JSON.stringify(result.metafile));
const files = readdirSync(outdir).filter((f) => f.endsWith('.js'));
writeFileSync(join(outdir, '.stamp'), `${new Date().toISOString()}\n`);
process.stderr.write(`  BUILD  dist/cli: ${files.length} files in ${(performance.now() - t0).toFixed(0)} ms\n`);
