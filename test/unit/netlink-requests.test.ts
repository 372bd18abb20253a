// The socket's request/reply loop and the bytes each verb sends, checked
// against a strict scripted fake kernel (no root, no real socket).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { addrReplace } from '../../src/netlink/addr.ts';
import { NetlinkHandle } from '../../src/netlink/handle.ts';
import { linkAddVeth, linkAddVxlan, linkGet, linkList, linkSet, linkSetNetns } from '../../src/netlink/link.ts';
import { neighReplace } from '../../src/netlink/neigh.ts';
import { routeDel, routeList, routeReplace } from '../../src/netlink/route.ts';
import { DumpInterruptedError, NetlinkSocket, type Transport } from '../../src/netlink/socket.ts';
import { decodeAddrMsg } from '../../src/netlink/wire/addr-msg.ts';
import { encodeErrorPayload } from '../../src/netlink/wire/error-msg.ts';
import {
  encodeMsg, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_EXCL, NLM_F_MULTI, NLM_F_REPLACE, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR,
  parseMsgs, RTM_DELROUTE, RTM_GETLINK, RTM_GETROUTE, RTM_NEWADDR, RTM_NEWLINK, RTM_NEWNEIGH, RTM_NEWROUTE, RTM_SETLINK, type NlMsg,
} from '../../src/netlink/wire/header.ts';
import { decodeLinkMsg, emptyLinkMsg, encodeLinkMsg, IFF_NOARP, IFF_UP, RTEXT_FILTER_SKIP_STATS } from '../../src/netlink/wire/link-msg.ts';
import { decodeNeighMsg } from '../../src/netlink/wire/neigh-msg.ts';
import { decodeRouteMsg, encodeRouteMsg, RT_SCOPE_LINK, RT_SCOPE_NOWHERE, RTPROT_BOOT } from '../../src/netlink/wire/route-msg.ts';
import { hasErrno, KernelError } from '../../src/shared/errors.ts';

type Reply = (req: NlMsg) => Buffer[];

/** A fake kernel: each request gets the datagrams `reply` returns; recv with nothing queued fails the test. */
class FakeKernel implements Transport {
  readonly sent: NlMsg[] = [];
  readonly #queue: Buffer[] = [];
  closes = 0;
  constructor(private readonly reply: Reply) {}
  send(msg: Buffer): void {
    const [m] = parseMsgs(msg);
    this.sent.push({ ...m!, payload: Buffer.from(m!.payload) });
    this.#queue.push(...this.reply(m!));
  }
  recv(): Buffer {
    const b = this.#queue.shift();
    if (!b) throw new Error('fake kernel: recv() with no reply queued (the socket would block forever)');
    return b;
  }
  close(): void {
    this.closes++;
  }
}

const ack = (req: NlMsg, error = 0, msg?: string): Buffer => {
  const { payload, flags } = encodeErrorPayload({ error, request: { len: 16 + req.payload.length, type: req.type, flags: req.flags, seq: req.seq, pid: 0 }, extAck: msg ? { msg } : undefined });
  return encodeMsg({ type: NLMSG_ERROR, flags, seq: req.seq, payload });
};
const done = (seq: number, flags = NLM_F_MULTI): Buffer => encodeMsg({ type: NLMSG_DONE, flags, seq, payload: Buffer.alloc(4) });
const linkReply = (seq: number, index: number, name: string, flags = NLM_F_MULTI): Buffer =>
  encodeMsg({ type: RTM_NEWLINK, flags, seq, payload: encodeLinkMsg({ ...emptyLinkMsg(index), type: 1, ifname: name, mtu: 1500, address: '02:00:00:00:00:01' }) });

function handle(reply: Reply): { h: NetlinkHandle; k: FakeKernel } {
  const k = new FakeKernel(reply);
  return { h: NetlinkHandle.fromSocket(new NetlinkSocket(k, true)), k };
}

