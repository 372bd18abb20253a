// Whether this process may change the network and load BPF: root in name is
// not enough (a root process can run without capabilities, and a non-root
// one can hold them), so the effective capability set is what counts.
import { readFileSync } from 'node:fs';

const CAP_NET_ADMIN = 12n;
const CAP_SYS_ADMIN = 21n;
const CAP_BPF = 39n;

function capEff(): bigint {
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? BigInt(`0x${m[1]}`) : 0n;
}

/** Names of the capabilities Membrane needs that this process lacks (empty when it may go ahead). */
export function missingCapabilities(): string[] {
  const eff = capEff();
  const need: [bigint, string][] = [[CAP_NET_ADMIN, 'CAP_NET_ADMIN'], [CAP_SYS_ADMIN, 'CAP_SYS_ADMIN'], [CAP_BPF, 'CAP_BPF']];
  // CAP_SYS_ADMIN also grants what CAP_BPF does on kernels before 5.8.
  return need.filter(([bit, name]) => (eff & (1n << bit)) === 0n && !(name === 'CAP_BPF' && (eff & (1n << CAP_SYS_ADMIN)))).map(([, n]) => n);
}
