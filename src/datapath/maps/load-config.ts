// Values of the load-time constants (bpf/include/config/*.h) that the loader
// patches into an object's .rodata by symbol name before loading it. Encoding
// them here keeps the byte order in one place: every constant is a
// little-endian integer except LXC_IPV4, which the datapath compares with
// packet bytes and so holds the address in network order.
import { checkU16, checkU32, writeIPv4, writeMac } from './layout.ts';

/** Symbol name -> bytes to write at that symbol's offset in .rodata (sizes as in BTF). */
export type RodataValues = Record<string, Buffer>;

export interface LxcConfig {
  /** Endpoint id (1..65535; the datapath carries it as u16 in events and cilium_lxc). */
  endpointId: number;
  /** Pod IPv4 address. */
  ipv4: string;
  /** Security identity of the pod. */
  identity: number;
  /** ifindex of the host-side lxc veth. */
  ifindex: number;
  /** MAC of the host-side lxc veth (ARP replies, L2 source on delivery). */
  ifMac: string;
}

function u32(what: string, v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(checkU32(what, v));
  return b;
}

/** .rodata values for bpf_lxc.o. Throws RangeError for out-of-range numbers or bad addresses. */
export function encodeLxcConfig(c: LxcConfig): RodataValues {
  const ip = Buffer.alloc(4);
  writeIPv4(ip, 0, c.ipv4);
  const mac = Buffer.alloc(6);
  writeMac(mac, 0, c.ifMac);
  return {
    LXC_ID: u32('endpoint id', checkU16('endpoint id', c.endpointId)),
    LXC_IPV4: ip,
    LXC_SECLABEL: u32('identity', c.identity),
    LXC_IFINDEX: u32('lxc ifindex', c.ifindex),
    LXC_IF_MAC: mac,
  };
}

/** .rodata values for bpf_host.o. */
export function encodeHostConfig(c: { hostEndpointId: number }): RodataValues {
  return { HOST_EP_ID: u32('host endpoint id', checkU16('host endpoint id', c.hostEndpointId)) };
}