test('request: waits for its own ACK, skipping a stale reply to an earlier sequence number', () => {
  // The first datagram answers other sequence numbers (one with an error): none of it is ours.
  const { h, k } = handle((req) => [Buffer.concat([linkReply(req.seq - 1 || 99, 9, 'stale', 0), ack({ ...req, seq: 12345 }, -22)]), ack(req)]);
  linkSet(h, 3, { up: true });
  assert.equal(k.sent.length, 1);
  assert.equal(k.sent[0]!.flags, NLM_F_REQUEST | NLM_F_ACK);
});

test('request: NLMSG_ERROR becomes KernelError with op, errno name and ext-ack text', () => {
  const { h } = handle((req) => [ack(req, -17, 'A VXLAN device with the specified VNI already exists')]);
  assert.throws(
    () => linkAddVxlan(h, { name: 'cilium_vxlan', port: 8472, external: true }),
    (err: unknown) =>
      err instanceof KernelError && hasErrno(err, 'EEXIST') &&
      err.message === 'RTM_NEWLINK cilium_vxlan type vxlan external dstport 8472: file exists (EEXIST) (kernel: A VXLAN device with the specified VNI already exists)',
  );
});

test('linkGet: the answer to a GET is returned; ENODEV means undefined', () => {
  const { h, k } = handle((req) => {
    const m = decodeLinkMsg(req.payload);
    return m.ifname === 'eth0' ? [linkReply(req.seq, 4, 'eth0', 0), ack(req)] : [ack(req, -19)];
  });
  assert.equal(linkGet(h, 'eth0')?.index, 4);
  assert.equal(linkGet(h, 'nope'), undefined);
  const sent = decodeLinkMsg(k.sent[0]!.payload);
  assert.equal(k.sent[0]!.type, RTM_GETLINK);
  assert.equal(sent.extMask, RTEXT_FILTER_SKIP_STATS);
});

test('a failing SETLINK names the link: its name is looked up on the error path only', () => {
  const { h, k } = handle((req) => (req.type === RTM_SETLINK ? [ack(req, -22, 'mtu greater than device maximum')] : [linkReply(req.seq, 3, 'cilium_host', 0), ack(req)]));
  assert.throws(() => linkSet(h, 3, { mtu: 100000 }), { message: 'RTM_SETLINK cilium_host (ifindex 3) mtu 100000: invalid argument (EINVAL) (kernel: mtu greater than device maximum)' });
  assert.deepEqual(k.sent.map((m) => m.type), [RTM_SETLINK, RTM_GETLINK]);
});

test('dump: collects a multipart reply over several datagrams until NLMSG_DONE', () => {
  const { h, k } = handle((req) => [Buffer.concat([linkReply(req.seq, 1, 'lo'), linkReply(req.seq, 2, 'eth0')]), Buffer.concat([linkReply(req.seq, 3, 'eth1'), done(req.seq)])]);
  assert.deepEqual(linkList(h).map((l) => l.name), ['lo', 'eth0', 'eth1']);
  assert.equal(k.sent[0]!.flags, NLM_F_REQUEST | NLM_F_DUMP);
});

test('dump: NLM_F_DUMP_INTR restarts the dump and only the consistent result is returned', () => {
  let n = 0;
  const { h, k } = handle((req) =>
    ++n === 1 ? [Buffer.concat([linkReply(req.seq, 1, 'lo'), linkReply(req.seq, 2, 'half', NLM_F_MULTI | NLM_F_DUMP_INTR), done(req.seq, NLM_F_MULTI | NLM_F_DUMP_INTR)])] : [Buffer.concat([linkReply(req.seq, 1, 'lo'), linkReply(req.seq, 3, 'new'), done(req.seq)])],
  );
  assert.deepEqual(linkList(h).map((l) => l.name), ['lo', 'new']);
  assert.equal(k.sent.length, 2);
});

test('dump: a dump interrupted every time ends in DumpInterruptedError carrying the partial result', () => {
  const { h, k } = handle((req) => [Buffer.concat([linkReply(req.seq, 1, 'lo', NLM_F_MULTI | NLM_F_DUMP_INTR), done(req.seq, NLM_F_MULTI | NLM_F_DUMP_INTR)])]);
  assert.throws(() => linkList(h), (err: unknown) => err instanceof DumpInterruptedError && err.partial.length === 1 && err.code === 'E_DUMP_INTERRUPTED');
  assert.equal(k.sent.length, 5);
});

