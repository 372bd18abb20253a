// Issue 8, the CNI edge, against a real `membrane agent` in a throwaway node
// netns, through the real plugin binary: an ADD whose plugin gave up is not
// carried out (fault 4); hostile input cannot stall the agent (fault 3);
// permanent mistakes get the spec's codes and leave nothing (fault 10); a
// flood of idle connections cannot lock out an ADD (fault 11).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { test } from 'node:test';
import { apiCall } from '../../src/api/client.ts';
import { DEFAULT_API_LIMITS } from '../../src/api/server.ts';
import { assertCniError } from '../helpers/cni-fakes.ts';
import { makeNetns, tempDir, uniqueName } from '../helpers/netns.ts';
import { cni, nodeWithAgent, podLinks, SHIM, snapshot, type AgentNode } from '../helpers/pods.ts';
import { rootOnly } from '../helpers/skip.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Resolves once the agent answers its API again (after SIGCONT). */
async function responsive(node: AgentNode, ms = 10_000): Promise<void> {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(20)) {
    try { await apiCall(node.socket, 'GET', '/v1/healthz'); return; } catch { /* not yet */ }
  }
  throw new Error(`agent not answering within ${ms} ms`);
}

/** How long /v1/healthz takes to answer. */
async function healthzMs(node: AgentNode): Promise<number> {
  const t0 = performance.now();
  await apiCall(node.socket, 'GET', '/v1/healthz');
  return performance.now() - t0;
}

test('fault 4: an ADD whose plugin timed out while the agent was stopped is not carried out', { skip: rootOnly() }, async (t) => {
  const node = await nodeWithAgent(t, { octet: 93 });
  const pid = node.agent.child.pid!;
  const pod = makeNetns(t, 'h4');
  const att = { containerID: `ctr-${pod}`, netns: `/run/netns/${pod}`, ifname: 'eth0', args: { K8S_POD_NAME: pod, K8S_POD_NAMESPACE: 'default' } };
  const before = await snapshot(node);

  process.kill(pid, 'SIGSTOP');
  let r;
  try {
    r = await cni(node, 'ADD', { ...att, env: { MEMBRANE_CNI_TIMEOUT_MS: '700' } });
  } finally {
    process.kill(pid, 'SIGCONT');
  }
  assertCniError(r, 11, new RegExp(`^membrane agent not reachable at ${node.socket}: no answer within 700 ms$`));

  // The agent now reads the request the plugin abandoned; give it time to (not) carry it out.
  await responsive(node);
  await sleep(1500);
  const after = await snapshot(node);
  assert.deepEqual(after, before, 'no endpoint, no lxc device, no IP allocated, no map entry or pin');
  assert.deepEqual(podLinks(pod), ['lo'], 'no interface in the pod');

  // The runtime retries: now the ADD is carried out and answered.
  const again = await cni(node, 'ADD', att);
  assert.equal(again.exitCode, 0, again.stdoutText);
  assert.deepEqual(podLinks(pod), ['eth0', 'lo']);
  const done = await snapshot(node);
  assert.equal(done.ipamUsed, before.ipamUsed! + 1);
  assert.equal(done.lxc.length, before.lxc.length + 1);
  const del = await cni(node, 'DEL', att);
  assert.equal(del.exitCode, 0, del.stdoutText);
});

