// Load-time constants: `volatile const` variables in .rodata, patched by
// name before loading (the verifier then sees them as known values and
// prunes dead branches). Pure: validated against the ELF, no syscalls.
import { basename } from 'node:path';
import { MembraneError } from '../shared/errors.ts';
import type { ElfObject, ElfVariable } from './elf.ts';

export type ConstantValue = number | bigint | Buffer;

export interface Patch {
  variable: ElfVariable;
  bytes: Buffer;
}

/** Validates and encodes constants against the ELF's .rodata variables (pure). */
export function constantPatches(elf: ElfObject, path: string, constants: Record<string, ConstantValue>): Patch[] {
  const vars = elf.variables('.rodata');
  const out: Patch[] = [];
  const fail = (cause: string) => new MembraneError(`set constants of ${basename(path)}`, { code: 'E_BPF_CONST', cause });
  for (const [name, value] of Object.entries(constants)) {
    const v = vars.find((x) => x.name === name);
    if (!v) {
      const list = vars.map((x) => `${x.name} (${x.size} bytes)`).join(', ');
      throw fail(`unknown constant "${name}" (known: ${list || 'none; declare it as volatile const in .rodata'})`);
    }
    out.push({ variable: v, bytes: encodeConstant(value, v.size, (msg) => fail(`${name}: ${msg}`)) });
  }
  return out;
}

function encodeConstant(value: ConstantValue, size: number, fail: (msg: string) => Error): Buffer {
  if (Buffer.isBuffer(value)) {
    if (value.length !== size) throw fail(`value is ${value.length} bytes, variable is ${size}`);
    return Buffer.from(value);
  }
  if (![1, 2, 4, 8].includes(size)) throw fail(`variable is ${size} bytes: pass a Buffer`);
  if (typeof value === 'number' && !Number.isInteger(value)) throw fail(`${value} is not an integer`);
  const bits = BigInt(size * 8);
  let n = BigInt(value);
  const max = (1n << bits) - 1n;
  const min = -(1n << (bits - 1n));
  if (n > max || n < min) throw fail(`${value} does not fit in ${size} bytes`);
  if (n < 0n) n += 1n << bits;
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = Number((n >> BigInt(8 * i)) & 0xffn);
  return b;
}

