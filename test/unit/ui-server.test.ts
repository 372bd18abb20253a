// The web UI's server against a fake agent (the real ApiServer on a unix
// socket, answering as an agent does): the topology it serves, a node whose
// agent goes away and comes back, flows relayed from the agent's stream to
// a page's event stream, bad requests, and the files it serves. No root, no
// kernel: the node has no netns here, so its devices are reported missing.
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ApiServer } from '../../src/api/server.ts';
import { parseListen } from '../../src/cli/commands/ui.ts';
import { parsePair, UiServer } from '../../src/ui/server.ts';

interface Fake { api: ApiServer; flows: Set<(line: string) => void> }

async function fakeAgent(socket: string, node: string): Promise<Fake> {
  const flows = new Set<(line: string) => void>();
  const api = new ApiServer();
  api.get('/v1/status', () => ({ node, nodeIP: '10.13.0.11', routerIP: '10.244.1.1', podCIDR: '10.244.1.0/24', tunnelPort: 8472, routeMTU: 1450, startedAt: '2026-01-01T00:00:00.000Z' }));
  api.get('/v1/endpoints', () => [{ id: 2, containerID: 'c1', podName: 'web', podNamespace: 'default', labels: { app: 'web' }, identity: 256, ip: '10.244.1.2', hostIfname: 'lxcaaaa', hostIfindex: 6 }]);
  api.get('/v1/identities', () => [{ id: 256, labels: { 'k8s:app': 'web' } }]);
  api.stream('/v1/flows', (_req, url, res) => {
    assert.equal(url.searchParams.get('follow'), 'true');
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    res.write(`${JSON.stringify({ node_status: { state_change: 'NODE_CONNECTED' }, node_name: node })}\n`);
    const send = (line: string) => res.write(line);
    flows.add(send);
    return () => flows.delete(send);
  });
  await api.listen(socket);
  return { api, flows };
}

function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string; type?: string }> {
  return new Promise((resolve, reject) => {
    request(url, { headers }, (res) => {
      let body = '';
      res.on('data', (c) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, type: res.headers['content-type'] }));
    }).on('error', reject).end();
  });
}

function post(url: string, body: string, headers: Record<string, string> = { 'content-type': 'application/json' }): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', headers }, (res) => {
      let b = '';
      res.on('data', (c) => { b += c; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: b }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Reads server-sent events until `until` accepts one; returns it. */
function events(url: string, until: (event: string, data: unknown) => boolean, timeoutMs = 10_000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { req.destroy(); reject(new Error('no such event in time')); }, timeoutMs);
    const req = request(url, (res) => {
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        buf += c;
        let i: number;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const ev = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (ev && data !== undefined && until(ev, JSON.parse(data))) {
            clearTimeout(timer);
            req.destroy();
            resolve(JSON.parse(data));
          }
        }
      });
    });
    req.on('error', () => { /* destroyed */ });
    req.end();
  });
}

