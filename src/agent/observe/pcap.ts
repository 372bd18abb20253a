// A pcap file (the classic libpcap format, nanosecond timestamps) of the
// frames datapath events captured: LINKTYPE_ETHERNET, snap length
// EVENT_CAP_LEN (128), each record's original length the packet's length on
// the wire, so tshark and Wireshark mark the cut ("[Packet size limited
// during capture]"). Pure encoding; the caller writes the bytes.

/** Nanosecond-resolution pcap magic (0xa1b23c4d), written in this machine's byte order. */
export const PCAP_MAGIC_NS = 0xa1b23c4d;
export const LINKTYPE_ETHERNET = 1;
export const PCAP_SNAPLEN = 128;

/** The 24-byte file header. */
export function pcapHeader(snaplen = PCAP_SNAPLEN): Buffer {
  const b = Buffer.alloc(24);
  b.writeUInt32LE(PCAP_MAGIC_NS, 0);
  b.writeUInt16LE(2, 4);
  b.writeUInt16LE(4, 6);
  b.writeInt32LE(0, 8); // thiszone
  b.writeUInt32LE(0, 12); // sigfigs
  b.writeUInt32LE(snaplen, 16);
  b.writeUInt32LE(LINKTYPE_ETHERNET, 20);
  return b;
}

/** One record: a 16-byte header (time, captured and original length) and the captured bytes. */
export function pcapRecord(wallNs: bigint, frame: Uint8Array, origLen: number): Buffer {
  const h = Buffer.alloc(16);
  h.writeUInt32LE(Number(wallNs / 1_000_000_000n) >>> 0, 0);
  h.writeUInt32LE(Number(wallNs % 1_000_000_000n), 4);
  h.writeUInt32LE(frame.length, 8);
  h.writeUInt32LE(Math.max(origLen, frame.length), 12);
  return Buffer.concat([h, frame]);
}
