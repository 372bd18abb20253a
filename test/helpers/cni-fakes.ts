// A strict fake EndpointBackend for CNI tests (records every call, fails on
// script) and a checker for CNI success results against the spec's fields
// for each version.
import assert from 'node:assert/strict';
import type { AddedEndpoint, EndpointBackend, GCAttachment } from '../../src/cni/types.ts';

type Method = 'add' | 'del' | 'check' | 'status' | 'gc';

export class FakeBackend implements EndpointBackend {
  readonly calls: { method: Method; arg: any }[] = [];
  /** Errors to throw, per method (every call, until cleared). */
  readonly fail: Partial<Record<Method, unknown>> = {};
  /** Live endpoints by "containerID/ifname". */
  readonly endpoints = new Map<string, AddedEndpoint & { netns: string }>();
  private next = 2;

  private record(method: Method, arg: unknown): void {
    this.calls.push({ method, arg });
    if (this.fail[method] !== undefined) throw this.fail[method];
  }

  async add(r: Parameters<EndpointBackend['add']>[0]): Promise<AddedEndpoint> {
    this.record('add', r);
    const n = this.next++;
    const ep = {
      ip: `10.1.0.${n}`, podMac: `0a:58:0a:01:00:${n.toString(16).padStart(2, '0')}`,
      hostIfname: `lxc${r.containerID.slice(0, 8)}`, hostMac: `ee:ee:0a:01:00:${n.toString(16).padStart(2, '0')}`,
      routerIP: '10.1.0.1', routeMTU: 1450, deviceMTU: 1500, netns: r.netns,
    };
    this.endpoints.set(`${r.containerID}/${r.ifname}`, ep);
    const { netns: _, ...out } = ep;
    return out;
  }

  async del(r: Parameters<EndpointBackend['del']>[0]): Promise<void> {
    this.record('del', r);
    this.endpoints.delete(`${r.containerID}/${r.ifname}`);
  }

  async check(r: Parameters<EndpointBackend['check']>[0]): Promise<void> {
    this.record('check', r);
  }

  async status(): Promise<void> {
    this.record('status', undefined);
  }

  async gc(valid: GCAttachment[]): Promise<{ removed: string[] }> {
    this.record('gc', valid);
    const keep = new Set(valid.map((v) => `${v.containerID}/${v.ifname}`));
    const removed = [...this.endpoints.keys()].filter((k) => !keep.has(k));
    for (const k of removed) this.endpoints.delete(k);
    return { removed };
  }

  methods(): Method[] {
    return this.calls.map((c) => c.method);
  }
}

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;
const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;
const isIPv4 = (s: unknown) => typeof s === 'string' && IPV4.test(s) && s.split('.').every((o) => Number(o) <= 255);
const isCidr = (s: unknown) => typeof s === 'string' && isIPv4(s.split('/')[0]) && /^\d+$/.test(s.split('/')[1] ?? '') && Number(s.split('/')[1]) <= 32;
const keysWithin = (o: object, allowed: string[], what: string) => {
  for (const k of Object.keys(o)) assert.ok(allowed.includes(k), `${what}: key ${k} is not part of this result version`);
};
const atLeast = (v: string, min: string) => ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'].indexOf(v) >= ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'].indexOf(min);

/**
 * Asserts `r` is a valid ADD success result of `version`: the required keys,
 * the types and formats the spec gives, and nothing that version lacks
 * (`mtu` before 1.1.0, `version` on ips from 1.0.0).
 */
export function assertValidResult(r: any, version: string): void {
  assert.equal(typeof r, 'object');
  assert.equal(r.cniVersion, version, 'cniVersion must equal the config\'s');
  keysWithin(r, ['cniVersion', 'interfaces', 'ips', 'routes', 'dns'], 'result');
  assert.ok(Array.isArray(r.interfaces), 'interfaces is a list');
  const ifaceKeys = ['name', 'mac', 'sandbox', ...(atLeast(version, '1.1.0') ? ['mtu', 'socketPath', 'pciID'] : [])];
  for (const i of r.interfaces) {
    keysWithin(i, ifaceKeys, 'interface');
    assert.ok(typeof i.name === 'string' && i.name.length > 0 && i.name.length < 16, `interface name ${i.name}`);
    if (i.mac !== undefined) assert.match(i.mac, MAC);
    if (i.sandbox !== undefined) assert.equal(typeof i.sandbox, 'string');
    if (i.mtu !== undefined) assert.ok(Number.isInteger(i.mtu) && i.mtu > 0);
  }
  assert.ok(Array.isArray(r.ips), 'ips is a list');
  for (const ip of r.ips) {
    keysWithin(ip, ['address', 'gateway', 'interface', ...(atLeast(version, '1.0.0') ? [] : ['version'])], 'ip');
    if (!atLeast(version, '1.0.0')) assert.ok(ip.version === '4' || ip.version === '6', `ips.version is required before 1.0.0, got ${ip.version}`);
    assert.ok(isCidr(ip.address), `address ${ip.address} in CIDR notation`);
    if (ip.gateway !== undefined) assert.ok(isIPv4(ip.gateway));
    if (ip.interface !== undefined) {
      assert.ok(Number.isInteger(ip.interface) && ip.interface >= 0 && ip.interface < r.interfaces.length, 'interface is an index into interfaces');
    }
  }
  if (r.routes !== undefined) {
    assert.ok(Array.isArray(r.routes));
    for (const rt of r.routes) {
      keysWithin(rt, ['dst', 'gw', ...(atLeast(version, '1.1.0') ? ['mtu', 'advmss', 'priority', 'table', 'scope'] : [])], 'route');
      assert.ok(isCidr(rt.dst), `route dst ${rt.dst}`);
      if (rt.gw !== undefined) assert.ok(isIPv4(rt.gw));
    }
  }
  if (r.dns !== undefined) assert.equal(typeof r.dns, 'object');
}

/** Asserts `r` is a CNI error object with `code` whose msg matches every pattern. */
export function assertCniError(r: { exitCode: number; stdout: any }, code: number, ...patterns: RegExp[]): void {
  assert.notEqual(r.exitCode, 0, 'an error exits non-zero');
  const e = typeof r.stdout === 'string' ? JSON.parse(r.stdout) : r.stdout;
  assert.equal(typeof e.cniVersion, 'string', 'error has cniVersion');
  assert.equal(e.code, code, `code (msg: ${e.msg})`);
  assert.equal(typeof e.msg, 'string');
  assert.ok(!e.msg.includes('\n'), 'msg is one line');
  for (const p of patterns) assert.match(e.msg, p);
}