test('fault 3: megabytes of nested brackets are refused at once, and the agent keeps answering', { skip: rootOnly() }, async (t) => {
  const node = await nodeWithAgent(t, { octet: 94 });
  // The shim refuses over 1 MiB itself; a client of the socket that is not the shim meets the agent's own limit.
  const body = Buffer.from('['.repeat(8 << 20));
  const head = `POST /v1/cni HTTP/1.1\r\nHost: a\r\nConnection: close\r\nX-Cni-Command: ADD\r\nX-Cni-Containerid: c\r\nX-Cni-Netns: /proc/self/ns/net\r\nX-Cni-Ifname: eth0\r\nContent-Length: ${body.length}\r\n\r\n`;
  const send = () => new Promise<string>((resolve) => {
    const c = connect(node.socket);
    let reply = '';
    let answered = false;
    c.on('data', (d) => { answered = true; reply += d; });
    c.on('error', () => undefined);
    c.on('close', () => resolve(reply));
    c.write(head);
    void (async () => {
      // An agent that refuses from the declared length answers at once; a write into
      // its closed connection would make node drop that answer, so wait for it first.
      for (let t = 0; t < 20 && !answered; t++) await sleep(5);
      for (let at = 0; at < body.length && !answered && !c.destroyed; at += 64 << 10) {
        if (!c.write(body.subarray(at, at + (64 << 10)))) await new Promise((r) => { c.once('drain', r); c.once('close', r); });
      }
    })();
  });
  const flood = Array.from({ length: 8 }, send);
  const lat: number[] = [];
  for (let i = 0; i < 10; i++) lat.push(await healthzMs(node));
  const replies = await Promise.all(flood);
  for (const x of replies) assert.equal(JSON.parse(x.split('\r\n\r\n')[1]!).code, 5, x.slice(0, 300));
  assert.ok(Math.max(...lat) < 500, `healthz took up to ${Math.max(...lat).toFixed(0)} ms during the flood`);

  // Through the plugin: over 1 MiB is code 5, too deep is code 6, both without the agent doing anything.
  const before = await snapshot(node);
  const pod = makeNetns(t, 'h3');
  const att = { containerID: `ctr-${pod}`, netns: `/run/netns/${pod}`, ifname: 'eth0' };
  assertCniError(await cni(node, 'ADD', { ...att, conf: node.conf({ pad: 'x'.repeat(1 << 20) }) }), 5, /larger than 1 MiB/);
  const deep = JSON.stringify(node.conf()).replace(/}$/, `,"x":${'['.repeat(100)}${']'.repeat(100)}}`);
  assertCniError(await cni(node, 'ADD', { ...att, stdin: deep }), 6, /nesting deeper than 64 levels/);
  assert.deepEqual(await snapshot(node), before);
});

