// Pure codec tests for src/netlink/wire: attribute layout, message framing and
// encode → decode round trips for every message kind the verbs send.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { decodeAddrMsg, encodeAddrMsg, type AddrMsg } from '../../src/netlink/wire/addr-msg.ts';
import { attr, attrMap, attrStr, attrU16, NLA_F_NESTED, nest, parseAttrs, readStr } from '../../src/netlink/wire/attr.ts';
import { decodeError, decodeDone, encodeErrorPayload, extAckText } from '../../src/netlink/wire/error-msg.ts';
import { encodeMsg, msgTypeName, NLM_F_ACK_TLVS, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, parseMsgs, RTM_NEWROUTE } from '../../src/netlink/wire/header.ts';
import { formatIp, macBytes, parsePrefix } from '../../src/netlink/wire/inet.ts';
import {
  decodeLinkMsg, emptyLinkMsg, encodeLinkMsg, IFLA_INFO_DATA, IFLA_INFO_KIND, IFLA_LINKINFO, IFLA_VXLAN_PORT, IFLA_VXLAN_PORT_RANGE,
  type LinkMsg,
} from '../../src/netlink/wire/link-msg.ts';
import { decodeNeighMsg, encodeNeighMsg, type NeighMsg } from '../../src/netlink/wire/neigh-msg.ts';
import { decodeRouteMsg, encodeRouteMsg, RTA_METRICS, RTAX_MTU, type RouteMsg } from '../../src/netlink/wire/route-msg.ts';
import { WireError } from '../../src/netlink/wire/wire-error.ts';
import { ConfigError } from '../../src/shared/errors.ts';

test('attributes are padded to 4 bytes and nla_len excludes the padding', () => {
  const a = attrStr(3, 'eth0'); // 4 header + 5 payload ("eth0\0") = 9 → padded to 12
  assert.equal(a.length, 12);
  assert.equal(a.readUInt16LE(0), 9);
  assert.equal(a.readUInt16LE(2), 3);
  assert.deepEqual([...a.subarray(9)], [0, 0, 0]);
  const two = Buffer.concat([attrU16(1, 0xbeef), attrStr(2, 'x')]);
  assert.deepEqual(parseAttrs(two).map((x) => [x.type, x.data.length]), [[1, 2], [2, 2]]);
});

test('nested attributes carry NLA_F_NESTED and decode with the flag masked off', () => {
  const n = nest(18, [attrStr(1, 'veth')]);
  assert.equal(n.readUInt16LE(2), 18 | NLA_F_NESTED);
  const [outer] = parseAttrs(n);
  assert.equal(outer!.type, 18);
  assert.equal(outer!.nested, true);
  assert.equal(readStr(attrMap(outer!.data).get(1)!), 'veth');
});

test('a truncated or overlong attribute is a WireError, not a crash', () => {
  const a = attrStr(3, 'eth0');
  a.writeUInt16LE(200, 0);
  assert.throws(() => parseAttrs(a), WireError);
  const b = Buffer.from([2, 0, 1, 0]); // nla_len 2 < header
  assert.throws(() => parseAttrs(b), /length 2 outside/);
});

test('nlmsghdr: several messages in one datagram are split at aligned offsets', () => {
  const one = encodeMsg({ type: 16, flags: 2, seq: 7, pid: 99, payload: Buffer.from([1, 2, 3]) });
  assert.equal(one.readUInt32LE(0), 19); // nlmsg_len without padding
  assert.equal(one.length, 20);
  const two = encodeMsg({ type: NLMSG_DONE, flags: 2, seq: 7, payload: Buffer.alloc(4) });
  const msgs = parseMsgs(Buffer.concat([one, two]));
  assert.deepEqual(msgs.map((m) => [m.type, m.seq, m.payload.length]), [[16, 7, 3], [NLMSG_DONE, 7, 4]]);
  assert.equal(msgs[0]!.pid, 99);
  assert.equal(msgTypeName(RTM_NEWROUTE), 'RTM_NEWROUTE');
  const bad = Buffer.from(one);
  bad.writeUInt32LE(400, 0);
  assert.throws(() => parseMsgs(bad), WireError);
});

