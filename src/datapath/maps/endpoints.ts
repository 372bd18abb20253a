// cilium_lxc: every local pod IP (-> its lxc device, MACs, endpoint id and
// identity) and every local host IP (flag ENDPOINT_F_HOST). Pure codecs; see
// struct endpoint_key / endpoint_info in bpf/lib/maps.h.
import { checkU16, checkU32, defineLayout, expectSize, readIPv4, readMac, writeIPv4, writeMac, ZERO_MAC, MapCodecError } from './layout.ts';

export const ENDPOINTS_MAP_NAME = 'cilium_lxc';
export const ENDPOINTS_MAX_ENTRIES = 65535;

export const ENDPOINT_KEY = defineLayout('endpoint_key', 20, { addr: 0, family: 16, key: 17, cluster_id: 18 });
export const ENDPOINT_INFO = defineLayout('endpoint_info', 48, {
  ifindex: 0, unused: 4, lxc_id: 6, flags: 8, rt_info: 12, mac: 16, pad1: 22, node_mac: 24, pad2: 30,
  sec_id: 32, parent_ifindex: 36, pad: 40,
});

export const ENDPOINT_KEY_IPV4 = 1;
/** A local host IP (router IP, node IPs): packets to it go to the host stack. */
export const ENDPOINT_F_HOST = 0x01;
/** The endpoint lives in the host network namespace. */
export const ENDPOINT_F_ATHOSTNS = 0x02;

export interface EndpointEntry {
  ip: string;
  /** ifindex of the host-side lxc veth (0 for host IPs). */
  ifindex: number;
  /** Endpoint id (0 for host IPs). */
  lxcId: number;
  /** ENDPOINT_F_* bits. */
  flags: number;
  /** Pod-side MAC: L2 destination when delivering into the pod. */
  mac: string;
  /** Host-side lxc MAC: L2 source when delivering into the pod. */
  nodeMac: string;
  /** Security identity of the endpoint. */
  secId: number;
  parentIfindex: number;
}

/** The entry for a local host IP (router IP or node IP): flagged ENDPOINT_F_HOST, identity host (1). */
export function hostEndpoint(ip: string): EndpointEntry {
  return { ip, ifindex: 0, lxcId: 0, flags: ENDPOINT_F_HOST, mac: ZERO_MAC, nodeMac: ZERO_MAC, secId: 1, parentIfindex: 0 };
}

export function encodeKey(ip: string): Buffer {
  const buf = Buffer.alloc(ENDPOINT_KEY.size);
  try {
    writeIPv4(buf, ENDPOINT_KEY.fields.addr, ip);
  } catch (err) {
    throw new MapCodecError(`encode endpoint key: ${(err as Error).message}`);
  }
  buf[ENDPOINT_KEY.fields.family] = ENDPOINT_KEY_IPV4;
  return buf;
}

/** The IPv4 address of a key. Throws RangeError for other families. */
export function decodeKey(buf: Uint8Array): string {
  expectSize('endpoint key', ENDPOINT_KEY, buf);
  const family = buf[ENDPOINT_KEY.fields.family];
  if (family !== ENDPOINT_KEY_IPV4) throw new MapCodecError(`decode endpoint key: family ${family} is not IPv4 (1)`);
  return readIPv4(buf, ENDPOINT_KEY.fields.addr);
}

export function encodeValue(e: Omit<EndpointEntry, 'ip'>): Buffer {
  const buf = Buffer.alloc(ENDPOINT_INFO.size);
  const f = ENDPOINT_INFO.fields;
  buf.writeUInt32LE(checkU32('endpoint ifindex', e.ifindex), f.ifindex);
  buf.writeUInt16LE(checkU16('endpoint id', e.lxcId), f.lxc_id);
  buf.writeUInt32LE(checkU32('endpoint flags', e.flags), f.flags);
  writeMac(buf, f.mac, e.mac);
  writeMac(buf, f.node_mac, e.nodeMac);
  buf.writeUInt32LE(checkU32('endpoint identity', e.secId), f.sec_id);
  buf.writeUInt32LE(checkU32('endpoint parent ifindex', e.parentIfindex), f.parent_ifindex);
  return buf;
}

export function decodeValue(buf: Uint8Array): Omit<EndpointEntry, 'ip'> {
  expectSize('endpoint value', ENDPOINT_INFO, buf);
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const f = ENDPOINT_INFO.fields;
  return {
    ifindex: b.readUInt32LE(f.ifindex),
    lxcId: b.readUInt16LE(f.lxc_id),
    flags: b.readUInt32LE(f.flags),
    mac: readMac(b, f.mac),
    nodeMac: readMac(b, f.node_mac),
    secId: b.readUInt32LE(f.sec_id),
    parentIfindex: b.readUInt32LE(f.parent_ifindex),
  };
}

export function encodeEntry(e: EndpointEntry): { key: Buffer; value: Buffer } {
  return { key: encodeKey(e.ip), value: encodeValue(e) };
}

export function decodeEntry(key: Uint8Array, value: Uint8Array): EndpointEntry {
  return { ip: decodeKey(key), ...decodeValue(value) };
}
