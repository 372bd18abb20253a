// Address and route verbs against the real kernel in throwaway netns,
// checked with `ip -j` — the node routes from SPEC §1.2 as the example.
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import {
  addrAdd, addrDel, addrList, addrReplace, linkAddVeth, linkGet, linkSet, NetlinkHandle, routeAdd, routeDel, routeList, routeReplace, type Route,
} from '../../src/netlink/index.ts';
import { KernelError } from '../../src/shared/errors.ts';
import { ipJson, makeNetns } from '../helpers/netns.ts';
import { rootOnly } from '../helpers/skip.ts';

const skip = rootOnly('requires root (creates network namespaces)');

/** A netns with the cilium_host/cilium_net pair up and the router IP on cilium_host. */
function node(t: TestContext): { ns: string; h: NetlinkHandle; host: number } {
  const ns = makeNetns(t);
  const h = NetlinkHandle.open(ns);
  t.after(() => h.close());
  linkAddVeth(h, { name: 'cilium_host', peerName: 'cilium_net', mtu: 1500 });
  const host = linkGet(h, 'cilium_host')!.index;
  linkSet(h, host, { up: true, noarp: true });
  linkSet(h, linkGet(h, 'cilium_net')!.index, { up: true, noarp: true });
  return { ns, h, host };
}

/** `ip -j -d route show` without the volatile "flags" (linkdown etc.). */
function ipRoutes(ns: string, ...args: string[]): any[] {
  return ipJson(ns, ['-d', 'route', 'show', ...args]).map(({ flags: _f, ...r }: any) => r);
}

test('addrReplace is idempotent; addrAdd of an existing address is EEXIST; addrDel removes it', { skip }, (t) => {
  const { ns, h, host } = node(t);
  addrReplace(h, { index: host, address: '10.0.0.1', prefixLen: 32 });
  addrReplace(h, { index: host, address: '10.0.0.1', prefixLen: 32 });
  const info = ipJson(ns, ['addr', 'show', 'dev', 'cilium_host'])[0].addr_info.filter((a: any) => a.family === 'inet');
  assert.deepEqual(info.map((a: any) => [a.local, a.prefixlen, a.scope]), [['10.0.0.1', 32, 'global']]);
  assert.deepEqual(addrList(h, host), [{ index: host, address: '10.0.0.1', prefixLen: 32, scope: 0, label: 'cilium_host' }]);

  assert.throws(() => addrAdd(h, { index: host, address: '10.0.0.1', prefixLen: 32 }), (err: unknown) =>
    err instanceof KernelError && err.errnoName === 'EEXIST' &&
    err.message === `RTM_NEWADDR 10.0.0.1/32 ifindex ${host}: file exists (EEXIST) (kernel: ipv4: Address already assigned)`);

  addrAdd(h, { index: host, address: '10.0.9.1', prefixLen: 24, broadcast: '10.0.9.255' });
  assert.equal(ipJson(ns, ['addr', 'show', 'dev', 'cilium_host'])[0].addr_info.find((a: any) => a.local === '10.0.9.1')?.broadcast, '10.0.9.255');
  assert.deepEqual(addrList(h).filter((a) => a.index === host).map((a) => a.address).sort(), ['10.0.0.1', '10.0.9.1']);
  addrDel(h, { index: host, address: '10.0.9.1', prefixLen: 24 });
  addrDel(h, { index: host, address: '10.0.0.1', prefixLen: 32 });
  assert.deepEqual(addrList(h, host), []);
  assert.throws(() => addrDel(h, { index: host, address: '10.0.0.1', prefixLen: 32 }), { errnoName: 'EADDRNOTAVAIL' });
});

test('node routes: dev/scope link, via + src with proto kernel, mtu metric and a metric, as ip -j shows them', { skip }, (t) => {
  const { ns, h, host } = node(t);
  addrReplace(h, { index: host, address: '10.0.0.1', prefixLen: 32 });
  routeReplace(h, { dst: '10.0.0.1/32', oif: host, protocol: 'kernel', scope: 'link' });
  routeReplace(h, { dst: '10.0.1.0/24', gateway: '10.0.0.1', oif: host, protocol: 'kernel', prefsrc: '10.0.0.1' });
  routeReplace(h, { dst: '10.0.2.0/24', gateway: '10.0.0.1', oif: host, protocol: 'kernel', prefsrc: '10.0.0.1', mtu: 1450 });
  routeReplace(h, { dst: '10.0.3.0/24', gateway: '10.0.0.1', oif: host, protocol: 'static', metric: 100 });

  assert.deepEqual(ipRoutes(ns), [
    { type: 'unicast', dst: '10.0.0.1', dev: 'cilium_host', protocol: 'kernel', scope: 'link' },
    { type: 'unicast', dst: '10.0.1.0/24', gateway: '10.0.0.1', dev: 'cilium_host', protocol: 'kernel', scope: 'global', prefsrc: '10.0.0.1' },
    { type: 'unicast', dst: '10.0.2.0/24', gateway: '10.0.0.1', dev: 'cilium_host', protocol: 'kernel', scope: 'global', prefsrc: '10.0.0.1', metrics: [{ mtu: 1450 }] },
    { type: 'unicast', dst: '10.0.3.0/24', gateway: '10.0.0.1', dev: 'cilium_host', protocol: 'static', scope: 'global', metric: 100 },
  ]);

  // Listed with the same names they were written with.
  const base = { table: 254, type: 'unicast' as const };
  assert.deepEqual(routeList(h), [
    { ...base, dst: '10.0.0.1/32', oif: host, protocol: 'kernel', scope: 'link', metric: 0 },
    { ...base, dst: '10.0.1.0/24', gateway: '10.0.0.1', oif: host, protocol: 'kernel', scope: 'universe', prefsrc: '10.0.0.1', metric: 0 },
    { ...base, dst: '10.0.2.0/24', gateway: '10.0.0.1', oif: host, protocol: 'kernel', scope: 'universe', prefsrc: '10.0.0.1', metric: 0, mtu: 1450 },
    { ...base, dst: '10.0.3.0/24', gateway: '10.0.0.1', oif: host, protocol: 'static', scope: 'universe', metric: 100 },
  ]);
});

