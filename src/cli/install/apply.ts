// Writing and removing what plan.ts lists, under an optional root (packaging
// and tests: `--root R` writes R/etc/..., the files' contents still name the
// target system's paths). A manifest (/etc/membrane/install-manifest.json)
// records each file's sha256 and the directories install created, so:
//  - install is idempotent: a file already as planned is left alone;
//  - install overwrites only a file it wrote and nobody changed since (an
//    upgrade); any other file in the way is refused (E_INSTALL naming it),
//    before anything is written;
//  - uninstall removes exactly what install wrote (a file changed since is
//    kept and reported) and the directories it created, once empty.
// Each file is written to a temporary name beside it and renamed into place,
// so a runtime never reads half a conflist.
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, rmdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { MembraneError } from '../../shared/errors.ts';
import { MANIFEST, type PlannedFile } from './plan.ts';

interface Manifest {
  version: 1;
  files: { path: string; sha256: string }[];
  /** Directories install created (removed by uninstall when empty), deepest last. */
  dirs: string[];
}

export type FileAction = 'created' | 'updated' | 'unchanged';
export interface InstallReport { root: string; files: { path: string; what: string; action: FileAction }[] }
export interface UninstallReport { root: string; removed: string[]; kept: { path: string; why: string }[]; dirs: string[]; installed: boolean }

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const under = (root: string, path: string): string => (root === '/' ? path : `${root.replace(/\/$/, '')}${path}`);

function readManifest(root: string): Manifest | undefined {
  const p = under(root, MANIFEST);
  if (!existsSync(p)) return undefined;
  try {
    const m = JSON.parse(readFileSync(p, 'utf8')) as Manifest;
    if (m.version !== 1 || !Array.isArray(m.files) || !Array.isArray(m.dirs)) throw new Error('unknown layout');
    return m;
  } catch (e) {
    throw new MembraneError(`read install manifest ${p}`, { code: 'E_INSTALL', cause: (e as Error).message, hint: 'it is not install\'s: move it away and run install again' });
  }
}

function writeAtomic(path: string, content: Buffer, mode: number): void {
  const tmp = `${path}.membrane-tmp-${process.pid}`;
  try {
    writeFileSync(tmp, content, { mode });
    chmodSync(tmp, mode); // writeFileSync's mode is filtered by the umask
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new MembraneError(`install: write ${path}`, { code: 'E_INSTALL', cause: e });
  }
}

/** mkdir -p, returning the directories it created (outermost first). */
function mkdirs(dir: string): string[] {
  const made: string[] = [];
  let d = dir;
  while (!existsSync(d)) {
    made.unshift(d);
    d = dirname(d);
  }
  for (const m of made) {
    try {
      mkdirSync(m, { mode: 0o755 });
    } catch (e) {
      throw new MembraneError(`install: create directory ${m}`, { code: 'E_INSTALL', cause: e });
    }
  }
  return made;
}

/**
 * Writes `files` under `root`. Throws E_INSTALL, before writing anything, if
 * any target exists with other content and is not install's own unchanged
 * file (the message lists every such path).
 */
export function installFiles(root: string, files: PlannedFile[]): InstallReport {
  const manifest = readManifest(root) ?? { version: 1 as const, files: [], dirs: [] };
  const recorded = new Map(manifest.files.map((f) => [f.path, f.sha256]));
  const plan = files.map((f) => {
    const target = under(root, f.path);
    if (!existsSync(target)) return { f, target, action: 'created' as FileAction };
    if (!statSync(target).isFile()) return { f, target, action: 'conflict' as const, why: 'not a regular file' };
    const have = sha256(readFileSync(target));
    if (have === sha256(f.content)) return { f, target, action: 'unchanged' as FileAction };
    if (recorded.get(f.path) === have) return { f, target, action: 'updated' as FileAction };
    return { f, target, action: 'conflict' as const, why: recorded.has(f.path) ? 'changed since install wrote it' : 'not written by membrane install' };
  });
  const conflicts = plan.filter((p) => p.action === 'conflict');
  if (conflicts.length) {
    throw new MembraneError('install', {
      code: 'E_INSTALL',
      cause: conflicts.map((c) => `${c.target} is in the way (${'why' in c ? c.why : ''})`).join('; '),
      hint: 'install never overwrites a file it did not write: move it away (or remove it) and run install again',
    });
  }
  const dirs = [...manifest.dirs];
  const out: InstallReport = { root, files: [] };
  for (const p of plan) {
    for (const d of mkdirs(dirname(p.target))) {
      // Recorded as paths of the target system, like the files (the root itself is not install's).
      const sys = root === '/' ? d : d.slice(root.replace(/\/$/, '').length);
      if (sys.startsWith('/') && !dirs.includes(sys)) dirs.push(sys);
    }
    if (p.action !== 'unchanged') writeAtomic(p.target, p.f.content, p.f.mode);
    else if ((statSync(p.target).mode & 0o7777) !== p.f.mode) chmodSync(p.target, p.f.mode);
    recorded.set(p.f.path, sha256(p.f.content));
    out.files.push({ path: p.target, what: p.f.what, action: p.action as FileAction });
  }
  const next: Manifest = { version: 1, files: [...recorded].map(([path, h]) => ({ path, sha256: h })), dirs };
  const text = Buffer.from(`${JSON.stringify(next, null, 2)}\n`);
  const mf = under(root, MANIFEST);
  if (!existsSync(mf) || !readFileSync(mf).equals(text)) writeAtomic(mf, text, 0o600);
  return out;
}

/**
 * Removes what install recorded under `root`: its files (one changed since
 * is kept and reported), the manifest, then the directories install made if
 * they are empty. Nothing installed: a report with installed=false.
 */
export function uninstallFiles(root: string): UninstallReport {
  const manifest = readManifest(root);
  const report: UninstallReport = { root, removed: [], kept: [], dirs: [], installed: manifest !== undefined };
  if (!manifest) return report;
  for (const f of manifest.files) {
    const target = under(root, f.path);
    if (!existsSync(target)) continue;
    if (sha256(readFileSync(target)) !== f.sha256) {
      report.kept.push({ path: target, why: 'changed since install wrote it' });
      continue;
    }
    rmSync(target);
    report.removed.push(target);
  }
  rmSync(under(root, MANIFEST));
  for (const d of [...manifest.dirs].reverse()) {
    try {
      rmdirSync(under(root, d));
      report.dirs.push(under(root, d));
    } catch {
      // Not empty (someone else's files) or already gone: keep it.
    }
  }
  return report;
}

export { under as pathUnderRoot };
