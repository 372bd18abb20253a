// Writes docs/errors.md from the error-code catalogue (src/shared/error-codes.ts),
// so the catalogue stays the only place a code's meaning and mappings are written.
//   node --import tsx scripts/gen-errors-doc.ts           rewrite docs/errors.md
//   node --import tsx scripts/gen-errors-doc.ts --check   exit 1 if it is out of date
// test/unit/error-codes.test.ts runs the same comparison.
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  CATALOGUE, CNI_CODES, CNI_SHIM_ERRORS, ERROR_CODES, EXIT_MEANINGS, Exit,
  type ErrorArea, type ErrorCode,
} from '../src/shared/error-codes.ts';

export const ERRORS_DOC = fileURLToPath(new URL('../docs/errors.md', import.meta.url));
export const REGENERATE = 'node --import tsx scripts/gen-errors-doc.ts';

const AREAS: Record<ErrorArea, string> = {
  general: 'General',
  cli: 'Command line',
  api: 'Agent API',
  cni: 'CNI requests',
  agent: 'Agent and endpoints',
  store: 'Cluster store and identities',
  datapath: 'Datapath',
  bpf: 'BPF objects, maps and pins',
  netlink: 'Netlink',
  lab: 'Lab',
};

/** A table cell: no line breaks, pipes escaped. */
function cell(s: string | number): string {
  return String(s).replace(/\n/g, ' ').replace(/\|/g, '\\|');
}

function row(cells: (string | number)[]): string {
  return `| ${cells.map(cell).join(' | ')} |`;
}

function cniTitle(n: number): string {
  return Object.values(CNI_CODES).find((c) => c.code === n)?.title ?? '';
}

/** docs/errors.md as it should be. */
export function renderErrorsDoc(): string {
  const out: string[] = [];
  const p = (...lines: string[]) => out.push(...lines);

  p('# Error codes', '',
    `<!-- Generated from src/shared/error-codes.ts by scripts/gen-errors-doc.ts. Do not edit: change the catalogue, then run \`${REGENERATE}\`. -->`, '',
    'This file is generated from the error-code catalogue, `src/shared/error-codes.ts`,',
    `by \`${REGENERATE}\`; a unit test fails when the two differ.`, '',
    'Every error membrane reports carries one of the codes below. The code decides',
    'what each surface answers:', '',
    '- **CLI** (`membrane ...`): one line on stderr (`membrane COMMAND: operation subject: cause`), a `hint:` line when there is one, and the exit code. `--verbose` adds the cause chain with each level\'s code, e.g. `caused by MembraneError [E_USAGE]: unknown flag --frob`.',
    '- **Agent API** (HTTP on `<stateDir>/agent.sock`): the HTTP status, and a JSON body `{"code", "message", "hint"}`. The CLI keeps the agent\'s code; a code it does not know becomes `E_API`.',
    '- **CNI plugin**: the `code` of the CNI error object on stdout, exit status 1. `details` lists the cause chain with the codes (`docs/cni.md`, "Error codes"). The plugin binary also answers a few errors by itself, without the agent: see [the last section](#answered-by-the-cni-plugin-binary-itself).',
    '',
    'An error without a more specific code is `E_INTERNAL`; a failed system call',
    'that Node reports (a file that cannot be read, a socket that cannot be opened)',
    'is `E_KERNEL`.', '');

  p('## Exit codes', '', '| exit | meaning | codes |', '| --- | --- | --- |');
  for (const n of Object.values(Exit)) {
    const codes = ERROR_CODES.filter((c) => CATALOGUE[c].exit === n && n !== Exit.FAILURE);
    p(row([n, EXIT_MEANINGS[n], codes.map((c) => `\`${c}\``).join(', ') || (n === Exit.FAILURE ? 'all others' : '-')]));
  }
  p('');

  p('## CNI codes', '',
    'Codes 1-99 are the CNI spec\'s well-known codes, 100 and up are membrane\'s own,',
    'and 999 is libcni\'s `ErrInternal`.', '',
    '| CNI code | meaning | membrane codes |', '| --- | --- | --- |');
  for (const { code: n, title } of Object.values(CNI_CODES)) {
    const codes = ERROR_CODES.filter((c) => CATALOGUE[c].cni === n);
    const shim = CNI_SHIM_ERRORS.some((e) => e.cni === n) ? ['the plugin binary itself'] : [];
    const list = n === CNI_CODES.INTERNAL.code
      ? ['every code not listed above']
      : [...codes.map((c) => `\`${c}\``), ...shim];
    p(row([n, title, list.join(', ') || 'not used']));
  }
  p('');

  p('## Codes', '',
    'Each code with what it means, what the CNI plugin, the API and the CLI answer',
    'for it, and its typical cause and fix.', '');
  for (const [area, title] of Object.entries(AREAS) as [ErrorArea, string][]) {
    const codes = ERROR_CODES.filter((c) => CATALOGUE[c].area === area);
    if (codes.length === 0) continue;
    p(`### ${title}`, '', '| code | meaning | CNI | HTTP | exit | typical cause and fix |', '| --- | --- | --- | --- | --- | --- |');
    for (const c of codes as ErrorCode[]) {
      const e = CATALOGUE[c];
      p(row([`\`${c}\``, e.meaning, e.cni, e.http, e.exit, e.fix]));
    }
    p('');
  }

  p('## Answered by the CNI plugin binary itself', '',
    'The plugin binary (`cni/membrane-cni.c`) only carries requests to the agent, but',
    'when it cannot do that it answers by itself: a CNI error object on stdout',
    '(`cniVersion` is the config\'s if the binary supports it, else `1.1.0`) and exit',
    'status 1. These errors have no membrane code, because they never reach the agent.', '',
    '| CNI code | msg | when | fix |', '| --- | --- | --- | --- |');
  for (const e of CNI_SHIM_ERRORS) p(row([`${e.cni} (${cniTitle(e.cni)})`, `\`${e.msg}\``, e.when, e.fix]));
  p('');
  return out.join('\n');
}

function main(argv: string[]): number {
  const want = renderErrorsDoc();
  let have = '';
  try { have = readFileSync(ERRORS_DOC, 'utf8'); } catch { /* not written yet */ }
  if (argv.includes('--check')) {
    if (have === want) return 0;
    process.stderr.write(`docs/errors.md is out of date with src/shared/error-codes.ts: run ${REGENERATE}\n`);
    return 1;
  }
  if (have !== want) writeFileSync(ERRORS_DOC, want);
  process.stdout.write(`docs/errors.md ${have === want ? 'is up to date' : 'written'} (${ERROR_CODES.length} codes)\n`);
  return 0;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) process.exitCode = main(process.argv.slice(2));