test('link message round trip: veth with a nested peer ifinfomsg placed in another netns', () => {
  const peer: LinkMsg = { ...emptyLinkMsg(), ifname: 'eth0', address: '02:00:00:00:00:02', mtu: 1450, txqlen: 1000, netnsFd: 42 };
  const m: LinkMsg = {
    ...emptyLinkMsg(), ifname: 'lxc1234', address: '02:00:00:00:00:01', mtu: 1450, txqlen: 1000,
    linkinfo: { kind: 'veth', vethPeer: peer },
  };
  const bytes = encodeLinkMsg(m);
  assert.deepEqual(decodeLinkMsg(bytes), m);
  // The layout the kernel expects: LINKINFO{KIND "veth", DATA{VETH_INFO_PEER: ifinfomsg + attrs}}
  const li = parseAttrs(bytes.subarray(16)).find((a) => a.type === IFLA_LINKINFO)!;
  assert.equal(li.nested, true);
  const info = attrMap(li.data);
  assert.equal(readStr(info.get(IFLA_INFO_KIND)!), 'veth');
  const peerAttr = parseAttrs(info.get(IFLA_INFO_DATA)!)[0]!;
  assert.equal(peerAttr.type, 1);
  assert.equal(peerAttr.nested, false, 'VETH_INFO_PEER holds an ifinfomsg, not a plain attribute list');
  assert.equal(decodeLinkMsg(peerAttr.data).ifname, 'eth0');
});

test('link message round trip: vxlan external with be16 port and port range', () => {
  const m: LinkMsg = {
    ...emptyLinkMsg(), ifname: 'cilium_vxlan', mtu: 1500, address: '02:aa:bb:cc:dd:ee',
    linkinfo: {
      kind: 'vxlan',
      vxlan: { id: 4242, link: 2, local: '10.0.0.1', ttl: 64, learning: false, port: 8472, portRange: { low: 30000, high: 40000 }, collectMetadata: true },
    },
  };
  const bytes = encodeLinkMsg(m);
  assert.deepEqual(decodeLinkMsg(bytes), m);
  const data = attrMap(attrMap(attrMap(bytes.subarray(16)).get(IFLA_LINKINFO)!).get(IFLA_INFO_DATA)!);
  assert.deepEqual([...data.get(IFLA_VXLAN_PORT)!], [0x21, 0x18], '8472 in network byte order');
  assert.deepEqual([...data.get(IFLA_VXLAN_PORT_RANGE)!], [0x75, 0x30, 0x9c, 0x40]);
});

test('link message round trip: bridge, setlink flags/change mask, master, header fields', () => {
  const br: LinkMsg = { ...emptyLinkMsg(), ifname: 'br0', linkinfo: { kind: 'bridge' } };
  assert.deepEqual(decodeLinkMsg(encodeLinkMsg(br)), br);
  const set: LinkMsg = { family: 0, type: 1, index: 7, flags: 0x81, change: 0x81, master: 3, linkNetnsId: -1, operstate: 6, extMask: 8 };
  assert.deepEqual(decodeLinkMsg(encodeLinkMsg(set)), set);
});

test('address, route and neighbour messages round trip', () => {
  const addr: AddrMsg = { family: 2, prefixLen: 32, flags: 0, scope: 0, index: 5, address: '10.0.0.1', local: '10.0.0.1', label: 'cilium_host', broadcast: '10.0.0.255', extFlags: 0x80 };
  assert.deepEqual(decodeAddrMsg(encodeAddrMsg(addr)), addr);

  const route: RouteMsg = {
    family: 2, dstLen: 24, srcLen: 0, tos: 0, table: 0, protocol: 2, scope: 0, type: 1, flags: 4,
    dst: '10.1.0.0', gateway: '10.0.0.1', oif: 5, prefsrc: '10.0.0.1', priority: 100, tableId: 1000, metrics: { mtu: 1450 },
  };
  const rb = encodeRouteMsg(route);
  assert.deepEqual(decodeRouteMsg(rb), route);
  const mx = parseAttrs(rb.subarray(12)).find((a) => a.type === RTA_METRICS)!;
  assert.equal(mx.nested, true);
  assert.deepEqual(parseAttrs(mx.data).map((a) => [a.type, a.data.readUInt32LE(0)]), [[RTAX_MTU, 1450]]);

  const neigh: NeighMsg = { family: 2, index: 5, state: 0x80, flags: 0, type: 0, dst: '10.2.0.0', lladdr: '02:00:00:00:00:09' };
  assert.deepEqual(decodeNeighMsg(encodeNeighMsg(neigh)), neigh);
  const fdb: NeighMsg = { family: 7, index: 6, state: 0x80, flags: 2, type: 0, dst: '192.168.1.2', lladdr: '02:00:00:00:00:09', vni: 1, port: 8472, vlan: 10, ifindex: 2, master: 9 };
  assert.deepEqual(decodeNeighMsg(encodeNeighMsg(fdb)), fdb);
});

test('a route metrics nest without NLA_F_NESTED (as the kernel sends it) still decodes', () => {
  const head = encodeRouteMsg({ family: 2, dstLen: 0, srcLen: 0, tos: 0, table: 254, protocol: 3, scope: 0, type: 1, flags: 0 });
  const metrics = attr(RTA_METRICS, Buffer.concat([attr(RTAX_MTU, Buffer.from([0xdc, 0x05, 0, 0]))]));
  assert.equal(decodeRouteMsg(Buffer.concat([head, metrics])).metrics?.mtu, 1500);
});

