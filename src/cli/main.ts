// The `membrane` command line: finds the command for the words given, parses
// flags, runs it, and maps errors to one line (the whole chain with --verbose)
// and the exit code the error-code catalogue gives the error's code.
import { GLOBAL_FLAGS, kebab, parseArgs } from './args.ts';
import { Exit, type Command } from './command.ts';
import { errorCodeOf, exitCodeOf } from '../shared/error-codes.ts';
import { causeChain, MembraneError } from '../shared/errors.ts';
import { env } from '../shared/env.ts';
import { commands } from './commands/index.ts';

function findCommand(argv: string[]): { cmd?: Command; rest: string[] } {
  let best: Command | undefined;
  for (const c of commands) {
    if (c.path.every((w, i) => argv[i] === w) && (!best || c.path.length > best.path.length)) best = c;
  }
  return { cmd: best, rest: best ? argv.slice(best.path.length) : argv };
}

function help(prefix: string[] = []): string {
  const list = commands.filter((c) => prefix.every((w, i) => c.path[i] === w));
  const w = Math.max(...list.map((c) => c.path.join(' ').length));
  return `usage: membrane <command> [flags]\n\ncommands:\n${list.map((c) => `  ${c.path.join(' ').padEnd(w)}   ${c.summary}`).join('\n')}\n\nglobal flags: -o json, --verbose, -h\n`;
}

function commandHelp(c: Command): string {
  const flags = { ...(c.flags ?? {}), ...GLOBAL_FLAGS };
  const lines = Object.entries(flags).map(([n, s]) => `  ${s.short ? `-${s.short}, ` : '    '}--${kebab(n)}${s.type === 'string' ? ' VALUE' : ''}   ${s.help}`);
  return `usage: membrane ${c.path.join(' ')} ${c.usage ?? '[flags]'}\n\n${c.summary}\n\nflags:\n${lines.join('\n')}\n`;
}

export async function main(argv: string[]): Promise<number> {
  const { cmd, rest } = findCommand(argv);
  if (!cmd) {
    if (argv.length === 0 || argv[0] === 'help' || argv[0] === '-h' || argv[0] === '--help') {
      process.stdout.write(help());
      return Exit.OK;
    }
    const prefix = argv.filter((a) => !a.startsWith('-'));
    const known = commands.some((c) => c.path[0] === prefix[0]);
    const err = new MembraneError(`unknown command "${prefix.join(' ')}"`, { code: 'E_USAGE' });
    process.stderr.write(`membrane: ${err.message}\n${known ? help([prefix[0]]) : help()}`);
    return exitCodeOf(err.code);
  }
  let verbose = argv.includes('--verbose') || argv.includes('-v');
  try {
    env(); // a bad MEMBRANE_* value fails here, naming the variable, before the command does anything
    const args = parseArgs(rest, cmd.flags ?? {});
    verbose = args.flags.verbose === true;
    if (args.flags.help) {
      process.stdout.write(commandHelp(cmd));
      return Exit.OK;
    }
    const code = await cmd.run({ args, json: args.flags.output === 'json', out: (s) => process.stdout.write(s) });
    return code ?? Exit.OK;
  } catch (err) {
    process.stderr.write(`membrane ${cmd.path.join(' ')}: ${err instanceof Error ? err.message : String(err)}\n`);
    const me = err instanceof MembraneError ? err : undefined;
    if (me?.hint) process.stderr.write(`hint: ${me.hint}\n`);
    if (verbose) {
      process.stderr.write(causeChain(err).map((l) => `  caused by ${l}`).join('\n') + '\n');
      for (let e: unknown = err; e instanceof Error; e = e.cause) {
        const log = (e as { log?: string[] }).log;
        if (log?.length) process.stderr.write(`verifier log (${log.length} lines):\n${log.join('\n')}\n`);
      }
      if (err instanceof Error && err.stack) process.stderr.write(err.stack + '\n');
    }
    return exitCodeOf(errorCodeOf(err));
  }
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err) => { process.stderr.write(`membrane: ${err}\n`); process.exitCode = exitCodeOf(errorCodeOf(err)); },
);
