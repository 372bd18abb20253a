// Generates src/datapath/maps/generated/bpf-tables.ts from the X-macro lists
// in bpf/lib (DROP_REASONS, TRACE_POINTS, TRACE_REASONS, SOURCE_FILES), so the
// C headers are the only place a drop reason, observation point, trace reason
// or source file id is written down.
//
// The C preprocessor is the parser: a small C input includes the headers and
// defines each list's entry macro to expand to one JSON object, and
// `clang -E -P` prints the result. Whatever the C build sees (macros, #if,
// line continuations) is what the tables get; no regex reads C here.
//
//   node --import tsx scripts/gen-bpf-tables.ts           write the module (make -C bpf tables does this)
//   node --import tsx scripts/gen-bpf-tables.ts --check   exit 1 if the committed module is stale
//
// CLANG names the compiler (default clang), as in bpf/Makefile.
import { execFileSync } from 'node:child_process';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
export const BPF_LIB_DIR = `${ROOT}bpf/lib`;
export const TABLES_MODULE = `${ROOT}src/datapath/maps/generated/bpf-tables.ts`;
export const REGENERATE_COMMAND = 'make -C bpf tables (or: node --import tsx scripts/gen-bpf-tables.ts)';

export interface CodeEntry { readonly value: number; readonly name: string; readonly text: string }
export interface SourceFileEntry { readonly id: number; readonly name: string }

export interface BpfTables {
  readonly dropReasons: readonly CodeEntry[];
  readonly tracePoints: readonly CodeEntry[];
  readonly traceReasons: readonly CodeEntry[];
  readonly sourceFiles: readonly SourceFileEntry[];
}

/** One X-macro list: which header defines it and what its entry macro's parameters are. */
interface ListSpec {
  key: keyof BpfTables;
  header: string;
  list: string;
  params: string[];
}

const LISTS: ListSpec[] = [
  { key: 'dropReasons', header: 'drop_reasons.h', list: 'DROP_REASONS', params: ['value', 'name', 'text'] },
  { key: 'tracePoints', header: 'trace_points.h', list: 'TRACE_POINTS', params: ['value', 'name', 'text'] },
  { key: 'traceReasons', header: 'trace_points.h', list: 'TRACE_REASONS', params: ['value', 'name', 'text'] },
  { key: 'sourceFiles', header: 'source_files.h', list: 'SOURCE_FILES', params: ['id', 'name'] },
];

// Marks the lines this script emits among the header's own expansions (enums,
// inline functions) in the preprocessor's output.
const MARK = 'MEMBRANE_GEN_TABLE';

/**
 * The C input: per list, an entry macro that expands to `, {"value": 132, "name": "DROP_X", "text": "..."}`
 * behind a `[null` sentinel, so a whole list becomes one JSON array on one output line.
 * `name` parameters that are C identifiers are stringized (#name); the others are string literals already.
 */
function cSource(libDir: string): string {
  // Absolute paths: a quoted include from stdin would otherwise look in the cwd first.
  const lines = [...new Set(LISTS.map((l) => `#include ${JSON.stringify(resolve(libDir, l.header))}`))];
  for (const l of LISTS) {
    const fields = l.params.map((p) => {
      const stringize = p === 'name' && l.key !== 'sourceFiles';
      return `"${p}": ${stringize ? `#${p}` : p}`;
    });
    lines.push(`#define __GEN_${l.list}(${l.params.join(', ')}) , { ${fields.join(', ')} }`);
    lines.push(`${MARK} ${l.key} [null ${l.list}(__GEN_${l.list})]`);
  }
  return lines.join('\n') + '\n';
}

function genError(what: string, cause: string): Error {
  return new Error(`generate bpf tables: ${what}: ${cause}`);
}

/** Runs the preprocessor on the headers in `libDir` and returns the lists, validated. */
export function extractTables(libDir = BPF_LIB_DIR, clang = process.env.CLANG ?? 'clang'): BpfTables {
  let out: string;
  try {
    out = execFileSync(clang, ['-E', '-P', '-target', 'bpf', '-I', libDir, '-x', 'c', '-'], {
      input: cSource(libDir), encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'],
    });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw genError(`run ${clang} -E on ${libDir}`, (e.stderr || e.message).trim());
  }
  const found = new Map<string, string>();
  for (const line of out.split('\n')) {
    const m = new RegExp(`^${MARK} (\\w+) (.*)$`).exec(line.trim());
    if (m) found.set(m[1]!, m[2]!);
  }
  const tables: Record<string, unknown[]> = {};
  for (const l of LISTS) {
    const where = `${l.list} in ${libDir}/${l.header}`;
    const text = found.get(l.key);
    if (text === undefined) throw genError(where, 'no expansion in the preprocessor output');
    // An undefined list macro is left as written: say so instead of "not JSON".
    if (text.includes(`${l.list}(__GEN_${l.list})`)) throw genError(where, `the header does not define ${l.list}`);
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      // e.g. a hex code, an escape JSON does not share (\x41, \a), or "a" "b" concatenation
      throw genError(where, `expansion is not JSON (${(err as Error).message}); keep codes decimal and texts plain "..." literals: ${text.slice(0, 200)}`);
    }
    const entries = (parsed as unknown[]).slice(1) as Record<string, unknown>[];
    if (entries.length === 0) throw genError(where, 'the list is empty');
    tables[l.key] = entries.map((e) => checkEntry(where, l, e));
  }
  return tables as unknown as BpfTables;
}