test('fault 10: permanent mistakes get the spec\'s codes, named, and leave nothing behind', { skip: rootOnly() }, async (t) => {
  const node = await nodeWithAgent(t, { octet: 95 });
  const dir = tempDir(t, `/tmp/${uniqueName('h10')}`);
  writeFileSync(`${dir}/file`, '');
  mkdirSync(`${dir}/dir`);
  const before = await snapshot(node);
  const fresh = () => {
    const pod = makeNetns(t, 'ha');
    return { pod, att: { containerID: `ctr-${pod}`, netns: `/run/netns/${pod}`, ifname: 'eth0' } };
  };

  await t.test('a netns path that is a regular file, a directory or /dev/null: code 4', async () => {
    for (const [netns, why] of [[`${dir}/file`, /it is a regular file/], [`${dir}/dir`, /it is a directory/], ['/dev/null', /it is a character device/]] as const) {
      const r = await cni(node, 'ADD', { containerID: 'ctr-bad-netns', netns, ifname: 'eth0' });
      assertCniError(r, 4, new RegExp(`^CNI_NETNS "${netns.replaceAll('/', '\\/')}" is not a network namespace: `), why);
    }
    assert.deepEqual(await snapshot(node), before);
  });

  await t.test('labels the store cannot hold: code 7, naming the field', async () => {
    for (const labels of [{ 'a;b': 'x' }, { '': 'x' }, { app: 'a;b' }]) {
      const { pod, att } = fresh();
      assertCniError(await cni(node, 'ADD', { ...att, conf: node.conf({ args: { labels } }) }), 7, /^"args\.labels": label .* is invalid: /);
      assert.deepEqual(podLinks(pod), ['lo']);
    }
    assert.deepEqual(await snapshot(node), before);
  });

  await t.test('no agentSocket, a non-string one, malformed or truncated JSON: 7 and 6 from the plugin, never 11', async () => {
    const { att } = fresh();
    const conf = node.conf();
    delete conf.agentSocket;
    assertCniError(await cni(node, 'ADD', { ...att, conf }), 7, /no "agentSocket"/);
    assertCniError(await cni(node, 'ADD', { ...att, conf: { ...conf, agentSocket: 7 } }), 7, /"agentSocket" must be a string, not number/);
    const text = JSON.stringify(node.conf());
    assertCniError(await cni(node, 'ADD', { ...att, stdin: text.slice(0, text.indexOf(node.socket) + node.socket.length - 3) }), 6, /unterminated string/);
    assertCniError(await cni(node, 'ADD', { ...att, stdin: text.replace(',', ',,') }), 6, /expected a property name at line 1/);
    assert.deepEqual(await snapshot(node), before);
  });

  await t.test('a CNI_IFNAME that is not UTF-8: code 4, no interface under another name', async () => {
    const { pod, att } = fresh();
    const r = await new Promise<{ code: number; stdout: string }>((resolve) => {
      const child = spawn('bash', ['-c', `export CNI_IFNAME=$'eth\\xff'; exec "$0"`, SHIM], {
        env: { ...process.env, CNI_COMMAND: 'ADD', CNI_CONTAINERID: att.containerID, CNI_NETNS: att.netns, CNI_ARGS: '', CNI_PATH: '' },
      });
      let out = '';
      child.stdout.on('data', (d) => { out += d; });
      child.on('close', (code) => resolve({ code: code ?? -1, stdout: out }));
      child.stdin.end(JSON.stringify(node.conf()));
    });
    assertCniError({ exitCode: r.code, stdout: JSON.parse(r.stdout) }, 4, /^CNI_IFNAME is not valid UTF-8/);
    assert.deepEqual(podLinks(pod), ['lo']);
    assert.deepEqual(await snapshot(node), before);
  });

  await t.test('variables too large for the agent: code 4 naming the variable', async () => {
    const { att } = fresh();
    assertCniError(await cni(node, 'ADD', { ...att, args: `K8S_POD_NAME=${'%'.repeat(8000)}` }), 4, /largest: CNI_ARGS/);
  });

  // The spec allows several attachments per container (distinct CNI_IFNAME); the
  // datapath gives a pod one interface (its /32 and default route via the
  // router), so the endpoint manager refuses the second with
  // E_SECOND_INTERFACE before creating anything.
  await t.test('a second interface in the same pod: refused with code 112 and a message naming both; the first one stays', async () => {
    const { pod, att } = fresh();
    const first = await cni(node, 'ADD', att);
    assert.equal(first.exitCode, 0, first.stdoutText);
    const withOne = await snapshot(node);
    const second = await cni(node, 'ADD', { ...att, ifname: 'net1' });
    assertCniError(second, 112, /net1/, /eth0/);
    assert.deepEqual(await snapshot(node), withOne, 'nothing added for the refused interface');
    assert.deepEqual(podLinks(pod), ['eth0', 'lo']);
    assert.equal((await cni(node, 'DEL', att)).exitCode, 0);
    assert.deepEqual(await snapshot(node), before);
  });
});

test('fault 11: a flood of idle connections cannot lock out an ADD', { skip: rootOnly() }, async (t) => {
  const node = await nodeWithAgent(t, { octet: 96 });
  const held: Socket[] = [];
  t.after(() => { for (const c of held) c.destroy(); });
  const n = 2000;
  await Promise.all(Array.from({ length: n }, () => new Promise<void>((resolve) => {
    const c = connect(node.socket, () => resolve());
    c.on('error', () => resolve());
    held.push(c);
  })));
  await sleep(300);
  const open = held.filter((c) => !c.destroyed && !c.readableEnded).length;
  assert.ok(open <= DEFAULT_API_LIMITS.maxConnections, `${open} of ${n} idle connections still open`);
  const pod = makeNetns(t, 'hb');
  const att = { containerID: `ctr-${pod}`, netns: `/run/netns/${pod}`, ifname: 'eth0' };
  const r = await cni(node, 'ADD', att);
  assert.equal(r.exitCode, 0, r.stdoutText);
  assert.equal((await cni(node, 'DEL', att)).exitCode, 0);
});
