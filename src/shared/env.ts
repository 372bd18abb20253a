// The MEMBRANE_* environment switches, read and validated here and nowhere
// else (a test fails if another file reads one). Most are for tests and
// debugging; docs/environment.md lists them for users. A value that does
// not parse is an error naming the variable, never silently ignored.
import { ConfigError } from './errors.ts';

export interface Env {
  /** MEMBRANE_TIMING=1: the agent logs the phases of slow paths (pod add). */
  readonly timing: boolean;
  /** MEMBRANE_LEASE_TTL=N: overrides the node config's leaseTTL (tests of lease expiry). */
  readonly leaseTTL?: number;
  /** MEMBRANE_FORCE_LEGACY_TC=1: attach with legacy tc even where tcx exists (tests of the fallback). */
  readonly forceLegacyTc: boolean;
  /** MEMBRANE_LIBBPF_DEBUG=1: libbpf's own messages go to stderr. */
  readonly libbpfDebug: boolean;
  /** MEMBRANE_AGENT_SOCKET=PATH: the agent the CLI talks to, instead of the one found from this netns. */
  readonly agentSocket?: string;
  /** MEMBRANE_LAB=NAME: the lab cluster-wide commands use when --lab/--name is not given. */
  readonly lab?: string;
}

/** Every variable this process reads, with what it does (docs/environment.md has the same list). */
export const ENV_VARS = {
  MEMBRANE_TIMING: '1: log phase timings of pod add and agent start',
  MEMBRANE_LEASE_TTL: 'whole seconds >= 1: how long the node\'s store entries outlive an agent that stops without leaving (overrides leaseTTL in the node config)',
  MEMBRANE_FORCE_LEGACY_TC: '1: attach programs as legacy tc filters even where tcx is supported',
  MEMBRANE_LIBBPF_DEBUG: '1: print libbpf\'s debug messages',
  MEMBRANE_AGENT_SOCKET: 'path: the agent API socket CLI commands use',
  MEMBRANE_LAB: 'name: the default lab of `lab` and cluster-wide commands',
} as const;

function flag(v: string | undefined, name: string, problems: string[]): boolean {
  if (v === undefined || v === '' || v === '0') return false;
  if (v === '1') return true;
  problems.push(`${name}: must be 1 or 0 (got ${JSON.stringify(v)})`);
  return false;
}

/** Parses the switches out of `e`; throws ConfigError naming every bad variable. */
export function readEnv(e: NodeJS.ProcessEnv = process.env): Env {
  const problems: string[] = [];
  let leaseTTL: number | undefined;
  const ttl = e.MEMBRANE_LEASE_TTL;
  if (ttl !== undefined && ttl !== '') {
    leaseTTL = Number(ttl);
    if (!/^\d+$/.test(ttl) || leaseTTL < 1) {
      problems.push(`MEMBRANE_LEASE_TTL: must be a whole number of seconds >= 1 (got ${JSON.stringify(ttl)})`);
      leaseTTL = undefined;
    }
  }
  const out: Env = {
    timing: flag(e.MEMBRANE_TIMING, 'MEMBRANE_TIMING', problems),
    leaseTTL,
    forceLegacyTc: flag(e.MEMBRANE_FORCE_LEGACY_TC, 'MEMBRANE_FORCE_LEGACY_TC', problems),
    libbpfDebug: flag(e.MEMBRANE_LIBBPF_DEBUG, 'MEMBRANE_LIBBPF_DEBUG', problems),
    agentSocket: e.MEMBRANE_AGENT_SOCKET || undefined,
    lab: e.MEMBRANE_LAB || undefined,
  };
  if (problems.length) throw new ConfigError('read environment', problems);
  return Object.freeze(out);
}

let cached: Env | undefined;

/** This process's switches, read once. The CLI calls it first, so a bad value fails before anything runs. */
export function env(): Env {
  return (cached ??= readEnv());
}

/** The MEMBRANE_* variables set in this process, to hand to the agents the lab starts (MEMBRANE_LAB excepted: it names the lab, not an agent setting). */
export function forwardedVariables(e: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of Object.keys(ENV_VARS)) {
    const v = e[k];
    if (v !== undefined && k !== 'MEMBRANE_LAB') out[k] = v;
  }
  return out;
}
