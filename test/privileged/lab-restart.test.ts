// Issue 8, fault 14: the lab could not restart an agent, and after a restart
// by hand lab.json kept the old pid, so `lab status` said "not running".
// Now `lab restart-agent NODE` restarts it without losing a packet (also
// when the agent was SIGSTOPped), and `lab status` reports the live agent
// found by its node lock, whoever started it; `lab down` stops that one too.
// Also fault 11 (the lab's half): the lab's directories are 0700 and its
// files (store, record, configs, logs) 0600.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { test } from 'node:test';
import { apiCall } from '../../src/api/client.ts';
import { MEMBRANE_BIN } from '../../src/lab/layout.ts';
import { alive, spawnDetached } from '../../src/lab/processes.ts';
import type { LabRecord } from '../../src/lab/record.ts';
import { labOk, labStatus, labUp } from '../helpers/lab.ts';
import { rootOnly } from '../helpers/skip.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const mode = (p: string) => (statSync(p).mode & 0o777).toString(8);

function longPing(fromNs: string, ip: string, count: number): Promise<{ sent: number; got: number }> {
  const p = spawn('ip', ['netns', 'exec', fromNs, 'ping', '-n', '-i', '0.05', '-W', '2', '-c', String(count), ip], { stdio: ['ignore', 'pipe', 'ignore'] });
  let out = '';
  p.stdout.on('data', (c) => { out += c; });
  return new Promise((resolve) => p.on('close', () => {
    const m = /(\d+) packets transmitted, (\d+) received/.exec(out);
    resolve({ sent: Number(m?.[1] ?? 0), got: Number(m?.[2] ?? 0) });
  }));
}

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) assert.fail(`${what}: not within ${ms} ms`);
    await sleep(50);
  }
}

const healthy = (socket: string) => apiCall<{ status: string }>(socket, 'GET', '/v1/healthz').then((h) => h.status === 'ok', () => false);

test('lab restart-agent, and lab status finds the live agent', { skip: rootOnly() }, async (t) => {
  const { name } = await labUp(t, ['--nodes', '2', '--pods-per-node', '1']);
  const s = await labStatus(name);
  const [n1] = s.nodes;
  const [p1, p2] = [s.pods.find((p) => p.node === 'node-1')!, s.pods.find((p) => p.node === 'node-2')!];
  const dir = `/run/membrane/labs/${name}`;

  await t.test('the lab keeps its files to root (fault 11)', () => {
    for (const d of [dir, `${dir}/nodes`, `${dir}/nodes/node-1`, `${dir}/nodes/node-1/state`, s.pinRoot]) assert.equal(mode(d), '700', d);
    for (const f of [`${dir}/lab.json`, `${dir}/cluster.db`, `${dir}/cluster.db-wal`, `${dir}/cluster.db-shm`, n1!.configFile, n1!.logFile]) assert.equal(mode(f), '600', f);
  });

  await t.test('restart-agent: a new agent, the pods keep talking', async () => {
    const ping = longPing(p2.netns, p1.ip!, 60);
    await sleep(300);
    const r = JSON.parse((await labOk(['lab', 'restart-agent', '--name', name, 'node-1', '-o', 'json'])).stdout);
    assert.equal(r.oldPid, n1!.agentPid);
    assert.notEqual(r.agentPid, n1!.agentPid);
    const after = (await labStatus(name)).nodes[0]!;
    assert.deepEqual([after.agentPid, after.running, alive(n1!.agentPid!)], [r.agentPid, true, false]);
    const { sent, got } = await ping;
    t.diagnostic(`ping across restart-agent: ${got}/${sent}`);
    assert.equal(got, sent, 'no packet lost');
    assert.match(readFileSync(n1!.logFile, 'utf8'), /SIGHUP: stopping for a restart/);
  });

  await t.test('an agent restarted by hand is the one lab status reports, and restart-agent replaces it even when stopped', async () => {
    const recorded = (await labStatus(name)).nodes[0]!.agentPid!;
    process.kill(recorded, 'SIGHUP');
    await until('the agent exits', () => !alive(recorded));
    const mine = spawnDetached(['ip', 'netns', 'exec', n1!.netns, MEMBRANE_BIN, 'agent', '--config', n1!.configFile], n1!.logFile);
    await until('the hand-started agent serves', () => healthy(n1!.apiSocket));
    const rec = JSON.parse(readFileSync(`${dir}/lab.json`, 'utf8')) as LabRecord;
    assert.equal(rec.nodes[0]!.agentPid, recorded, 'lab.json still names the old pid');
    const st = await labStatus(name);
    assert.deepEqual([st.nodes[0]!.agentPid, st.nodes[0]!.running], [mine, true], 'lab status names the live agent');
    assert.equal(st.pods.find((p) => p.name === p1.name)!.identity, p1.identity, 'and asks it');

    process.kill(mine, 'SIGSTOP');
    assert.equal((await labStatus(name)).nodes[0]!.stopped, true);
    const r = JSON.parse((await labOk(['lab', 'restart-agent', '--name', name, 'node-1', '-o', 'json'])).stdout);
    assert.equal(r.oldPid, mine);
    assert.equal(alive(mine), false, 'the stopped agent was continued and stopped');
    assert.equal((await labStatus(name)).nodes[0]!.agentPid, r.agentPid);
    assert.ok(await healthy(n1!.apiSocket));
  });
});