test('ui server: topology from the agent, unreachable and back, flows relayed, bad input refused, files served', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'membrane-ui-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const socket = join(dir, 'agent.sock');
  const assets = join(dir, 'dist');
  mkdirSync(assets);
  writeFileSync(join(assets, 'index.html'), '<!doctype html><title>Membrane</title>');
  writeFileSync(join(assets, 'app.js'), 'console.log(1)');
  writeFileSync(join(dir, 'secret'), 'not served');
  let agent = await fakeAgent(socket, 'node-1');
  const sources = [{ name: 'node-1', apiSocket: socket }];
  const ui = new UiServer({ cluster: 'test', sources: () => sources, host: '127.0.0.1', port: 0, assetsDir: `${assets}/`, pollMs: 100 });
  const url = await ui.start();
  t.after(async () => { await ui.stop(); await agent.api.close(); });
  assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/$/);

  await t.test('topology: the node, its pod with identity and lxc, the identity labels', async () => {
    const r = await get(`${url}api/topology`);
    assert.equal(r.status, 200);
    const topo = JSON.parse(r.body);
    assert.equal(topo.cluster, 'test');
    const n = topo.nodes[0];
    assert.equal(n.name, 'node-1');
    assert.equal(n.reachable, true);
    assert.equal(n.podCIDR, '10.244.1.0/24');
    assert.deepEqual(n.pods, [{ name: 'web', namespace: 'default', node: 'node-1', ip: '10.244.1.2', labels: { app: 'web' }, identity: 256, endpointID: 2, lxc: 'lxcaaaa' }]);
    assert.match(n.devicesError, /netns is not on this machine/);
    assert.deepEqual(topo.identities, [{ id: 256, labels: ['k8s:app=web'] }]);
  });

  await t.test('flows: a line of the agent\'s stream reaches a page, node status lines do not', async () => {
    const flow = { time: '2026-01-01T00:00:01Z', verdict: 'DROPPED', drop_reason_desc: 'POLICY_DENY', IP: { source: '10.244.2.2', destination: '10.244.1.2' },
      node_name: 'node-1', hops: [{ point: 'DROPPED', ifname: 'cilium_vxlan', time_ns: '1' }], ethernet: { source: 'a', destination: 'b' } };
    const got = events(`${url}api/events`, (ev, d) => ev === 'flows' && (d as { flows: unknown[] }).flows.length > 0);
    // The stream opens once a page is there; then the agent sends a flow.
    const deadline = Date.now() + 5_000;
    while (!agent.flows.size && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.ok(agent.flows.size, 'the UI follows the agent\'s flows while a page is open');
    for (const send of agent.flows) send(`${JSON.stringify({ flow: flow, node_name: 'node-1', time: flow.time })}\n`);
    const d = await got as { flows: Record<string, unknown>[]; skipped: number };
    assert.equal(d.flows.length, 1);
    assert.equal(d.flows[0]!.drop_reason_desc, 'POLICY_DENY');
    assert.deepEqual(d.flows[0]!.hops, [{ point: 'DROPPED', ifname: 'cilium_vxlan' }], 'hops without their raw times');
    assert.equal(d.flows[0]!.ethernet, undefined, 'the page gets no MACs');
    assert.equal(JSON.parse((await get(`${url}api/flows`)).body).length, 1, 'kept for a page opened later');
    // An agent's count of lost events reaches the page with the stream's state.
    const before = new Set(agent.flows);
    const lost = events(`${url}api/events`, (ev, d) => ev === 'streams' && (d as { lost: number }[])[0]?.lost === 7);
    // The page that left closed the UI's stream to the agent (nobody looking); this one opens a new one.
    const until = Date.now() + 5_000;
    while (![...agent.flows].some((f) => !before.has(f)) && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    for (const send of agent.flows) if (!before.has(send)) send(`${JSON.stringify({ lost_events: { source: 'PERF_EVENT_RING_BUFFER', num_events_lost: 7 }, node_name: 'node-1' })}\n`);
    await lost;
  });

  await t.test('the agent away: unreachable with its last pods; back: reachable again', async () => {
    const gone = events(`${url}api/events`, (ev, d) => ev === 'topology' && !(d as { nodes: { reachable: boolean }[] }).nodes[0]!.reachable);
    await agent.api.close();
    const down = await gone as { nodes: { reachable: boolean; error: string; unreachableSince: string; pods: unknown[] }[] };
    assert.match(down.nodes[0]!.error, /agent not running/);
    assert.ok(down.nodes[0]!.unreachableSince);
    assert.equal(down.nodes[0]!.pods.length, 1, 'its last known pods stay drawn');
    const back = events(`${url}api/events`, (ev, d) => ev === 'topology' && (d as { nodes: { reachable: boolean }[] }).nodes[0]!.reachable);
    agent = await fakeAgent(socket, 'node-1');
    await back;
  });

  await t.test('a node added to the cluster appears without a reload', async () => {
    const socket2 = join(dir, 'agent2.sock');
    const agent2 = await fakeAgent(socket2, 'node-2');
    t.after(() => agent2.api.close());
    const seen = events(`${url}api/events`, (ev, d) => ev === 'topology' && (d as { nodes: unknown[] }).nodes.length === 2);
    sources.push({ name: 'node-2', apiSocket: socket2 });
    const topo = await seen as { nodes: { name: string; reachable: boolean }[] };
    assert.deepEqual(topo.nodes.map((n) => [n.name, n.reachable]), [['node-1', true], ['node-2', true]]);
  });

  await t.test('bad requests: every problem named, with the catalogue code', async () => {
    const r = await post(`${url}api/policy/trace`, JSON.stringify({ src: { node: 'node-1' }, protocol: 'SCTP', port: 70000 }));
    assert.equal(r.status, 400);
    const e = JSON.parse(r.body);
    assert.equal(e.code, 'E_BAD_REQUEST');
    assert.equal(e.message, 'trace policy: src: must be { node, pod }; dst: must be { node, pod }; protocol: must be TCP, UDP or ICMP; port: must be an integer 0-65535');
    assert.equal((await post(`${url}api/trace`, '{nope')).status, 400);
    const nf = await get(`${url}api/pods/node-1/nobody/policies`);
    assert.equal(nf.status, 404);
    assert.match(JSON.parse(nf.body).message, /find pod node-1\/nobody: no such pod/);
    assert.deepEqual(parsePair({ src: { node: 'a', pod: 'p' }, dst: { node: 'b', pod: 'q' }, protocol: 'icmp' }, 'x'), { src: { node: 'a', pod: 'p' }, dst: { node: 'b', pod: 'q' }, protocol: 'ICMP' });
  });

  await t.test('another site\'s page may not use the API', async () => {
    const port = new URL(url).port;
    const cross = await post(`${url}api/trace`, '{}', { 'content-type': 'application/json', origin: 'http://evil.example' });
    assert.equal(cross.status, 400);
    assert.match(JSON.parse(cross.body).message, /a page of http:\/\/evil\.example may not use this API/);
    const form = await post(`${url}api/trace`, '{}', { 'content-type': 'text/plain' });
    assert.match(JSON.parse(form.body).message, /must be sent as application\/json/);
    const rebound = await get(`${url}api/topology`, { host: `evil.example:${port}` });
    assert.equal(rebound.status, 400);
    assert.match(JSON.parse(rebound.body).message, /Host "evil\.example:\d+" is not this server/);
    assert.equal((await get(`${url}api/topology`, { host: `localhost:${port}`, origin: `http://localhost:${port}` })).status, 200, 'the page itself, by any loopback name');
  });

  await t.test('files: the app, index.html for any page path, nothing outside the build', async () => {
    const js = await get(`${url}app.js`);
    assert.equal(js.status, 200);
    assert.match(js.type ?? '', /javascript/);
    assert.match((await get(url)).body, /<title>Membrane<\/title>/);
    const bad = await get(`${url}%E0%A4%A`);
    assert.equal(bad.status, 400, 'a malformed escape is a bad request');
    assert.equal(JSON.parse(bad.body).code, 'E_BAD_REQUEST');
    for (const p of ['%2e%2e/secret', '..%2fsecret', 'a/../../secret']) {
      const r = await get(`${url}${p}`);
      assert.doesNotMatch(r.body, /not served/, `${p} stays inside the build`);
    }
  });

  await t.test('--listen: HOST:PORT checked', () => {
    assert.deepEqual(parseListen('127.0.0.1:12000'), { host: '127.0.0.1', port: 12000 });
    assert.deepEqual(parseListen('[::1]:0'), { host: '::1', port: 0 });
    assert.throws(() => parseListen('12000'), /ui --listen 12000: must be HOST:PORT/);
    assert.throws(() => parseListen('localhost:99999'), /must be HOST:PORT/);
  });
});
