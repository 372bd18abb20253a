// `membrane datapath init` in throwaway network namespaces: the seed's devices,
// addresses, routes, sysctls and tcx attachments, idempotency, in-place
// changes, and bad input that must change nothing.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { makeNetns, ipJson, nsExec } from '../helpers/netns.ts';
import { membrane, membraneOk, testNode, writeConfig } from '../helpers/membrane.ts';
import { rootOnly } from '../helpers/skip.ts';

const skip = rootOnly('requires root');

function baseConfig(nodeName: string, extra: Record<string, unknown> = {}) {
  return {
    nodeName, routerIP: '10.244.2.161', podCIDR: '10.244.2.0/24', deviceMTU: 9001,
    remoteNodes: [{ podCIDR: '10.244.0.0/24', nodeIP: '10.13.1.5' }, { podCIDR: '10.244.1.0/24', nodeIP: '10.13.1.6' }],
    ...extra,
  };
}

function links(ns: string) {
  return ipJson<any[]>(ns, ['-d', 'link', 'show']);
}

function link(ns: string, name: string) {
  return links(ns).find((l) => l.ifname === name);
}

function routeLines(ns: string): string[] {
  return execFileSync('ip', ['-n', ns, 'route', 'show'], { encoding: 'utf8' }).split('\n').map((l) => l.trim()).filter(Boolean);
}

