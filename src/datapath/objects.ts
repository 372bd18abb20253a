// Where the compiled BPF objects are, and a clear error when they are not built.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { MembraneError } from '../shared/errors.ts';

const BPF_DIR = fileURLToPath(new URL('../../bpf/', import.meta.url));

export type ObjectName = 'bpf_host' | 'bpf_lxc' | 'bpf_overlay';

export function objectPath(name: ObjectName): string {
  const p = `${BPF_DIR}${name}.o`;
  if (!existsSync(p)) {
    throw new MembraneError(`load ${name}.o`, { code: 'E_NOT_BUILT', cause: `${p} does not exist`, hint: 'build the BPF objects: make -C bpf' });
  }
  return p;
}
