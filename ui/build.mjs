// Builds the web UI (ui/src, index.html, app.css) into ui/dist, which
// `membrane ui` serves. esbuild bundles the TypeScript (already a dependency
// of the project's build: no second bundler to install); the page uses no
// framework, so the bundle is the app alone. Up to date (no input newer than
// ui/dist/.stamp) means nothing to do, like scripts/build.mjs.
//
//   node ui/build.mjs [--force]      (npm run build runs it)
import { build } from 'esbuild';
import { copyFileSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ui = dirname(fileURLToPath(import.meta.url));
const out = join(ui, 'dist');
const stamp = join(out, '.stamp');
const inputs = ['build.mjs', 'index.html', 'app.css', ...readdirSync(join(ui, 'src')).map((f) => `src/${f}`)];

if (!process.argv.includes('--force') && existsSync(stamp)) {
  const t = statSync(stamp).mtimeMs;
  if (inputs.every((f) => statSync(join(ui, f)).mtimeMs <= t) && statSync(join(ui, 'src')).mtimeMs <= t) {
    process.stderr.write('  BUILD  ui/dist: up to date\n');
    process.exit(0);
  }
}
const started = Date.now();
const tmp = join(ui, `.dist-${process.pid}`);
rmSync(tmp, { recursive: true, force: true });
mkdirSync(tmp, { recursive: true });
try {
  await build({
    absWorkingDir: ui,
    entryPoints: { app: 'src/main.ts' },
    outdir: tmp,
    bundle: true,
    format: 'esm',
    target: 'es2022',
    minify: true,
    sourcemap: 'linked',
    logLevel: 'warning',
  });
  copyFileSync(join(ui, 'index.html'), join(tmp, 'index.html'));
  copyFileSync(join(ui, 'app.css'), join(tmp, 'app.css'));
  // The stamp carries the time the build started: a file saved during the build counts as newer.
  writeFileSync(join(tmp, '.stamp'), `${new Date(started).toISOString()}\n`);
  utimesSync(join(tmp, '.stamp'), new Date(started), new Date(started));
  // Swapped in whole: a server reading meanwhile finds the old app or the new one.
  const old = join(ui, `.old-${process.pid}`);
  if (existsSync(out)) renameSync(out, old);
  renameSync(tmp, out);
  rmSync(old, { recursive: true, force: true });
} catch (e) {
  rmSync(tmp, { recursive: true, force: true });
  throw e;
}
process.stderr.write(`  BUILD  ui/dist (${Date.now() - started} ms)\n`);