function tcxLines(ns: string): string[] {
  const out = nsExec(ns, ['bpftool', 'net', 'show']);
  return out.split('\n').map((l) => l.replace(/ prog_id \d+ link_id \d+\s*$/, '').trim()).filter((l) => / tcx\//.test(l));
}

describe('datapath init', { skip }, () => {
  test('creates the seed devices, address, routes, sysctls and tcx programs', (t) => {
    const ns = makeNetns(t);
    const { nodeName, pinDir } = testNode(t);
    const cfg = writeConfig(t, baseConfig(nodeName));
    membraneOk(ns, ['datapath', 'init', '--config', cfg]);

    const host = link(ns, 'cilium_host');
    const net = link(ns, 'cilium_net');
    const vx = link(ns, 'cilium_vxlan');
    // ip shows the pair as cilium_net@cilium_host and cilium_host@cilium_net.
    assert.equal(host.link, 'cilium_net');
    assert.equal(net.link, 'cilium_host');
    for (const l of [host, net]) {
      assert.equal(l.linkinfo.info_kind, 'veth');
      assert.ok(l.flags.includes('NOARP') && l.flags.includes('UP'), `${l.ifname} flags ${l.flags}`);
      assert.equal(l.mtu, 9001);
      assert.equal(l.txqlen, 1000);
      // Locally administered unicast MAC.
      assert.equal(parseInt(l.address.slice(0, 2), 16) & 0x03, 0x02, l.address);
    }
    assert.equal(vx.linkinfo.info_kind, 'vxlan');
    assert.equal(vx.linkinfo.info_data.external, true);
    assert.equal(vx.linkinfo.info_data.port, 8472);
    assert.equal(vx.mtu, 9001);
    assert.ok(vx.flags.includes('UP'));

    const addrs = ipJson<any[]>(ns, ['-4', 'addr', 'show', 'dev', 'cilium_host'])[0].addr_info;
    assert.deepEqual(addrs.map((a: any) => `${a.local}/${a.prefixlen}`), ['10.244.2.161/32']);
    assert.equal(ipJson<any[]>(ns, ['-4', 'addr', 'show', 'dev', 'cilium_net'])[0]?.addr_info?.length ?? 0, 0);
    assert.equal(ipJson<any[]>(ns, ['-4', 'addr', 'show', 'dev', 'cilium_vxlan'])[0]?.addr_info?.length ?? 0, 0);

    assert.deepEqual(routeLines(ns).sort(), [
      '10.244.0.0/24 via 10.244.2.161 dev cilium_host proto kernel src 10.244.2.161 mtu 8951',
      '10.244.1.0/24 via 10.244.2.161 dev cilium_host proto kernel src 10.244.2.161 mtu 8951',
      '10.244.2.0/24 via 10.244.2.161 dev cilium_host proto kernel src 10.244.2.161',
      '10.244.2.161 dev cilium_host proto kernel scope link',
    ]);

    const sys = (k: string) => nsExec(ns, ['cat', `/proc/sys/${k.replace(/\./g, '/')}`]).trim();
    for (const dev of ['cilium_host', 'cilium_net', 'cilium_vxlan']) {
      assert.equal(sys(`net.ipv4.conf.${dev}.forwarding`), '1', dev);
      assert.equal(sys(`net.ipv4.conf.${dev}.rp_filter`), '0', dev);
      assert.equal(sys(`net.ipv4.conf.${dev}.accept_local`), '1', dev);
      assert.equal(sys(`net.ipv4.conf.${dev}.send_redirects`), '0', dev);
    }
    assert.equal(sys('net.ipv4.conf.all.rp_filter'), '0');
    assert.equal(sys('net.ipv4.ip_forward'), '1');

    // The seed's three lines, with our ifindexes.
    const lines = tcxLines(ns);
    for (const want of [
      `cilium_net(${net.ifindex}) tcx/ingress cil_to_host`,
      `cilium_host(${host.ifindex}) tcx/ingress cil_to_host`,
      `cilium_host(${host.ifindex}) tcx/egress cil_from_host`,
      `cilium_vxlan(${vx.ifindex}) tcx/ingress cil_from_overlay`,
      `cilium_vxlan(${vx.ifindex}) tcx/egress cil_to_overlay`,
    ]) assert.ok(lines.includes(want), `bpftool net lacks "${want}":\n${lines.join('\n')}`);

    // membrane bpf net agrees with bpftool (program ids and link ids too).
    const ours = JSON.parse(membraneOk(ns, ['bpf', 'net', '-o', 'json']));
    const theirs = JSON.parse(nsExec(ns, ['bpftool', '-j', 'net', 'show']))[0].tc;
    const norm = (a: any[]) => a.map((x) => `${x.devname ?? x.ifname}/${x.kind ?? x.hook}/${x.prog_id ?? x.progId}/${x.link_id ?? x.linkId}`).sort();
    assert.deepEqual(norm(ours), norm(theirs));

    // Calls maps and links pinned under the node's bpffs directory.
    for (const p of ['tc/globals/cilium_calls_hostns_00001', `tc/globals/cilium_calls_netdev_${String(net.ifindex).padStart(5, '0')}`,
      'tc/globals/cilium_calls_overlay_2', 'tc/globals/cilium_ipcache_v2', 'tc/globals/cilium_lxc',
      'devices/cilium_host/links/cil_to_host', 'devices/cilium_host/links/cil_from_host', 'devices/cilium_net/links/cil_to_host']) {
      assert.ok(existsSync(`${pinDir}/${p}`), `missing pin ${p}`);
    }

    // explain shows the table from live state.
    const ex = JSON.parse(membraneOk(ns, ['datapath', 'explain', '-o', 'json']));
    const hostEx = ex.devices.find((d: any) => d.name === 'cilium_host');
    assert.deepEqual(hostEx.addresses, ['10.244.2.161/32']);
    assert.deepEqual(hostEx.programs.ingress.map((p: any) => p.name), ['cil_to_host']);
    assert.deepEqual(hostEx.programs.egress.map((p: any) => p.name), ['cil_from_host']);
    assert.equal(hostEx.callsMap, 'cilium_calls_hostns_00001');
    assert.equal(ex.devices.find((d: any) => d.name === 'cilium_net').callsMap, `cilium_calls_netdev_${String(net.ifindex).padStart(5, '0')}`);
    assert.match(membraneOk(ns, ['datapath', 'explain']), /cilium_vxlan\(\d+\)\s+vxlan external dstport 8472/);
  });

  test('re-running with the same config changes nothing; MTU changes in place; port change recreates cilium_vxlan', (t) => {
    const ns = makeNetns(t);
    const { nodeName } = testNode(t);
    const cfg = writeConfig(t, baseConfig(nodeName));
    membraneOk(ns, ['datapath', 'init', '--config', cfg]);
    const snap = () => Object.fromEntries(links(ns).map((l) => [l.ifname, `${l.ifindex}/${l.address}/${l.mtu}`]));
    const before = snap();
    const routesBefore = routeLines(ns);
    const linkIds = () => JSON.parse(membraneOk(ns, ['bpf', 'net', '-o', 'json'])).map((a: any) => `${a.ifname}/${a.hook}/${a.linkId}`).sort();
    const idsBefore = linkIds();

    const again = membraneOk(ns, ['datapath', 'init', '--config', cfg]);
    assert.match(again, /devices up to date; routes \+0 -0/);
    assert.deepEqual(snap(), before);
    assert.deepEqual(routeLines(ns), routesBefore);
    assert.deepEqual(linkIds(), idsBefore, 'tcx links are updated in place, not re-created');

    // MTU: changed in place on all three devices, routes follow.
    membraneOk(ns, ['datapath', 'init', '--config', cfg, '--device-mtu', '1500']);
    const after = snap();
    for (const d of ['cilium_host', 'cilium_net', 'cilium_vxlan']) {
      const [idx, mac] = before[d].split('/');
      assert.equal(after[d], `${idx}/${mac}/1500`, d);
    }
    assert.ok(routeLines(ns).includes('10.244.0.0/24 via 10.244.2.161 dev cilium_host proto kernel src 10.244.2.161 mtu 1450'));

    // Port: cilium_vxlan deleted and recreated with the new dstport; the pair is untouched.
    membraneOk(ns, ['datapath', 'init', '--config', cfg, '--device-mtu', '1500', '--tunnel-port', '4789']);
    const vx = link(ns, 'cilium_vxlan');
    assert.equal(vx.linkinfo.info_data.port, 4789);
    assert.notEqual(String(vx.ifindex), before.cilium_vxlan.split('/')[0]);
    assert.equal(snap().cilium_host.split('/')[0], before.cilium_host.split('/')[0]);
    assert.ok(tcxLines(ns).includes(`cilium_vxlan(${vx.ifindex}) tcx/ingress cil_from_overlay`));
  });

  test('a foreign VXLAN device up on the port is named in the error; another port then works', (t) => {
    const ns = makeNetns(t);
    const { nodeName, pinDir } = testNode(t);
    execFileSync('ip', ['-n', ns, 'link', 'add', 'flannel.1', 'type', 'vxlan', 'id', '1', 'dstport', '8472', 'nolearning']);
    execFileSync('ip', ['-n', ns, 'link', 'set', 'flannel.1', 'up']);
    const cfg = writeConfig(t, baseConfig(nodeName));
    const r = membrane(ns, ['datapath', 'init', '--config', cfg]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr.split('\n')[0], /port 8472 is already used by vxlan device flannel\.1/);
    assert.equal(link(ns, 'cilium_host'), undefined, 'nothing created');
    assert.equal(existsSync(pinDir), false, 'no pins left');

    membraneOk(ns, ['datapath', 'init', '--config', cfg, '--tunnel-port', '8473']);
    assert.equal(link(ns, 'cilium_vxlan').linkinfo.info_data.port, 8473);
    assert.ok(link(ns, 'flannel.1').flags.includes('UP'), 'the foreign device is left alone');
  });

  test('removing a remote node removes its route; endpoint routes and route metric change the routes', (t) => {
    const ns = makeNetns(t);
    const { nodeName } = testNode(t);
    membraneOk(ns, ['datapath', 'init', '--config', writeConfig(t, baseConfig(nodeName))]);
    membraneOk(ns, ['datapath', 'init', '--config', writeConfig(t, baseConfig(nodeName, { remoteNodes: [{ podCIDR: '10.244.1.0/24', nodeIP: '10.13.1.6' }] }))]);
    assert.deepEqual(routeLines(ns).sort(), [
      '10.244.1.0/24 via 10.244.2.161 dev cilium_host proto kernel src 10.244.2.161 mtu 8951',
      '10.244.2.0/24 via 10.244.2.161 dev cilium_host proto kernel src 10.244.2.161',
      '10.244.2.161 dev cilium_host proto kernel scope link',
    ]);

    // Endpoint routes: no local pod-CIDR route via cilium_host (pods get /32s to their lxc).
    membraneOk(ns, ['datapath', 'init', '--config', writeConfig(t, baseConfig(nodeName, { enableEndpointRoutes: true, remoteNodes: [{ podCIDR: '10.244.1.0/24', nodeIP: '10.13.1.6' }] }))]);
    assert.deepEqual(routeLines(ns).sort(), [
      '10.244.1.0/24 via 10.244.2.161 dev cilium_host proto kernel src 10.244.2.161 mtu 8951',
      '10.244.2.161 dev cilium_host proto kernel scope link',
    ]);

    // Route metric on every cilium_host route; the metric-0 routes are gone, not duplicated.
    membraneOk(ns, ['datapath', 'init', '--config', writeConfig(t, baseConfig(nodeName, { routeMetric: 100, remoteNodes: [{ podCIDR: '10.244.1.0/24', nodeIP: '10.13.1.6' }] }))]);
    assert.deepEqual(routeLines(ns).sort(), [
      '10.244.1.0/24 via 10.244.2.161 dev cilium_host proto kernel src 10.244.2.161 metric 100 mtu 8951',
      '10.244.2.0/24 via 10.244.2.161 dev cilium_host proto kernel src 10.244.2.161 metric 100',
      '10.244.2.161 dev cilium_host proto kernel scope link metric 100',
    ]);
  });

  describe('bad input: one line naming the field, nothing created', () => {
    const cases: [string, (n: string) => Record<string, unknown> | string, RegExp][] = [
      ['invalid CIDR', (n) => baseConfig(n, { podCIDR: '10.244.2.0/33' }), /podCIDR: "10\.244\.2\.0\/33" is not a valid IPv4 CIDR/],
      ['CIDR with host bits', (n) => baseConfig(n, { podCIDR: '10.244.2.7/24' }), /podCIDR: .*host bits set \(did you mean 10\.244\.2\.0\/24\?\)/],
      ['router IP outside the pod CIDR', (n) => baseConfig(n, { routerIP: '10.244.3.1' }), /routerIP: 10\.244\.3\.1 is outside podCIDR 10\.244\.2\.0\/24/],
      ['MTU below 1280', (n) => baseConfig(n, { deviceMTU: 1000 }), /deviceMTU: must be an integer in 1280\.\.65535 \(got 1000\)/],
      ['MTU above 65535', (n) => baseConfig(n, { deviceMTU: 70000 }), /deviceMTU: must be an integer in 1280\.\.65535 \(got 70000\)/],
      ['port 0', (n) => baseConfig(n, { tunnelPort: 0 }), /tunnelPort: must be an integer in 1\.\.65535 \(got 0\)/],
      ['port above 65535', (n) => baseConfig(n, { tunnelPort: 65536 }), /tunnelPort: must be an integer in 1\.\.65535 \(got 65536\)/],
      ['malformed YAML', (n) => `nodeName: ${n}\nrouterIP: [10.244.2.161\n`, /malformed YAML at line \d/],
      ['unknown key', (n) => baseConfig(n, { tunnelProtocol: 'geneve' }), /tunnelProtocol: unknown key/],
      ['overlapping remote pod CIDRs', (n) => baseConfig(n, { remoteNodes: [{ podCIDR: '10.244.0.0/24', nodeIP: '10.13.1.5' }, { podCIDR: '10.244.0.128/25', nodeIP: '10.13.1.6' }] }), /remoteNodes\[1\]\.podCIDR: 10\.244\.0\.128\/25 overlaps remoteNodes\[0\]\.podCIDR 10\.244\.0\.0\/24/],
      ['bad source port range', (n) => baseConfig(n, { tunnelSourcePortRange: '9000-8000' }), /tunnelSourcePortRange: "9000-8000" must be "low-high"/],
    ];
    for (const [name, make, want] of cases) {
      test(name, (t) => {
        const ns = makeNetns(t);
        const { nodeName, pinDir } = testNode(t);
        const r = membrane(ns, ['datapath', 'init', '--config', writeConfig(t, make(nodeName))]);
        assert.notEqual(r.code, 0);
        const lines = r.stderr.trim().split('\n');
        assert.equal(lines.length, 1, `one line, got:\n${r.stderr}`);
        assert.match(lines[0], want);
        assert.deepEqual(links(ns).map((l) => l.ifname), ['lo']);
        assert.equal(existsSync(pinDir), false);
      });
    }

    test('not root (no capabilities)', (t) => {
      const ns = makeNetns(t);
      const { nodeName, pinDir } = testNode(t);
      const cfg = writeConfig(t, baseConfig(nodeName));
      const r = membrane(ns, ['datapath', 'init', '--config', cfg], { dropCaps: true });
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /must run as root \(lacks CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_BPF\)/);
      assert.deepEqual(links(ns).map((l) => l.ifname), ['lo']);
      assert.equal(existsSync(pinDir), false);
    });

    test('bpffs not mounted: says how to mount it', (t) => {
      const ns = makeNetns(t);
      const { nodeName } = testNode(t);
      const dir = `/tmp/${nodeName}-notbpffs`;
      t.after(() => spawnSync('rm', ['-rf', dir]));
      execFileSync('mkdir', ['-p', dir]);
      const r = membrane(ns, ['datapath', 'init', '--config', writeConfig(t, baseConfig(nodeName, { bpffsRoot: dir }))]);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, new RegExp(`${dir} is not on a bpf filesystem`));
      assert.match(r.stderr, new RegExp(`mount -t bpf bpffs ${dir}`));
      assert.deepEqual(links(ns).map((l) => l.ifname), ['lo']);
    });
  });

  test('without tcx the programs fall back to legacy tc clsact filters', (t) => {
    const ns = makeNetns(t);
    const { nodeName } = testNode(t);
    // MEMBRANE_FORCE_LEGACY_TC takes the fallback path on this tcx-capable kernel: the attach itself is real.
    membraneOk(ns, ['datapath', 'init', '--config', writeConfig(t, baseConfig(nodeName))], { env: { MEMBRANE_FORCE_LEGACY_TC: '1' } });
    const out = nsExec(ns, ['bpftool', 'net', 'show']);
    assert.match(out, /cilium_host\(\d+\) clsact\/ingress cil_to_host/);
    assert.match(out, /cilium_host\(\d+\) clsact\/egress cil_from_host/);
    assert.match(out, /cilium_net\(\d+\) clsact\/ingress cil_to_host/);
    assert.doesNotMatch(out, /tcx\//);
    const ours = JSON.parse(membraneOk(ns, ['bpf', 'net', '-o', 'json']));
    assert.ok(ours.every((a: any) => a.hook.startsWith('clsact/')));
    // Switching back to tcx removes the legacy filters.
    membraneOk(ns, ['datapath', 'init', '--config', writeConfig(t, baseConfig(nodeName))]);
    assert.doesNotMatch(nsExec(ns, ['bpftool', 'net', 'show']), /clsact/);
  });
});
