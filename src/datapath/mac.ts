// Random locally administered unicast MACs, as Cilium's mac.GenerateRandMAC:
// set explicitly at creation so nothing (udev, systemd) rewrites them later
// while programs and neighbour state already use them.
import { randomBytes } from 'node:crypto';

export function randomMac(): string {
  const b = randomBytes(6);
  b[0] = (b[0] & 0xfe) | 0x02;
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}