function checkEntry(where: string, l: ListSpec, e: Record<string, unknown>): CodeEntry | SourceFileEntry {
  const num = l.params[0]!;
  const n = e[num];
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) {
    throw genError(where, `entry ${JSON.stringify(e)}: ${num} is not a non-negative integer`);
  }
  if (typeof e.name !== 'string' || e.name === '') throw genError(where, `entry ${JSON.stringify(e)}: name is empty`);
  if (l.key === 'sourceFiles') return { id: n, name: e.name };
  if (!/^[A-Za-z_]\w*$/.test(e.name)) throw genError(where, `entry ${JSON.stringify(e)}: name is not a C identifier`);
  if (typeof e.text !== 'string') throw genError(where, `entry ${JSON.stringify(e)}: text is not a string`);
  return { value: n, name: e.name, text: e.text };
}

/** The TypeScript module for `tables`: deterministic, so a byte compare tells whether it is stale. */
export function renderTablesModule(t: BpfTables): string {
  const codes = (entries: readonly CodeEntry[], field: string) => entries
    .map((e) => `  { ${field}: ${e.value}, name: ${JSON.stringify(e.name)}, text: ${JSON.stringify(e.text)} },`).join('\n');
  return `// GENERATED FILE, DO NOT EDIT. Source: the X-macro lists in bpf/lib/drop_reasons.h,
// bpf/lib/trace_points.h and bpf/lib/source_files.h, expanded by the C
// preprocessor in scripts/gen-bpf-tables.ts.
// Regenerate: ${REGENERATE_COMMAND}.
// test/unit/maps-codes.test.ts fails when this file is stale.

export interface GeneratedCode { readonly value: number; readonly name: string; readonly text: string }
export interface GeneratedDropReason { readonly code: number; readonly name: string; readonly text: string }
export interface GeneratedSourceFile { readonly id: number; readonly name: string }

/** DROP_REASONS(DROP_REASON): code, C name, text. */
export const DROP_REASON_TABLE: readonly GeneratedDropReason[] = [
${codes(t.dropReasons, 'code')}
];

/** TRACE_POINTS(TRACE_POINT): value, C name, CLI text. */
export const TRACE_POINT_TABLE: readonly GeneratedCode[] = [
${codes(t.tracePoints, 'value')}
];

/** TRACE_REASONS(TRACE_REASON): value of enum trace_reason, C name, CLI text. */
export const TRACE_REASON_TABLE: readonly GeneratedCode[] = [
${codes(t.traceReasons, 'value')}
];

/** SOURCE_FILES(SOURCE_FILE): id, basename. */
export const SOURCE_FILE_TABLE: readonly GeneratedSourceFile[] = [
${t.sourceFiles.map((f) => `  { id: ${f.id}, name: ${JSON.stringify(f.name)} },`).join('\n')}
];
`;
}

/** The module as the headers say it should be now. */
export function generateTablesModule(libDir = BPF_LIB_DIR): string {
  return renderTablesModule(extractTables(libDir));
}

function main(args: string[]): number {
  const check = args.includes('--check');
  const unknown = args.filter((a) => a !== '--check');
  if (unknown.length) {
    process.stderr.write(`gen-bpf-tables: unknown argument ${unknown.join(' ')} (want --check or nothing)\n`);
    return 2;
  }
  const want = generateTablesModule();
  let have: string | undefined;
  try {
    have = readFileSync(TABLES_MODULE, 'utf8');
  } catch {
    have = undefined;
  }
  if (check) {
    if (have === want) return 0;
    process.stderr.write(`gen-bpf-tables: ${TABLES_MODULE} is stale: run ${REGENERATE_COMMAND}\n`);
    return 1;
  }
  // Always rewrite (same bytes if unchanged) so make sees the target newer
  // than the headers; write-then-rename so a failed run never leaves half a file.
  const tmp = `${TABLES_MODULE}.tmp`;
  writeFileSync(tmp, want);
  renameSync(tmp, TABLES_MODULE);
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    process.exitCode = main(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exitCode = 1;
  }
}