test('dump: an error at the start of a dump or in NLMSG_DONE is thrown; a missing table lists as empty', () => {
  const { h } = handle((req) => [ack(req, -2, 'ipv4: FIB table does not exist')]);
  assert.deepEqual(routeList(h, { table: 100 }), []);
  const { h: h2 } = handle((req) => {
    const p = Buffer.alloc(4);
    p.writeInt32LE(-22);
    return [encodeMsg({ type: NLMSG_DONE, flags: NLM_F_MULTI, seq: req.seq, payload: p })];
  });
  assert.throws(() => linkList(h2), (err: unknown) => err instanceof KernelError && err.errnoName === 'EINVAL' && err.op === 'RTM_GETLINK');
});

test('closed handle: E_CLOSED, and closing releases the transport once', () => {
  const { h, k } = handle((req) => [ack(req)]);
  h.close();
  h.close();
  assert.equal(k.closes, 1);
  assert.throws(() => linkList(h), { code: 'E_CLOSED' });
});

test('linkAddVeth: one RTM_NEWLINK with CREATE|EXCL, mtu/txqlen on both ends, peer placed by netns fd', () => {
  const { h, k } = handle((req) => [ack(req)]);
  // /proc/self/ns/net exists without root; the fd only has to be valid while the request is sent.
  linkAddVeth(h, { name: 'lxc1', peerName: 'eth0', mtu: 1450, txqlen: 1000, mac: '02:00:00:00:00:01', peerNetns: '/proc/self/ns/net' });
  const req = k.sent[0]!;
  assert.equal(req.type, RTM_NEWLINK);
  assert.equal(req.flags, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL);
  const m = decodeLinkMsg(req.payload);
  assert.equal(m.ifname, 'lxc1');
  assert.equal(m.mtu, 1450);
  const peer = m.linkinfo?.vethPeer;
  assert.equal(m.linkinfo?.kind, 'veth');
  assert.equal(peer?.ifname, 'eth0');
  assert.equal(peer?.mtu, 1450);
  assert.equal(peer?.txqlen, 1000);
  assert.ok(typeof peer?.netnsFd === 'number' && peer.netnsFd > 2);
  assert.throws(() => linkAddVeth(h, { name: 'x', peerName: 'a-name-that-is-too-long' }), /peerName: "a-name-that-is-too-long" is not a valid interface name/);
  assert.throws(() => linkAddVeth(h, { name: 'x', peerName: 'y', peerNetns: 'mbt-no-such-netns' }), { code: 'E_NETNS' });
});

test('linkAddVxlan: external implies nolearning; the port range is sent only when given', () => {
  const { h, k } = handle((req) => [ack(req)]);
  linkAddVxlan(h, { name: 'vx0', port: 8472, external: true, srcPortLow: 30000, srcPortHigh: 40000, mtu: 1500 });
  linkAddVxlan(h, { name: 'flannel.1', port: 8472, vni: 1, local: '192.168.0.2', underlayIndex: 2 });
  const [a, b] = k.sent.map((s) => decodeLinkMsg(s.payload).linkinfo?.vxlan);
  assert.deepEqual(a, { port: 8472, learning: false, portRange: { low: 30000, high: 40000 }, collectMetadata: true });
  assert.deepEqual(b, { id: 1, link: 2, local: '192.168.0.2', port: 8472 });
});

test('linkSet / linkSetNetns: one SETLINK with exact flag/change masks; netns move and rename together', () => {
  const { h, k } = handle((req) => [ack(req)]);
  linkSet(h, 7, { up: true, noarp: true, mtu: 1450 });
  linkSet(h, 7, { up: false });
  linkSetNetns(h, 8, '/proc/self/ns/net', { newName: 'eth0' });
  const [a, b, c] = k.sent.map((s) => decodeLinkMsg(s.payload));
  assert.deepEqual([a!.index, a!.flags, a!.change, a!.mtu], [7, IFF_UP | IFF_NOARP, IFF_UP | IFF_NOARP, 1450]);
  assert.deepEqual([b!.flags, b!.change], [0, IFF_UP], 'down clears only IFF_UP');
  assert.equal(c!.ifname, 'eth0');
  assert.equal(typeof c!.netnsFd, 'number');
  assert.equal(k.sent.length, 3);
});