test('nlmsgerr with extended ack decodes error, request header and message; capped and uncapped', () => {
  const request = { len: 52, type: RTM_NEWROUTE, flags: NLM_F_REQUEST, seq: 9, pid: 0 };
  const { payload, flags } = encodeErrorPayload({ error: -17, request, extAck: { msg: 'Route exists', offset: 28 } });
  const e = decodeError({ type: NLMSG_ERROR, flags, seq: 9, pid: 0, payload });
  assert.equal(e.error, -17);
  assert.deepEqual(e.request, request);
  assert.deepEqual(e.extAck, { msg: 'Route exists', offset: 28 });
  assert.equal(extAckText(e.extAck), 'Route exists');

  // Uncapped: the whole 52-byte request is echoed between the header and the TLVs.
  const echoed = Buffer.alloc(36, 0xee);
  const uncapped = Buffer.concat([payload.subarray(0, 20), echoed, payload.subarray(20)]);
  const u = decodeError({ type: NLMSG_ERROR, flags: NLM_F_ACK_TLVS, seq: 9, pid: 0, payload: uncapped });
  assert.equal(u.extAck?.msg, 'Route exists');

  const plainAck = encodeErrorPayload({ error: 0, request });
  assert.equal(decodeError({ type: NLMSG_ERROR, flags: plainAck.flags, seq: 9, pid: 0, payload: plainAck.payload }).extAck, undefined);
  assert.equal(extAckText({ missingType: 3 }), 'missing attribute type 3');
  assert.throws(() => decodeError({ type: NLMSG_ERROR, flags: 0, seq: 1, pid: 0, payload: Buffer.alloc(8) }), WireError);
});

test('NLMSG_DONE carries the dump status', () => {
  const p = Buffer.alloc(4);
  p.writeInt32LE(-22);
  assert.deepEqual(decodeDone({ type: NLMSG_DONE, flags: 0, seq: 1, pid: 0, payload: p }), { error: -22 });
  assert.deepEqual(decodeDone({ type: NLMSG_DONE, flags: 0, seq: 1, pid: 0, payload: Buffer.alloc(0) }), { error: 0 });
});

test('address text conversions', () => {
  assert.deepEqual(parsePrefix('default'), { addr: Buffer.alloc(4), prefixLen: 0 });
  assert.deepEqual(parsePrefix('10.0.0.7'), { addr: Buffer.from([10, 0, 0, 7]), prefixLen: 32 });
  assert.equal(parsePrefix('10.1.0.0/24').prefixLen, 24);
  assert.throws(() => parsePrefix('10.1.0.0/33'), ConfigError);
  assert.throws(() => parsePrefix('10.1.0/24'), /^ConfigError: dst: "10.1.0\/24" is not an IPv4 prefix/);
  assert.throws(() => macBytes('02:00:00:00:00'), /not a MAC address/);
  assert.equal(formatIp(Buffer.from('fe800000000000000000000000000001', 'hex')), 'fe80::1');
  assert.equal(formatIp(Buffer.from('20010db8000000010000000000000000', 'hex')), '2001:db8:0:1::');
});

test('decoders given random bytes either decode or throw WireError, and re-encoding a decoded link is stable', () => {
  const decoders = [decodeLinkMsg, decodeAddrMsg, decodeRouteMsg, decodeNeighMsg];
  for (let i = 0; i < 2000; i++) {
    const buf = randomBytes(Math.floor(Math.random() * 96));
    for (const d of decoders) {
      try {
        d(buf);
      } catch (err) {
        if (!(err instanceof WireError)) throw new Error(`${d.name} threw ${String(err)} on ${buf.toString('hex')}`);
      }
    }
  }
  // Random but well-formed: decode(encode(decode(x))) === decode(x) for links built from random field values.
  for (let i = 0; i < 200; i++) {
    const r = randomBytes(16);
    const m: LinkMsg = {
      family: 0, type: r.readUInt16LE(0), index: r.readInt32LE(2) & 0x7fffffff, flags: r.readUInt32LE(6), change: 0,
      ifname: `if${r.readUInt16LE(10)}`, mtu: r.readUInt16LE(12), address: [...r.subarray(0, 6)].map((x) => x.toString(16).padStart(2, '0')).join(':'),
    };
    const once = decodeLinkMsg(encodeLinkMsg(m));
    assert.deepEqual(decodeLinkMsg(encodeLinkMsg(once)), once);
    assert.deepEqual(once, m);
  }
});
