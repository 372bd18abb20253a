// The error every wire decoder throws on malformed bytes, so callers can tell
// "the kernel said no" (KernelError) from "we could not read what it said".
import { MembraneError } from '../../shared/errors.ts';

export class WireError extends MembraneError {
  constructor(detail: string) {
    super(`decode netlink message: ${detail}`, { code: 'E_NETLINK_DECODE' });
  }
}
