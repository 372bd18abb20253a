// A loaded BPF program behind an fd.
import { KernelError, MembraneError } from '../shared/errors.ts';
import { progFullName, progInfoByFd } from './info.ts';
import { bpf, closeFd } from './native/libbpf.ts';
import { pinFd } from './pin.ts';

export class BpfProgram {
  readonly name: string;
  /** ELF section (SEC("...")), '' when opened by pin or id. */
  readonly section: string;
  readonly type: number;
  readonly id: number;
  /** Verifier log of the successful load (only when loaded with logLevel > 0). */
  readonly log: string[];
  #fd: number;
  readonly #owned: boolean;

  /** Wraps `fd`; with `owned`, close() closes it, otherwise the owning BpfObject does. */
  constructor(fd: number, opts: { owned: boolean; name?: string; section?: string; log?: string[] }) {
    const info = progInfoByFd(fd);
    this.#fd = fd;
    this.#owned = opts.owned;
    this.name = opts.name ?? progFullName(fd, info);
    this.section = opts.section ?? '';
    this.type = info.type;
    this.id = info.id;
    this.log = opts.log ?? [];
  }

  /** Opens a pinned program. The caller owns the result; close() releases the fd, the pin keeps the program alive. */
  static openPinned(path: string): BpfProgram {
    const fd = bpf.obj_get(path);
    if (fd < 0) throw new KernelError(`open pinned program ${path}`, fd);
    try {
      return new BpfProgram(fd, { owned: true });
    } catch (err) {
      closeFd(fd);
      throw new MembraneError(`open pinned program ${path}`, { cause: err });
    }
  }

  /** Opens a loaded program by id. The caller owns the result. */
  static fromId(id: number): BpfProgram {
    const fd = bpf.prog_get_fd_by_id(id);
    if (fd < 0) throw new KernelError(`open program id ${id}`, fd);
    try {
      return new BpfProgram(fd, { owned: true });
    } catch (err) {
      closeFd(fd);
      throw err;
    }
  }

  get fd(): number {
    if (this.#fd < 0) throw new MembraneError(`use program ${this.name}`, { code: 'E_CLOSED', cause: 'program is closed' });
    return this.#fd;
  }

  /** Pins the program (keeps it loaded without an fd or attachment). */
  pin(path: string): void {
    pinFd(this.fd, path, `program ${this.name}`);
  }

  /** Releases the fd if owned; a program borrowed from a BpfObject is only invalidated. Idempotent. */
  close(): void {
    if (this.#fd >= 0 && this.#owned) closeFd(this.#fd);
    this.#fd = -1;
  }

  /** @internal Called by the owning BpfObject when it closes. */
  invalidate(): void {
    this.#fd = -1;
  }
}