test('routes: ip-route defaults on add (proto boot, scope link without gateway), wildcards on delete', () => {
  const { h, k } = handle((req) => [ack(req)]);
  routeReplace(h, { dst: '10.0.0.1', oif: 5 });
  routeDel(h, { dst: '10.1.0.0/24' });
  routeReplace(h, { dst: '10.2.0.0/16', gateway: '10.0.0.1', oif: 5, table: 1000, mtu: 1400 });
  const [a, b, c] = k.sent.map((s) => decodeRouteMsg(s.payload));
  assert.equal(k.sent[0]!.flags & (NLM_F_CREATE | NLM_F_REPLACE | NLM_F_EXCL), NLM_F_CREATE | NLM_F_REPLACE);
  assert.deepEqual([a!.dstLen, a!.dst, a!.protocol, a!.scope, a!.type, a!.tableId], [32, '10.0.0.1', RTPROT_BOOT, RT_SCOPE_LINK, 1, 254]);
  assert.equal(k.sent[1]!.type, RTM_DELROUTE);
  assert.deepEqual([b!.protocol, b!.scope, b!.type], [0, RT_SCOPE_NOWHERE, 0]);
  assert.deepEqual([c!.table, c!.tableId, c!.scope, c!.metrics], [0, 1000, 0, { mtu: 1400 }], 'tables > 255 only in RTA_TABLE');
});

test('routeList asks the kernel to filter by table (strict mode) and keeps only that table', () => {
  const { h, k } = handle((req) => [Buffer.concat([
    encodeMsg({ type: RTM_NEWROUTE, flags: NLM_F_MULTI, seq: req.seq, payload: encodeRouteMsg({ family: 2, dstLen: 24, srcLen: 0, tos: 0, table: 254, protocol: 2, scope: 253, type: 1, flags: 0, dst: '10.0.0.0', oif: 2, tableId: 254 }) }),
    encodeMsg({ type: RTM_NEWROUTE, flags: NLM_F_MULTI, seq: req.seq, payload: encodeRouteMsg({ family: 2, dstLen: 32, srcLen: 0, tos: 0, table: 255, protocol: 2, scope: 254, type: 2, flags: 0, dst: '10.0.0.1', oif: 2, tableId: 255 }) }),
    done(req.seq),
  ])]);
  assert.deepEqual(routeList(h).map((r) => r.dst), ['10.0.0.0/24']);
  assert.equal(k.sent[0]!.type, RTM_GETROUTE);
  assert.equal(decodeRouteMsg(k.sent[0]!.payload).tableId, 254);
});

test('addrReplace sends IFA_LOCAL = IFA_ADDRESS; neighReplace of an FDB entry is AF_BRIDGE, NTF_SELF, permanent', () => {
  const { h, k } = handle((req) => [ack(req)]);
  addrReplace(h, { index: 5, address: '10.0.0.1', prefixLen: 32 });
  neighReplace(h, { index: 6, mac: '02:00:00:00:00:09', dst: '192.168.1.2' });
  neighReplace(h, { index: 6, ip: '10.2.0.0', mac: '02:00:00:00:00:09' });
  assert.deepEqual(k.sent.map((m) => m.type), [RTM_NEWADDR, RTM_NEWNEIGH, RTM_NEWNEIGH]);
  const a = decodeAddrMsg(k.sent[0]!.payload);
  assert.deepEqual([a.local, a.address, a.prefixLen, a.index], ['10.0.0.1', '10.0.0.1', 32, 5]);
  const fdb = decodeNeighMsg(k.sent[1]!.payload);
  assert.deepEqual([fdb.family, fdb.flags, fdb.state, fdb.lladdr, fdb.dst], [7, 0x02, 0x80, '02:00:00:00:00:09', '192.168.1.2']);
  const arp = decodeNeighMsg(k.sent[2]!.payload);
  assert.deepEqual([arp.family, arp.state, arp.dst, arp.lladdr], [2, 0x80, '10.2.0.0', '02:00:00:00:00:09']);
});
