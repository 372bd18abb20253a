// The native device (the one holding the node IP) in a throwaway netns:
// `datapath init` attaches cil_from_netdev / cil_to_netdev to it, `bpf net`
// and `datapath explain` show them, a failure part way leaves no program on
// it (nor anything else), and running init again (what an agent does when it
// starts) brings back programs that were removed.
import { test, describe, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { makeNetns, ipJson, nsExec } from '../helpers/netns.ts';
import { membrane, membraneOk, testNode, writeConfig } from '../helpers/membrane.ts';
import { rootOnly } from '../helpers/skip.ts';
import { deviceLinkPin } from '../../src/datapath/paths.ts';
import { resetNode } from '../../src/datapath/reset.ts';
import { validateNodeConfig } from '../../src/shared/config.ts';
import { withNetns } from '../../src/shared/netns.ts';
import { tempDir } from '../helpers/netns.ts';

const NODE_IP = '10.13.9.4';

function setup(t: TestContext, extra: Record<string, unknown> = {}) {
  const ns = makeNetns(t);
  execFileSync('ip', ['-n', ns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'wire0']); // no dummy module here
  execFileSync('ip', ['-n', ns, 'addr', 'add', `${NODE_IP}/24`, 'dev', 'eth0']);
  execFileSync('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
  execFileSync('ip', ['-n', ns, 'link', 'set', 'wire0', 'up']);
  const { nodeName, pinDir } = testNode(t);
  const raw = {
    nodeName, routerIP: '10.244.2.161', podCIDR: '10.244.2.0/24', nodeIP: NODE_IP,
    remoteNodes: [{ podCIDR: '10.244.3.0/24', nodeIP: '10.13.9.5' }], ...extra,
  };
  return { ns, cfg: writeConfig(t, raw), raw, pinDir };
}

function eth0Programs(ns: string): string[] {
  return nsExec(ns, ['bpftool', 'net', 'show']).split('\n').filter((l) => l.startsWith('eth0(')).map((l) => l.replace(/ prog_id \d+ link_id \d+\s*$/, '').replace(/^eth0\(\d+\) /, '').trim()).sort();
}

describe('native device programs', { skip: rootOnly('requires root') }, () => {
  test('init attaches cil_from_netdev / cil_to_netdev to the device with the node IP; bpf net and explain show them', (t) => {
    const { ns, cfg } = setup(t);
    membraneOk(ns, ['datapath', 'init', '--config', cfg]);
    assert.deepEqual(eth0Programs(ns), ['tcx/egress cil_to_netdev', 'tcx/ingress cil_from_netdev']);
    const att = JSON.parse(membraneOk(ns, ['bpf', 'net', '-o', 'json'])) as { ifname: string; progName: string }[];
    assert.deepEqual(att.filter((a) => a.ifname === 'eth0').map((a) => a.progName).sort(), ['cil_from_netdev', 'cil_to_netdev']);
    const ex = JSON.parse(membraneOk(ns, ['datapath', 'explain', '-o', 'json']));
    const eth0 = ex.devices.find((d: any) => d.name === 'eth0');
    assert.ok(eth0, 'explain lists the native device');
    assert.deepEqual(eth0.addresses, [`${NODE_IP}/24`]);
    assert.deepEqual(eth0.programs.ingress.map((p: any) => p.name), ['cil_from_netdev']);
    assert.deepEqual(eth0.programs.egress.map((p: any) => p.name), ['cil_to_netdev']);
    const ifindex = ipJson<any[]>(ns, ['link', 'show', 'eth0'])[0].ifindex;
    assert.equal(eth0.callsMap, `cilium_calls_netdev_${String(ifindex).padStart(5, '0')}`);
    assert.equal(eth0.callsMapPinned, true);
    assert.equal(ex.nativeDevice, 'eth0');
    assert.equal(ex.masquerade, true);
    assert.equal(ex.routingMode, 'tunnel');
    assert.match(membraneOk(ns, ['datapath', 'explain']), /masquerade: on \(pod traffic leaving the cluster gets the node IP on eth0\)/);
  });

  test('native routing: the remote pod CIDR via its node IP on eth0, tunnel MTU gone; back to tunnel moves it back', (t) => {
    const { ns, cfg, raw } = setup(t, { routingMode: 'native' });
    membraneOk(ns, ['datapath', 'init', '--config', cfg]);
    const routes = () => execFileSync('ip', ['-n', ns, 'route', 'show', '10.244.3.0/24'], { encoding: 'utf8' }).trim();
    assert.equal(routes(), '10.244.3.0/24 via 10.13.9.5 dev eth0 proto 196');
    const ex = JSON.parse(membraneOk(ns, ['datapath', 'explain', '-o', 'json']));
    assert.equal(ex.routingMode, 'native');
    assert.deepEqual(ex.nativeRoutes.map((r: any) => `${r.dst} via ${r.gateway}`), ['10.244.3.0/24 via 10.13.9.5']);
    // The device's own routes are not ours: a reconcile never touches them.
    execFileSync('ip', ['-n', ns, 'route', 'add', '10.99.0.0/16', 'via', '10.13.9.1', 'dev', 'eth0']);
    const tunnel = writeConfig(t, { ...raw, routingMode: 'tunnel' });
    membraneOk(ns, ['datapath', 'init', '--config', tunnel]);
    assert.equal(routes(), '10.244.3.0/24 via 10.244.2.161 dev cilium_host proto kernel src 10.244.2.161 mtu 1450');
    assert.match(execFileSync('ip', ['-n', ns, 'route', 'show', '10.99.0.0/16'], { encoding: 'utf8' }), /via 10\.13\.9\.1 dev eth0/);
  });

  test('uninstall --purge (resetNode) removes native routing\'s routes and the programs, and leaves the native device', (t) => {
    const stateDir = tempDir(t, `/tmp/${process.pid}-native-reset`);
    const { ns, cfg, raw } = setup(t, { routingMode: 'native', stateDir });
    membraneOk(ns, ['datapath', 'init', '--config', cfg]);
    execFileSync('ip', ['-n', ns, 'route', 'add', '10.99.0.0/16', 'via', '10.13.9.1', 'dev', 'eth0']);
    const r = withNetns(ns, () => resetNode(validateNodeConfig({ ...raw, stateDir })));
    assert.deepEqual(r.routes, ['10.244.3.0/24 via 10.13.9.5']);
    assert.deepEqual(ipJson<any[]>(ns, ['link', 'show']).map((l) => l.ifname).sort(), ['eth0', 'lo', 'wire0']);
    assert.deepEqual(eth0Programs(ns), [], 'no program left on eth0');
    const left = execFileSync('ip', ['-n', ns, 'route', 'show'], { encoding: 'utf8' });
    assert.doesNotMatch(left, /10\.244\.3\.0/);
    assert.match(left, /10\.99\.0\.0\/16 via 10\.13\.9\.1 dev eth0/, 'routes that are not the datapath\'s stay');
  });

  test('native routing without a device holding the node IP is refused, nothing made', (t) => {
    const ns = makeNetns(t);
    const { nodeName, pinDir } = testNode(t);
    const cfg = writeConfig(t, { nodeName, routerIP: '10.244.2.161', podCIDR: '10.244.2.0/24', nodeIP: NODE_IP, routingMode: 'native' });
    const r = membrane(ns, ['datapath', 'init', '--config', cfg]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /routingMode native: no device has the node IP 10\.13\.9\.4/);
    assert.deepEqual(ipJson<any[]>(ns, ['link', 'show']).map((l) => l.ifname), ['lo']);
    assert.equal(spawnSync('test', ['-e', pinDir]).status, 1, 'no pins left');
  });

  test('a failure attaching to the native device rolls everything back', (t) => {
    const { ns, cfg, pinDir } = setup(t);
    // Something that is not a link where the egress link pin goes: the last attach of init fails.
    const pin = deviceLinkPin(pinDir, 'eth0', 'cil_to_netdev');
    execFileSync('mkdir', ['-p', pin.replace(/\/[^/]+$/, '')]);
    execFileSync('bpftool', ['map', 'create', pin, 'type', 'array', 'key', '4', 'value', '4', 'entries', '1', 'name', 'not_a_link']);
    t.after(() => rmSync(pinDir, { recursive: true, force: true }));
    const r = membrane(ns, ['datapath', 'init', '--config', cfg]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /cil_to_netdev/);
    assert.deepEqual(eth0Programs(ns), [], 'no program left on eth0');
    assert.deepEqual(ipJson<any[]>(ns, ['link', 'show']).map((l) => l.ifname).sort(), ['eth0', 'lo', 'wire0'], 'the node devices are gone again');
  });

  test('programs removed from the native device come back with the next init (an agent start)', (t) => {
    const { ns, cfg, pinDir } = setup(t);
    membraneOk(ns, ['datapath', 'init', '--config', cfg]);
    for (const p of ['cil_from_netdev', 'cil_to_netdev']) rmSync(deviceLinkPin(pinDir, 'eth0', p));
    assert.deepEqual(eth0Programs(ns), [], 'unpinning the links detached them');
    membraneOk(ns, ['datapath', 'init', '--config', cfg]);
    assert.deepEqual(eth0Programs(ns), ['tcx/egress cil_to_netdev', 'tcx/ingress cil_from_netdev']);
  });
});
