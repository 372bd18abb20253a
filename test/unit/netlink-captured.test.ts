// Decoders against real kernel replies captured by test/testdata/netlink/capture.ts
// (a throwaway netns with a veth pair, a veth whose peer is in another netns,
// an external vxlan device, addresses and routes made with iproute2).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { addrFromMsg } from '../../src/netlink/addr.ts';
import { linkFromMsg } from '../../src/netlink/link.ts';
import { routeFromMsg } from '../../src/netlink/route.ts';
import { NetlinkSocket, type Transport } from '../../src/netlink/socket.ts';
import { decodeAddrMsg } from '../../src/netlink/wire/addr-msg.ts';
import { decodeError } from '../../src/netlink/wire/error-msg.ts';
import { NLMSG_DONE, NLMSG_ERROR, NLM_F_MULTI, parseMsgs, RTM_NEWADDR, RTM_NEWLINK, RTM_NEWROUTE } from '../../src/netlink/wire/header.ts';
import { decodeLinkMsg } from '../../src/netlink/wire/link-msg.ts';
import { decodeRouteMsg } from '../../src/netlink/wire/route-msg.ts';
import { KernelError } from '../../src/shared/errors.ts';

const data = (f: string): Buffer => readFileSync(new URL(`../testdata/netlink/${f}`, import.meta.url));

test('RTM_GETLINK dump: veth pair, veth with peer in another netns, external vxlan', () => {
  const msgs = parseMsgs(data('link-dump.bin'));
  assert.equal(msgs.at(-1)!.type, NLMSG_DONE);
  assert.ok(msgs.slice(0, -1).every((m) => m.type === RTM_NEWLINK && m.flags & NLM_F_MULTI));
  const links = new Map(msgs.filter((m) => m.type === RTM_NEWLINK).map((m) => linkFromMsg(decodeLinkMsg(m.payload))).map((l) => [l.name, l]));
  assert.deepEqual([...links.keys()], ['lo', 'vcap1', 'vcap0', 'vxcap', 'vcap2']);

  const lo = links.get('lo')!;
  assert.equal(lo.index, 1);
  assert.equal(lo.kind, undefined);
  assert.equal(lo.mtu, 65536);
  assert.equal(lo.up, true);

  const v0 = links.get('vcap0')!;
  const v1 = links.get('vcap1')!;
  assert.deepEqual(
    { index: v0.index, kind: v0.kind, mtu: v0.mtu, mac: v0.mac, up: v0.up, noarp: v0.noarp, txqlen: v0.txqlen, operstate: v0.operstate, parentIndex: v0.parentIndex },
    { index: 3, kind: 'veth', mtu: 1450, mac: '02:00:00:00:00:a0', up: true, noarp: true, txqlen: 1000, operstate: 'up', parentIndex: 2 },
  );
  assert.equal(v1.parentIndex, v0.index, 'the peers point at each other through IFLA_LINK');
  assert.equal(v1.noarp, false);
  assert.equal(v0.linkNetnsId, undefined, 'peer in the same netns: no IFLA_LINK_NETNSID');

  const v2 = links.get('vcap2')!;
  assert.equal(v2.linkNetnsId, 0, 'peer in another netns: IFLA_LINK_NETNSID names it');
  assert.equal(v2.parentIndex, 2, "IFLA_LINK is the peer's ifindex in the other netns");
  assert.equal(v2.up, false);
  assert.equal(v2.operstate, 'down');

  const vx = links.get('vxcap')!;
  assert.equal(vx.kind, 'vxlan');
  assert.equal(vx.mac, '02:00:00:00:00:b0');
  assert.deepEqual(vx.vxlan, { vni: 0, port: 8472, srcPortLow: 30000, srcPortHigh: 40000, external: true, learning: false, ttl: 0 });
});

test('RTM_GETROUTE dump: proto kernel, scope link, via + src, metric, mtu metric, default, local table', () => {
  const msgs = parseMsgs(data('route-dump.bin'));
  const routes = msgs.filter((m) => m.type === RTM_NEWROUTE).map((m) => routeFromMsg(decodeRouteMsg(m.payload)));
  const main = routes.filter((r) => r.table === 254);
  assert.deepEqual(main, [
    { dst: 'default', gateway: '10.98.0.254', oif: 2, protocol: 'boot', scope: 'universe', metric: 0, table: 254, type: 'unicast' },
    { dst: '10.98.0.0/24', oif: 2, prefsrc: '10.98.0.1', protocol: 'kernel', scope: 'link', metric: 0, table: 254, type: 'unicast' },
    { dst: '10.99.0.1/32', oif: 3, protocol: 'kernel', scope: 'link', metric: 0, table: 254, type: 'unicast' },
    { dst: '10.99.1.0/24', gateway: '10.99.0.1', oif: 3, prefsrc: '10.99.0.1', protocol: 'kernel', scope: 'universe', metric: 0, table: 254, type: 'unicast' },
    { dst: '10.99.2.0/24', gateway: '10.99.0.1', oif: 3, prefsrc: '10.99.0.1', protocol: 'kernel', scope: 'universe', metric: 7, mtu: 1400, table: 254, type: 'unicast' },
  ]);
  const local = routes.filter((r) => r.table === 255);
  assert.deepEqual(local.find((r) => r.dst === '10.99.0.1/32'), { dst: '10.99.0.1/32', oif: 3, prefsrc: '10.99.0.1', protocol: 'kernel', scope: 'host', metric: 0, table: 255, type: 'local' });
  assert.equal(local.find((r) => r.dst === '10.98.0.255/32')?.type, 'broadcast');
});

test('RTM_GETADDR dump: /32 without broadcast, /24 with brd, loopback host scope', () => {
  const addrs = parseMsgs(data('addr-dump.bin')).filter((m) => m.type === RTM_NEWADDR).map((m) => addrFromMsg(decodeAddrMsg(m.payload)));
  assert.deepEqual(addrs, [
    { index: 1, address: '127.0.0.1', prefixLen: 8, scope: 254, label: 'lo' },
    { index: 2, address: '10.98.0.1', prefixLen: 24, scope: 0, label: 'vcap1', broadcast: '10.98.0.255' },
    { index: 3, address: '10.99.0.1', prefixLen: 32, scope: 0, label: 'vcap0' },
  ]);
});

test('captured NLMSG_ERROR with extended ack becomes a readable KernelError', () => {
  const [m] = parseMsgs(data('error-extack.bin'));
  assert.equal(m!.type, NLMSG_ERROR);
  const e = decodeError(m!);
  assert.equal(e.error, -22);
  assert.equal(e.request.type, RTM_NEWROUTE);
  assert.equal(e.extAck?.msg, 'Invalid prefix for given prefix length');

  // Replayed through the socket's reply loop (the captured reply answers seq 4, so the fake re-stamps it).
  let seq = 0;
  const t: Transport = {
    send: (msg) => void (seq = msg.readUInt32LE(8)),
    recv: () => {
      const b = Buffer.from(data('error-extack.bin'));
      b.writeUInt32LE(seq, 8);
      return b;
    },
    close: () => {},
  };
  const sock = new NetlinkSocket(t, true);
  assert.throws(
    () => sock.request(RTM_NEWROUTE, 0, Buffer.alloc(12), '10.77.0.1/16'),
    (err: unknown) =>
      err instanceof KernelError && err.errnoName === 'EINVAL' && err.op === 'RTM_NEWROUTE 10.77.0.1/16' &&
      err.message === 'RTM_NEWROUTE 10.77.0.1/16: invalid argument (EINVAL) (kernel: Invalid prefix for given prefix length)',
  );
});
