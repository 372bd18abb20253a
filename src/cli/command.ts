// What every CLI command provides; the registry in main.ts maps words to these.
import { MembraneError } from '../shared/errors.ts';
import type { FlagSpec, ParsedArgs } from './args.ts';

export interface CommandContext {
  args: ParsedArgs;
  json: boolean;
  out: (s: string) => void;
}

export interface Command {
  /** Words after `membrane`, e.g. ['datapath', 'init']. */
  path: string[];
  summary: string;
  usage?: string;
  flags?: Record<string, FlagSpec>;
  /** Returns the process exit code (0 when omitted). */
  run(ctx: CommandContext): Promise<number | void> | number | void;
}

/** Exit codes: they live with the error-code catalogue, which gives each error code its exit code. */
export { Exit, type ExitCode } from '../shared/error-codes.ts';

/** The command's `n`th positional argument; a usage error (quoting `usage`) when it is missing. */
export function positional(ctx: CommandContext, command: string, usage: string, n = 0): string {
  const v = ctx.args.positionals[n];
  if (!v) throw new MembraneError(command, { code: 'E_USAGE', cause: `usage: membrane ${command} ${usage}` });
  return v;
}
