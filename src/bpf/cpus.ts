// Number of possible CPUs: per-CPU maps hold one value slot per possible CPU
// (not per online CPU), so lookups need a buffer of roundup(valueSize, 8) × this.
import { readFileSync } from 'node:fs';
import { MembraneError } from '../shared/errors.ts';

/** Parses a kernel CPU list such as "0-3,8-11,14" into the number of CPUs it names. */
export function parseCpuList(text: string): number {
  let n = 0;
  for (const part of text.trim().split(',')) {
    if (part === '') continue;
    const m = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!m) throw new MembraneError('parse cpu list', { code: 'E_INTERNAL', cause: `bad range "${part}" in "${text.trim()}"` });
    const lo = Number(m[1]);
    const hi = m[2] !== undefined ? Number(m[2]) : lo;
    if (hi < lo) throw new MembraneError('parse cpu list', { code: 'E_INTERNAL', cause: `bad range "${part}"` });
    n += hi - lo + 1;
  }
  return n;
}

let cached: number | undefined;

/** Possible CPUs from /sys/devices/system/cpu/possible (cached; the set never changes at runtime). */
export function possibleCpus(): number {
  if (cached === undefined) cached = parseCpuList(readFileSync('/sys/devices/system/cpu/possible', 'utf8'));
  return cached;
}
