// Issue 8, the agent's lifecycle against the store, on one throwaway node
// (netns, SQLite store in a temp dir, own pins):
//  - fault 1: a second agent for a running node is refused before it touches
//    anything, with its config's state dir or another one, naming the pid
//    that holds the node; devices, pins, maps and store keys (revisions and
//    leases) are exactly as before, and the running agent keeps serving;
//  - fault 12: an agent with endpoints whose store lost its data (a 0-byte
//    database) says so (log and `membrane status`), keeps its endpoints'
//    identities instead of taking the lowest free ones, and publishes again.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { test } from 'node:test';
import { parse, stringify } from 'yaml';
import { apiCall } from '../../src/api/client.ts';
import type { StatusReply } from '../../src/agent/routes.ts';
import type { EndpointState } from '../../src/agent/state-file.ts';
import { MEMBRANE_BIN } from '../../src/lab/layout.ts';
import { decodeIpIdentity, formatLabelKey, identityIdKey, ipKey, nodeKey } from '../../src/store/keys.ts';
import { openStore, type KVStore } from '../../src/store/store.ts';
import { securityLabels } from '../../src/agent/labels.ts';
import { addPod, delPod, nodeWithAgent, ping, snapshot, type AgentNode } from '../helpers/pods.ts';
import { tempDir, uniqueName } from '../helpers/netns.ts';
import { rootOnly } from '../helpers/skip.ts';

const storePath = (node: AgentNode): string => (parse(readFileSync(node.cfgPath, 'utf8')) as { store: { path: string } }).store.path;

/** Every key of the store with its revision and lease: what "changed nothing" means for the store. */
async function storeKeys(s: KVStore): Promise<string[]> {
  return (await s.list('')).entries.map((e) => `${e.key} rev=${e.modRevision} lease=${e.lease ?? '-'}`);
}

/** Runs `membrane agent --config CFG` in the node's netns; resolves with its exit code and output (code null if it was still running after `ms`). */
function runAgent(ns: string, cfg: string, ms = 20_000): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const c = spawn('ip', ['netns', 'exec', ns, MEMBRANE_BIN, 'agent', '--config', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    c.stdout.on('data', (d) => { out += d; });
    c.stderr.on('data', (d) => { out += d; });
    const timer = setTimeout(() => c.kill('SIGKILL'), ms);
    c.on('close', (code) => { clearTimeout(timer); resolve({ code, out }); });
  });
}

test('fault 1: a second agent for a node is refused before it changes anything', { skip: rootOnly() }, async (t) => {
  const node = await nodeWithAgent(t, { octet: 91 });
  const pods = [await addPod(t, node, { labels: { app: 'one' } }), await addPod(t, node, { labels: { app: 'two' } })];
  const store = await openStore({ backend: 'sqlite', path: storePath(node) });
  t.after(() => store.close());
  // Once the endpoints' background move to tcx has pinned their links, nothing changes by itself.
  for (const deadline = Date.now() + 5_000; (await snapshot(node)).endpointPins.length < pods.length && Date.now() < deadline;) await new Promise((r) => setTimeout(r, 20));
  const before = { node: await snapshot(node), store: await storeKeys(store) };
  const pid = node.agent.child.pid!;

  // The same config, then another state dir (so another socket and state file) for the same node.
  const other = `${tempDir(t, `/tmp/${uniqueName('st2')}`)}/state`;
  const cfg2 = `${other}.yaml`;
  writeFileSync(cfg2, stringify({ ...parse(readFileSync(node.cfgPath, 'utf8')), stateDir: other }));
  const runs = [await runAgent(node.ns, node.cfgPath), await runAgent(node.ns, cfg2)];

  assert.deepEqual(await storeKeys(store), before.store, 'no store key rewritten (same revisions, same leases)');
  assert.deepEqual(await snapshot(node), before.node, 'devices, IPAM, endpoints, maps and pins unchanged');
  assert.equal(existsSync(other), false, 'the refused agent did not even make its state dir');
  for (const r of runs) {
    assert.equal(r.code, 1, `refused with the catalogue's exit code for E_ALREADY_RUNNING:\n${r.out}`);
    assert.match(r.out, new RegExp(`start agent for node ${node.nodeName}: another agent \\(pid ${pid}\\) runs for this node`), r.out);
  }
  // The running agent never noticed: it serves, and its pods talk.
  const third = await addPod(t, node, { labels: { app: 'three' } });
  assert.equal(ping(pods[0]!.ns, third.ip, { count: 1 }).received, 1);
  assert.equal(ping(pods[1]!.ns, pods[0]!.ip, { count: 1 }).received, 1);
});

test('fault 12: a store that lost its data is reported, and endpoints keep their identities', { skip: rootOnly() }, async (t) => {
  const node = await nodeWithAgent(t, { octet: 92 });
  // Identities 256 (gone) and 257 (kept): a store starting empty would give the kept pod 256.
  const gone = await addPod(t, node, { labels: { app: 'gone' } });
  const kept = await addPod(t, node, { labels: { app: 'kept' } });
  assert.equal((await delPod(node, gone)).exitCode, 0);
  const ep = (await apiCall<EndpointState[]>(node.socket, 'GET', '/v1/endpoints')).find((e) => e.containerID === kept.containerID)!;
  assert.equal(ep.identity, 257);

  // The agent dies; the database is found empty (0 bytes) when it comes back.
  await node.agent.stop('SIGKILL');
  const path = storePath(node);
  truncateSync(path, 0);
  for (const f of [`${path}-wal`, `${path}-shm`]) rmSync(f, { force: true });
  const agent = await node.restart();

  const after = (await apiCall<EndpointState[]>(node.socket, 'GET', '/v1/endpoints')).find((e) => e.containerID === kept.containerID)!;
  assert.equal(after.identity, ep.identity, 'the endpoint kept its identity');
  const st = await apiCall<StatusReply>(node.socket, 'GET', '/v1/status');
  assert.equal(st.warnings.length, 1, JSON.stringify(st.warnings));
  assert.match(st.warnings[0]!, new RegExp(`has no trace of node ${node.nodeName} .*records 1 endpoints; 1 of their 1 identities have no master key`));
  assert.match(agent.log(), /WARNING: .*no trace of node/);

  // Published again: node, pod IP with its identity, the identity's master with the pod's labels.
  const store = await openStore({ backend: 'sqlite', path });
  t.after(() => store.close());
  assert.ok(await store.get(nodeKey('default', node.nodeName)), 'node key');
  const ip = await store.get(ipKey(kept.ip));
  assert.equal(ip && decodeIpIdentity(ip.value).ID, ep.identity, 'pod IP key with the kept identity');
  assert.equal((await store.get(identityIdKey(ep.identity)))?.value, formatLabelKey(securityLabels({ app: 'kept' })));
  assert.equal(ping(node.ns, kept.ip, { count: 1 }).received, 1, 'the pod still answers');
});