test('routeReplace is idempotent and updates in place; routeAdd of an existing route is EEXIST', { skip }, (t) => {
  const { ns, h, host } = node(t);
  addrReplace(h, { index: host, address: '10.0.0.1', prefixLen: 32 });
  const r: Route = { dst: '10.0.2.0/24', gateway: '10.0.0.1', oif: host, protocol: 'kernel', prefsrc: '10.0.0.1', mtu: 1450 };
  routeReplace(h, { dst: '10.0.0.1', oif: host, protocol: 'kernel' });
  routeReplace(h, r);
  routeReplace(h, r);
  assert.equal(ipRoutes(ns, '10.0.2.0/24').length, 1);
  routeReplace(h, { ...r, mtu: 1400 });
  assert.deepEqual(ipRoutes(ns, '10.0.2.0/24').map((x) => x.metrics), [[{ mtu: 1400 }]]);

  assert.throws(() => routeAdd(h, r), (err: unknown) =>
    err instanceof KernelError && err.errnoName === 'EEXIST' && err.message === `RTM_NEWROUTE 10.0.2.0/24 via 10.0.0.1 oif ${host}: file exists (EEXIST)`);
  // Same prefix with another metric is a different route.
  routeAdd(h, { ...r, metric: 10 });
  assert.equal(ipRoutes(ns, '10.0.2.0/24').length, 2);
});

test('a listed route can be passed to routeDel; deleting a missing route is ESRCH', { skip }, (t) => {
  const { ns, h, host } = node(t);
  addrReplace(h, { index: host, address: '10.0.0.1', prefixLen: 32 });
  routeAdd(h, { dst: '10.0.0.1', oif: host, protocol: 'kernel' });
  routeAdd(h, { dst: '10.0.5.0/24', gateway: '10.0.0.1', oif: host, mtu: 1400, metric: 5 });
  routeAdd(h, { dst: '10.0.5.0/24', gateway: '10.0.0.1', oif: host, metric: 6 });
  const listed = routeList(h).find((r) => r.dst === '10.0.5.0/24' && r.metric === 6)!;
  routeDel(h, listed);
  assert.deepEqual(ipRoutes(ns, '10.0.5.0/24').map((r) => r.metric), [5], 'only the route with metric 6 is gone');
  routeDel(h, { dst: '10.0.5.0/24' }); // wildcards: any remaining 10.0.5.0/24
  assert.deepEqual(ipRoutes(ns, '10.0.5.0/24'), []);
  assert.throws(() => routeDel(h, { dst: '10.0.5.0/24' }), { message: 'RTM_DELROUTE 10.0.5.0/24: no such process (ESRCH)' });
});

test('pod routes: default via the router with mtu, onlink gateway, and a separate table', { skip }, (t) => {
  const { ns, h, host } = node(t);
  routeAdd(h, { dst: '10.0.0.1', oif: host, scope: 'link' });
  routeAdd(h, { dst: 'default', gateway: '10.0.0.1', oif: host, mtu: 1450 });
  routeAdd(h, { dst: '10.9.0.0/16', gateway: '192.168.77.1', oif: host, onlink: true });
  routeReplace(h, { dst: '10.8.0.0/16', oif: host, table: 1000 });

  const ip = ipJson(ns, ['route', 'show']);
  const def = ip.find((r: any) => r.dst === 'default');
  assert.deepEqual([def.gateway, def.dev, def.metrics], ['10.0.0.1', 'cilium_host', [{ mtu: 1450 }]]);
  assert.ok(ip.find((r: any) => r.dst === '10.9.0.0/16').flags.includes('onlink'));
  assert.deepEqual(ipJson(ns, ['route', 'show', 'table', '1000']).map((r: any) => [r.dst, r.dev, r.scope]), [['10.8.0.0/16', 'cilium_host', 'link']]);

  const main = routeList(h);
  assert.deepEqual(main.find((r) => r.dst === 'default'), { dst: 'default', gateway: '10.0.0.1', oif: host, protocol: 'boot', scope: 'universe', metric: 0, mtu: 1450, table: 254, type: 'unicast' });
  assert.equal(main.find((r) => r.dst === '10.9.0.0/16')?.onlink, true);
  assert.ok(!main.some((r) => r.table !== 254));
  assert.deepEqual(routeList(h, { table: 1000 }).map((r) => [r.dst, r.table]), [['10.8.0.0/16', 1000]]);
  assert.deepEqual(routeList(h, { table: 2000 }), [], 'a table that does not exist lists as empty');
  const all = routeList(h, { table: 0 });
  assert.ok(all.some((r) => r.table === 255 && r.type === 'local' && r.dst === '127.0.0.1/32' && r.scope === 'host'), 'table 0 lists every table');
  assert.ok(all.some((r) => r.table === 1000) && all.some((r) => r.table === 254));
});
