// A small argv parser: positional words, `--flag value`, `--flag=value`,
// boolean switches, `-o json`, and `--` ending options (for `lab exec POD -- CMD`).
import { MembraneError } from '../shared/errors.ts';

export interface FlagSpec {
  /** 'string' takes a value, 'boolean' is a switch. */
  type: 'string' | 'boolean';
  short?: string;
  help: string;
  /** May be given several times (collected into an array). */
  multiple?: boolean;
}

export interface ParsedArgs {
  positionals: string[];
  flags: Record<string, string | boolean | string[] | undefined>;
  /** Everything after a bare `--`. */
  rest: string[];
}

export const GLOBAL_FLAGS: Record<string, FlagSpec> = {
  output: { type: 'string', short: 'o', help: 'output format: text (default) or json' },
  verbose: { type: 'boolean', short: 'v', help: 'on error, print the whole cause chain and kernel logs' },
  help: { type: 'boolean', short: 'h', help: 'show help' },
};

export function parseArgs(argv: string[], specs: Record<string, FlagSpec>): ParsedArgs {
  const all = { ...GLOBAL_FLAGS, ...specs };
  const byShort = new Map(Object.entries(all).filter(([, s]) => s.short).map(([n, s]) => [s.short!, n]));
  const out: ParsedArgs = { positionals: [], flags: {}, rest: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') {
      out.rest = argv.slice(i + 1);
      break;
    }
    let name: string | undefined;
    let value: string | undefined;
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      name = eq > 0 ? a.slice(2, eq) : a.slice(2);
      value = eq > 0 ? a.slice(eq + 1) : undefined;
      // Accept kebab-case flags for camelCase config keys (--device-mtu == --deviceMTU).
      if (!all[name]) name = Object.keys(all).find((k) => kebab(k) === name) ?? name;
    } else if (a.startsWith('-') && a.length === 2) {
      name = byShort.get(a.slice(1));
      if (!name) throw new MembraneError(`unknown flag ${a}`, { code: 'E_USAGE' });
    } else {
      out.positionals.push(a);
      continue;
    }
    const spec = all[name];
    if (!spec) throw new MembraneError(`unknown flag --${name}`, { code: 'E_USAGE' });
    let v: string | boolean;
    if (spec.type === 'boolean') {
      v = value === undefined ? true : value !== 'false';
    } else {
      if (value === undefined) {
        if (i + 1 >= argv.length) throw new MembraneError(`flag --${name} needs a value`, { code: 'E_USAGE' });
        value = argv[++i];
      }
      v = value;
    }
    if (spec.multiple) out.flags[name] = [...((out.flags[name] as string[] | undefined) ?? []), v as string];
    else out.flags[name] = v;
  }
  const o = out.flags.output;
  if (o !== undefined && o !== 'json' && o !== 'text') throw new MembraneError(`flag -o: must be "json" or "text" (got "${o}")`, { code: 'E_USAGE' });
  return out;
}

export function kebab(s: string): string {
  return s.replace(/([a-z0-9])([A-Z])/g, '$1-$2').replace(/([A-Z])([A-Z][a-z])/g, '$1-$2').toLowerCase();
}
