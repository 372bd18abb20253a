// Sysctls of the node's network namespace. /proc/sys/net shows the netns of
// the process that opens the file, so these act on the netns this process
// runs in (the agent and `datapath init` run inside the node's netns).
import { readFileSync, writeFileSync } from 'node:fs';
import { MembraneError } from '../shared/errors.ts';
import type { Rollback } from './rollback.ts';

function path(name: string): string {
  return `/proc/sys/${name.replace(/\./g, '/')}`;
}

export function readSysctl(name: string): string {
  return readFileSync(path(name), 'utf8').trim();
}

/** Writes a sysctl if it differs; registers the old value for rollback. */
export function writeSysctl(name: string, value: string, rb?: Rollback): void {
  let old: string;
  try {
    old = readSysctl(name);
    if (old === value) return;
    writeFileSync(path(name), value);
  } catch (e) {
    throw new MembraneError(`set sysctl ${name}=${value}`, { code: 'E_SYSCTL', cause: (e as NodeJS.ErrnoException).code ?? e });
  }
  rb?.push(`sysctl ${name}`, () => writeFileSync(path(name), old));
}

/** Per-device sysctls every Membrane device gets (Cilium's enableForwarding). */
export function deviceSysctls(dev: string): [string, string][] {
  // Device names with dots appear with '/' in sysctl names; our names have none.
  return [
    [`net.ipv4.conf.${dev}.forwarding`, '1'],
    [`net.ipv4.conf.${dev}.rp_filter`, '0'],
    [`net.ipv4.conf.${dev}.accept_local`, '1'],
    [`net.ipv4.conf.${dev}.send_redirects`, '0'],
  ];
}

/** Node-wide sysctls (Cilium's Reinitialize batch, IPv4 part). */
export const GLOBAL_SYSCTLS: [string, string][] = [
  ['net.ipv4.conf.all.rp_filter', '0'],
  ['net.ipv4.ip_forward', '1'],
  ['net.ipv4.conf.all.forwarding', '1'],
  ['net.ipv4.conf.default.rp_filter', '0'],
];

export function applySysctls(list: [string, string][], rb?: Rollback): void {
  for (const [k, v] of list) writeSysctl(k, v, rb);
}
