// `lab up` / `lab down` leave the machine as they found it: after a normal
// run, after `lab up` was killed with SIGKILL half way (with lab.json, and
// without it: the sweep by name), and when `lab up` refuses bad input or an
// existing lab. Also reports how long a 2 x 2 lab takes to come up.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { test, type TestContext } from 'node:test';
import { buildOnce, MEMBRANE } from '../helpers/membrane.ts';
import { assertLabGone, downAfter, inNetns, lab, labNetns, labOk, labProcesses, labStatus, rootLinks, uniqueLab } from '../helpers/lab.ts';
import type { LabRecord } from '../../src/lab/record.ts';
import { rootOnly } from '../helpers/skip.ts';

const skip = rootOnly('needs root (netns, bpf)');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('2 x 2 lab: up in time, down leaves nothing, twice', { skip }, async (t) => {
  buildOnce();
  const links = rootLinks();
  const name = uniqueLab();
  downAfter(t, name);
  const up = await labOk(['lab', 'up', '--name', name]);
  const inner = /ready: 2 nodes, 4 pods, sqlite store, in ([\d.]+) s/.exec(up.stdout);
  assert.ok(inner, up.stdout);
  t.diagnostic(`lab up 2 nodes x 2 pods: ${(up.ms / 1000).toFixed(2)} s wall (membrane CLI start included), ${inner[1]} s after the CLI started (SPEC target <= 5 s)`);
  assert.match(up.stdout, /node-1: agent ready/, 'progress lines while it works');
  const s = await labStatus(name);
  assert.deepEqual(s.pods.map((p) => `${p.name}@${p.node}`), ['pod-1-1@node-1', 'pod-1-2@node-1', 'pod-2-1@node-2', 'pod-2-2@node-2']);
  assert.deepEqual(s.nodes.map((n) => [n.netns, n.nodeIP, n.podCIDR, n.routerIP]), [
    [`${name}-node-1`, '10.13.0.11', '10.244.1.0/24', '10.244.1.1'], [`${name}-node-2`, '10.13.0.12', '10.244.2.0/24', '10.244.2.1'],
  ]);
  inNetns(s.pods[0]!.netns, ['ping', '-c', '1', '-W', '1', s.pods[3]!.ip!]);

  // An existing lab is refused, and left as it is.
  const again = await lab(['lab', 'up', '--name', name]);
  assert.notEqual(again.code, 0);
  assert.match(again.stderr, new RegExp(`lab ${name} already exists`));
  assert.match(again.stderr, /hint: membrane lab down/);
  assert.equal((await labStatus(name)).pods.length, 4);
  inNetns(s.pods[0]!.netns, ['ping', '-c', '1', '-W', '1', s.pods[3]!.ip!]);

  const down = await labOk(['lab', 'down', '--name', name]);
  assert.match(down.stdout, new RegExp(`lab ${name} removed`));
  assertLabGone(name);
  assert.deepEqual(rootLinks(), links, 'the root netns\'s devices are as they were');
  const twice = await labOk(['lab', 'down', '--name', name]);
  assert.match(twice.stdout, /nothing to remove/);
  const gone = await lab(['lab', 'status', '--name', name]);
  assert.notEqual(gone.code, 0);
  assert.match(gone.stderr, /no such lab/);
});

test('bad input: nothing is created', { skip }, async () => {
  const name = uniqueLab();
  for (const [args, msg] of [
    [['--nodes', '0'], /--nodes: must be an integer in 1\.\.200/],
    [['--store', 'redis'], /store: must be sqlite or etcd/],
    [['--labels', 'pod-9-9=a=b'], /no pod named pod-9-9/],
    [['--labels', 'pod-1-1'], /is not POD=KEY=VALUE/],
  ] as [string[], RegExp][]) {
    const r = await lab(['lab', 'up', '--name', name, ...args]);
    assert.equal(r.code, 3, `${args.join(' ')}: config error exit code`);
    assert.match(r.stderr, msg);
    assertLabGone(name);
  }
  const r = await lab(['lab', 'up', '--name', 'Bad_Name']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /lab name "Bad_Name": must be/);
});

/** Starts `lab up` and SIGKILLs it once its agents are running and some pods exist. */
async function killLabUpHalfway(t: TestContext, name: string): Promise<void> {
  downAfter(t, name);
  const child = spawn(MEMBRANE, ['lab', 'up', '--name', name, '--nodes', '3', '--pods-per-node', '3'], { stdio: 'ignore' });
  const exited = new Promise((r) => child.on('close', r));
  const file = `/run/membrane/labs/${name}/lab.json`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    assert.ok(Date.now() < deadline, 'lab up got to its agents within 30 s');
    assert.equal(child.exitCode, null, 'lab up is still in progress');
    try {
      const rec = JSON.parse(readFileSync(file, 'utf8')) as LabRecord;
      if (rec.nodes.length === 3 && rec.nodes.every((n) => n.agentPid) && rec.pods.length > 0) break;
    } catch { /* not written yet */ }
    await sleep(5);
  }
  child.kill('SIGKILL');
  await exited;
  assert.ok(labProcesses(name).length >= 3, 'the agents outlived the killed lab up');
  assert.ok(labNetns(name).length >= 4, 'its namespaces are there');
}

test('lab down after lab up was killed with SIGKILL half way', { skip }, async (t) => {
  buildOnce();
  const links = rootLinks();

  await t.test('with its lab.json', async (tt) => {
    const name = uniqueLab();
    await killLabUpHalfway(tt, name);
    await labOk(['lab', 'down', '--name', name]);
    assertLabGone(name);
  });

  await t.test('without lab.json: found by name and by command line', async (tt) => {
    const name = uniqueLab();
    await killLabUpHalfway(tt, name);
    rmSync(`/run/membrane/labs/${name}/lab.json`);
    const r = await labOk(['lab', 'down', '--name', name]);
    assert.match(r.stdout, /killed \d+ processes/);
    assertLabGone(name);
    assert.equal(existsSync(`/run/membrane/bpffs/labs/${name}`), false);
  });
  assert.deepEqual(rootLinks(), links, 'the root netns\'s devices are as they were');
});

test('lab up interrupted (SIGINT) removes what it made and exits 130', { skip }, async (t) => {
  buildOnce();
  const name = uniqueLab();
  downAfter(t, name);
  const child = spawn(MEMBRANE, ['lab', 'up', '--name', name, '--nodes', '3'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (c) => { out += c; });
  const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
  while (!/agent started/.test(out) && child.exitCode === null) await sleep(5);
  child.kill('SIGINT');
  assert.equal(await exited, 130);
  assert.match(out, /SIGINT: stopping; removing what was made/);
  assertLabGone(name);
});
