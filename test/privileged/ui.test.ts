// The web UI end to end: a 2-node lab (whose `lab up` starts `membrane ui`),
// Debian's headless Chromium driven by playwright-core (executablePath
// /usr/bin/chromium, nothing downloaded) on the page, and real traffic between the
// lab's pods. What a user sees is asserted on the page: both nodes with
// their devices, programs and pods; a cross-node ping as a flow whose path
// crosses cilium_vxlan; a policy-denied ping as a red flow with its reason;
// the trace form drawing a path; the policies selecting a pod; a node whose
// agent is killed shown unreachable, then live again after its restart.
// Screenshots go to docs/screenshots/ (linked from the README). The first
// render time and the frame times under a flood of flows are measured here
// and printed (test diagnostics), never asserted.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { apiCall } from '../../src/api/client.ts';
import { chromium, errors, type Browser, type Page } from 'playwright-core';
import { inNetns, labOk, labStatus, labUp } from '../helpers/lab.ts';
import { MEMBRANE } from '../helpers/membrane.ts';
import { rootOnly, skipUnless } from '../helpers/skip.ts';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const SHOTS = join(REPO, 'docs/screenshots');

const CHROMIUM = '/usr/bin/chromium';
// What the previous DevTools driver ran chromium with: the machine's network is closed, so nothing in the
// background (component updates, safe browsing, field trials) may try to reach out; no GPU, no sandbox as root.
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', '--no-default-browser-check',
  '--disable-extensions', '--disable-background-networking', '--mute-audio'];

const skip = rootOnly() || skipUnless(existsSync(CHROMIUM), `${CHROMIUM} is missing (scripts/install-deps.sh installs Debian's chromium)`);

/** Pings quietly; returns whether any reply came. */
function ping(ns: string, ip: string, count = 3): boolean {
  try {
    inNetns(ns, ['ping', '-c', String(count), '-i', '0.2', '-W', '1', ip]);
    return true;
  } catch {
    return false;
  }
}

/** Playwright's throwaway directories in the temp dir (the browser's profile, its artifacts). */
const PW_TEMP = /^(playwright_chromiumdev_profile-|playwright-artifacts-)/;
const pwTempDirs = () => new Set(readdirSync(tmpdir()).filter((d) => PW_TEMP.test(d)).map((d) => join(tmpdir(), d)));

/** Pids of processes whose command line names one of `dirs` (chromium and its children carry --user-data-dir). */
function processesUsing(dirs: string[]): number[] {
  const pids: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    let cmd = '';
    try { cmd = readFileSync(`/proc/${e}/cmdline`, 'utf8'); } catch { continue; }
    if (dirs.some((d) => cmd.includes(d))) pids.push(Number(e));
  }
  return pids;
}

/** Starts headless chromium with playwright-core; returns it and a close that leaves no browser process and no profile behind. */
async function launchBrowser(): Promise<{ browser: Browser; close: () => Promise<void> }> {
  const before = pwTempDirs();
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  const mine = [...pwTempDirs()].filter((d) => !before.has(d));
  assert.ok(mine.some((d) => d.includes('_profile-')), `playwright-core made a throwaway profile in ${tmpdir()}`);
  const close = async () => {
    await browser.close().catch(() => undefined);
    // Playwright kills chromium's process group and removes its directories; make sure, and say so if it did not.
    const left = processesUsing(mine);
    for (const pid of left) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
    const dirs = mine.filter((d) => existsSync(d));
    for (const d of dirs) rmSync(d, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
    assert.deepEqual({ processes: left, dirs }, { processes: [], dirs: [] }, 'the browser closed leaves no chromium process and no profile');
  };
  return { browser, close };
}

/** Waits until `expr` (evaluated in the page) is truthy; returns its value. Fails naming `what`. */
async function until<T = unknown>(page: Page, expr: string, what: string, timeoutMs = 15_000): Promise<T> {
  try {
    const h = await page.waitForFunction(expr, undefined, { timeout: timeoutMs, polling: 100 });
    return (await h.jsonValue()) as T;
  } catch (e) {
    if (!(e instanceof errors.TimeoutError)) throw e;
    const last = await page.evaluate(expr).catch((err: Error) => err.message);
    throw new Error(`waiting for ${what}: not seen within ${timeoutMs / 1000} s (last: ${JSON.stringify(last)})`);
  }
}

/** A screenshot of the whole window as a user sees it (scrolled to the top: a click may have scrolled). */
async function shoot(page: Page, file: string): Promise<void> {
  await page.evaluate('window.scrollTo(0, 0)');
  await page.screenshot({ path: join(SHOTS, file) });
}

/** The flow rows of the page's table, as text cells and class. */
const ROWS = `[...document.querySelectorAll('#flows tbody tr')].map((r) => ({ cls: r.className, cells: [...r.cells].map((c) => c.textContent) }))`;

test('web UI: topology, live flows, drops, trace, policies and an agent restart in headless Chromium', { skip, timeout: 240_000 }, async (t) => {
  execFileSync(process.execPath, [join(REPO, 'ui/build.mjs')]);
  const { name } = await labUp(t, ['--nodes', '2', '--pods-per-node', '2']);
  const st = await labStatus(name);
  assert.match(String(st.uiURL), /^http:\/\/127\.0\.0\.1:\d+\/$/, 'lab status lists the UI on loopback as uiURL');
  const url = st.uiURL!;
  const pod = (n: string) => st.pods.find((p) => p.name === n)!;
  const [a1, a2, b1, b2] = ['pod-1-1', 'pod-1-2', 'pod-2-1', 'pod-2-2'].map(pod) as [typeof st.pods[0], typeof st.pods[0], typeof st.pods[0], typeof st.pods[0]];
  mkdirSync(SHOTS, { recursive: true });

  const { browser, close } = await launchBrowser();
  t.after(close);
  const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
  await page.goto(url);
  const firstRender = await until<number>(page, 'window.__membrane && window.__membrane.firstRenderMs', 'the first topology render');
  t.diagnostic(`first topology render ${firstRender.toFixed(0)} ms after navigation start`);

  await t.test('both nodes, their devices with programs, and the pods', async () => {
    const attrAndText = async (sel: string, attr: string) => Object.fromEntries(await Promise.all((await page.locator(sel).all())
      .map(async (l) => [await l.getAttribute(attr), await l.textContent()] as const)));
    const nodes = Object.keys(await attrAndText('g.node[data-node]', 'data-node'));
    assert.deepEqual(nodes.sort(), st.nodes.map((n) => n.name).sort());
    const devices: Record<string, string> = await attrAndText('[data-device]', 'data-device');
    for (const n of st.nodes) {
      assert.match(devices[`${n.name}/cilium_host`] ?? '', /in: cil_to_host.*eg: cil_from_host/, `${n.name}: cilium_host with its programs`);
      assert.match(devices[`${n.name}/cilium_net`] ?? '', /in: cil_to_host/, `${n.name}: cilium_net`);
      assert.match(devices[`${n.name}/cilium_vxlan`] ?? '', /in: cil_from_overlay.*eg: cil_to_overlay/, `${n.name}: cilium_vxlan`);
      assert.match(devices[`${n.name}/eth0`] ?? '', new RegExp(n.nodeIP.replace(/\./g, '\\.')), `${n.name}: the underlay device with the node IP`);
    }
    const pods: Record<string, string> = await attrAndText('[data-pod]', 'data-pod');
    for (const p of st.pods) {
      const text = pods[`${p.node}/${p.name}`];
      assert.ok(text, `pod ${p.name} drawn in ${p.node}`);
      assert.match(text, new RegExp(`${p.ip!.replace(/\./g, '\\.')}.*identity ${p.identity}.*app=`), `${p.name}: IP, identity, labels`);
      // Its lxc device, with cil_from_container attached.
      const lxc = Object.entries(devices).find(([k, v]) => k.startsWith(`${p.node}/lxc`) && v.includes('cil_from_container'));
      assert.ok(lxc, `${p.node}: an lxc device with cil_from_container`);
    }
    const lxcs = Object.keys(devices).filter((k) => /\/lxc/.test(k));
    assert.equal(lxcs.length, st.pods.length, 'one lxc device per pod');
    await shoot(page, 'ui-topology.png');
  });

  await t.test('a cross-node ping appears as a flow crossing cilium_vxlan', async () => {
    assert.ok(ping(a1.netns, b1.ip!), 'the ping is answered');
    const path = await until<string>(page, `(() => { const g = [...document.querySelectorAll('g.path.forwarded')].find((g) => g.dataset.flow && g.dataset.flow.startsWith('${a1.ip}>${b1.ip}') && g.dataset.devices.startsWith('node-1/'));
      return g ? g.dataset.devices : ''; })()`, 'the ping\'s path on node-1 on the drawing');
    const steps = path.split(',');
    assert.ok(steps.includes('node-1/cilium_vxlan'), `the path crosses node-1's cilium_vxlan: ${path}`);
    assert.ok(steps.indexOf(`node-1/pod:${a1.name}`) < steps.indexOf('node-1/cilium_vxlan'), `from the source pod to cilium_vxlan: ${path}`);
    const rows = await page.evaluate<{ cls: string; cells: string[] }[]>(ROWS);
    const req = rows.find((r) => r.cells[1] === 'node-1' && r.cells[2] === a1.name && r.cells[4] === 'ICMP echo');
    assert.ok(req, `the flow table lists the echo request on node-1: ${JSON.stringify(rows.slice(0, 6))}`);
    assert.match(req.cells[5]!, /FORWARDED/);
    assert.match(req.cells[6]!, /cilium_vxlan/);
    // Its detail: the map entries that decided its hops, read from node-1's maps.
    const cell = (n: number, text: string) => page.locator(`td:nth-child(${n})`, { hasText: new RegExp(`^${text}$`) });
    await page.locator('#flows tbody tr').filter({ has: cell(2, 'node-1') }).filter({ has: cell(3, a1.name) }).filter({ has: cell(5, 'ICMP echo') })
      .first().locator('td').first().click();
    const entries = await until<string>(page, `(() => { const t = document.querySelector('#flow-entries')?.textContent ?? ''; return /Deciding/.test(t) ? t : ''; })()`, 'the flow\'s map entries');
    assert.match(entries, new RegExp(`cilium_lxc ${a1.ip!.replace(/\./g, '\\.')}: endpoint ${a1.endpointID}, identity ${a1.identity}`), entries);
    assert.match(entries, new RegExp(`ipcache ${b1.ip!.replace(/\./g, '\\.')}/32: identity ${b1.identity}, tunnel endpoint ${st.nodes[1]!.nodeIP.replace(/\./g, '\\.')}`), entries);
    // On node-2 it arrives over the overlay and is delivered to the pod.
    await until(page, `${ROWS}.some((r) => r.cells[1] === 'node-2' && r.cells[3] === '${b1.name}' && /to-endpoint/.test(r.cells[6]))`, 'the delivery on node-2');
    await shoot(page, 'ui-flows.png');
  });

  await t.test('a policy-denied ping appears in red at its hop, with the reason', async () => {
    const policy = join(tmpdir(), `${name}-deny.yaml`);
    writeFileSync(policy, `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: ui-deny, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: ${b2.name}}}
  ingressDeny:
  - fromEndpoints: [{matchLabels: {app: ${a1.name}}}]
  ingress:
  - fromEntities: [all]
`);
    await labOk(['policy', 'import', policy, '--wait', '--lab', name]);
    assert.equal(ping(a1.netns, b2.ip!, 2), false, 'the denied ping gets no reply');
    const label = await until<string>(page, `(() => { const g = [...document.querySelectorAll('g.path.dropped')].find((g) => g.dataset.flow && g.dataset.flow.startsWith('${a1.ip}>${b2.ip}'));
      return g ? g.dataset.devices + ' | ' + g.querySelector('.drop-label').textContent : ''; })()`, 'the drop on the drawing');
    assert.match(label, /node-2\/cilium_vxlan \| ✗ POLICY_DENY/, `dropped on node-2 where the overlay delivers, labelled with the reason: ${label}`);
    const stroke = await page.evaluate<string>(`getComputedStyle(document.querySelector('g.path.dropped .drop-mark')).stroke`);
    assert.equal(stroke, 'rgb(208, 49, 45)', 'the drop is drawn in red');
    const rows = await page.evaluate<{ cls: string; cells: string[] }[]>(ROWS);
    const drop = rows.find((r) => r.cls.includes('dropped') && r.cells[3] === b2.name);
    assert.ok(drop, 'the flow table lists the drop');
    assert.match(drop.cells[5]!, /DROPPED \(POLICY_DENY\)/);
    // The filters: only drops, then only this pod's flows.
    await page.locator('#filters select[name=verdict]').selectOption('DROPPED');
    const dropsOnly = await until<{ cls: string; cells: string[] }[]>(page, `(() => { const r = ${ROWS}; return r.length && r.every((x) => x.cls.includes('dropped')) ? r : null; })()`, 'the table filtered to drops', 5_000);
    assert.ok(dropsOnly.every((r) => /POLICY_DENY/.test(r.cells[5]!)));
    await page.locator('#filters select[name=verdict]').selectOption('');
    await page.locator('#filters input[name=pod]').fill(b1.name);
    await until(page, `(() => { const r = ${ROWS}; return r.length > 0 && r.every((x) => x.cells[2] === '${b1.name}' || x.cells[3] === '${b1.name}'); })()`, `the table filtered to ${b1.name}`, 5_000);
    await page.locator('#filters input[name=pod]').fill('');
    // The detail pane: the hop and the source line.
    await page.locator('#flows tbody tr.dropped').first().waitFor({ state: 'attached', timeout: 5_000 }); // the drops back in the unfiltered table
    await page.locator('#flows tbody tr.dropped td').first().click();
    const detail = await until<string>(page, `(() => { const t = document.querySelector('#flow-detail').textContent; return /Deciding/.test(t) ? t : ''; })()`, 'the drop\'s detail with its map entries');
    assert.match(detail, /dropped: POLICY_DENY .*policy\.h:\d+ on cilium_vxlan/);
    assert.match(detail, new RegExp(`policy ingress of endpoint ${b2.endpointID}: DENY, remote identity ${a1.identity}`), detail);
    assert.match(detail, new RegExp(`policy map cilium_policy_v2_${String(b2.endpointID).padStart(5, '0')}: deny identity ${a1.identity}`), detail);
    await shoot(page, 'ui-drop.png');
  });

  await t.test('policies: which select a pod, and the verdict for a pair', async () => {
    await page.locator('#policy-pod').selectOption(`${b2.node}/${b2.name}`);
    const sel = await until<string>(page, `(() => { const t = document.querySelector('#policy-result').textContent; return /ingress/.test(t) ? t : ''; })()`, 'the policies of the pod');
    const [egress, ingress] = [sel.slice(sel.indexOf('egress'), sel.indexOf('ingress')), sel.slice(sel.indexOf('ingress'))];
    assert.match(ingress, /ui-deny/, `ui-deny selects ${b2.name} for ingress: ${sel}`);
    assert.doesNotMatch(egress, /ui-deny/, `and not for egress: ${sel}`);
    await page.locator('#trace-form select[name=src]').selectOption(`${a1.node}/${a1.name}`);
    await page.locator('#trace-form select[name=dst]').selectOption(`${b2.node}/${b2.name}`);
    await page.locator('#trace-form button[name=verdict]').click();
    const v = await until<string>(page, `document.querySelector('#policy-verdict')?.textContent`, 'the verdict');
    assert.match(v, /denied-by-deny-rule/);
  });

  await t.test('the trace form runs membrane trace and draws its path', async () => {
    await page.locator('#trace-form select[name=src]').selectOption(`${a1.node}/${a1.name}`);
    await page.locator('#trace-form select[name=dst]').selectOption(`${b1.node}/${b1.name}`);
    await page.locator('#trace-form select[name=protocol]').selectOption('ICMP');
    await page.locator('#trace-form button[name=run]').click();
    const verdict = await until<string>(page, `document.querySelector('#trace-verdict')?.textContent`, 'the trace result', 60_000);
    assert.match(verdict, /DELIVERED/);
    const devices = (await page.evaluate<string>(`document.querySelector('g.path.trace')?.dataset.devices ?? ''`)).split(',');
    const order = [`node-1/pod:${a1.name}`, 'node-1/cilium_vxlan', 'node-1/eth0', 'node-2/eth0', 'node-2/cilium_vxlan', `node-2/pod:${b1.name}`];
    const at = order.map((d) => devices.indexOf(d));
    assert.ok(at.every((i, k) => i >= 0 && (k === 0 || i > at[k - 1]!)), `the trace's path runs ${order.join(' -> ')}: ${devices.join(',')}`);
    const hops = await page.evaluate<string>(`document.querySelector('#trace-result').textContent`);
    assert.match(hops, /tunnel key: remote \d+\.\d+\.\d+\.\d+, VNI \d+/, 'the hops name the deciding entries');
    await shoot(page, 'ui-trace.png');
    // From a node's host to a pod on the other node: from cilium_host, through the overlay.
    await page.locator('#trace-form select[name=src]').selectOption('node-1/@host');
    await page.locator('#trace-form select[name=dst]').selectOption(`${b1.node}/${b1.name}`);
    await page.locator('#trace-form button[name=run]').click();
    await until(page, `/^node-1 → ${b1.name}: DELIVERED/.test(document.querySelector('#trace-verdict')?.textContent ?? '')`, 'the host trace', 60_000);
    const hostPath = await page.evaluate<string>(`document.querySelector('g.path.trace')?.dataset.devices ?? ''`);
    assert.match(hostPath, new RegExp(`^node-1/cilium_host,node-1/cilium_vxlan,node-1/eth0,node-2/eth0,node-2/cilium_vxlan,.*node-2/pod:${b1.name}$`), hostPath);
  });

  await t.test('an agent restart: the node shows unreachable, then live again by itself', async () => {
    const n2 = (await labStatus(name)).nodes.find((n) => n.name === 'node-2')!;
    process.kill(n2.agentPid!, 'SIGKILL');
    await page.locator('g.node[data-node="node-2"].unreachable').waitFor({ state: 'attached', timeout: 15_000 });
    await until(page, `document.querySelector('#streams [data-node="node-2"]')?.textContent.includes('reconnecting')`, 'node-2 flows reconnecting');
    await shoot(page, 'ui-unreachable.png');
    // Its pods stay drawn: the datapath keeps forwarding without the agent.
    assert.ok(await page.evaluate(`!!document.querySelector('[data-pod="node-2/${b1.name}"]')`));
    await labOk(['lab', 'restart-agent', 'node-2', '--name', name]);
    await page.locator('g.node[data-node="node-2"].reachable').waitFor({ state: 'attached', timeout: 20_000 });
    await until(page, `document.querySelector('#streams [data-node="node-2"]')?.textContent.includes('live')`, 'node-2 flows live again', 20_000);
    const before = await page.evaluate<number>(`${ROWS}.length`);
    assert.ok(ping(a2.netns, b1.ip!), 'traffic still flows');
    await until(page, `${ROWS}.some((r) => r.cells[1] === 'node-2' && r.cells[3] === '${b1.name}' && r.cells[2] === '${a2.name}')`, `node-2's flows from the new agent (table had ${before} rows)`);
  });

  /** Starts `membrane ui ARGS`; resolves with its URL. Stopped when `tt` ends. */
  const startUi = (tt: { after: (fn: () => void) => void }, args: string[]) => new Promise<string>((resolve, reject) => {
    const ui = spawn(MEMBRANE, ['ui', '--listen', '127.0.0.1:0', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    tt.after(() => { ui.kill('SIGTERM'); });
    let out = '';
    let err = '';
    ui.stderr.on('data', (c) => { err += c; });
    ui.stdout.on('data', (c) => { out += c; const m = /(http:\/\/[^ ]+\/)/.exec(out); if (m) resolve(m[1]!); });
    ui.on('exit', (code) => reject(new Error(`membrane ui exited ${code}: ${err}`)));
  });

  /** Opens `url` in a new tab, waits for both flow streams, runs `load` while measuring frames; returns the figures as one line. */
  async function measureFrames(url: string, shot: string, load: () => Promise<void>): Promise<{ line: string; got: number; frames: number }> {
    const p = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
    await p.goto(url);
    await until(p, 'window.__membrane && window.__membrane.firstRenderMs', 'render');
    await until(p, `[...document.querySelectorAll('#streams .badge')].filter((b) => b.textContent.includes('live')).length === 2`, 'both flow streams live');
    const start = await p.evaluate<number>('window.__membrane.flowsReceived');
    await p.evaluate('window.__membrane.startFrames()');
    const t0 = Date.now();
    await load();
    const secs = (Date.now() - t0) / 1000;
    const f = await p.evaluate<{ count: number; max: number; p99: number; median: number; over50: number; maxWorkMs: number; longTasks: number; longestTaskMs: number }>('window.__membrane.stopFrames()');
    const got = (await p.evaluate<number>('window.__membrane.flowsReceived')) - start;
    await shoot(p, shot);
    await p.close().catch(() => undefined);
    return {
      got, frames: f.count,
      line: `flows received ${got} in ${secs.toFixed(1)} s (${(got / secs).toFixed(0)}/s); frames ${f.count}, median ${f.median.toFixed(1)} ms, p99 ${f.p99.toFixed(1)} ms, max ${f.max.toFixed(1)} ms, ` +
        `${f.over50} over 50 ms; the page's own work at most ${f.maxWorkMs.toFixed(1)} ms at a time; ${f.longTasks} long tasks, the longest ${f.longestTaskMs.toFixed(0)} ms; load average ${loadavg()[0]!.toFixed(1)} on ${cpus().length} CPUs`,
    };
  }

  await t.test('measured: frame times under a flood of real flows (a second UI at trace level 2: every packet a flow)', async (tt) => {
    const url2 = await startUi(tt, ['--lab', name, '--trace-level', '2']);
    const r = await measureFrames(url2, 'ui-flood.png', async () => {
      // Up to 400 echo requests/s for 1,000 requests, cross-node: each is 4 flows (request and reply on both nodes).
      try { inNetns(a1.netns, ['ping', '-q', '-c', '1000', '-i', '0.0025', '-W', '1', b1.ip!], 60_000); } catch { /* losses are fine here */ }
      await new Promise((res) => setTimeout(res, 1_000));
    });
    tt.diagnostic(r.line);
    assert.ok(r.got > 0, 'flows arrived');
    assert.ok(r.frames > 0, 'the page kept drawing frames');
  });

  await t.test('measured: frame times at a steady 1,500 flows/s (the lab\'s flows replayed by stand-in agents)', async (tt) => {
    // The agents' own rate depends on the CPU they get; stand-ins replay the flows the lab made at a fixed rate,
    // and answer status, endpoints and identities from the real agents, so the page draws the real cluster.
    const seen = JSON.parse((await fetch(`${url}api/flows`).then((r) => r.text()))) as Record<string, unknown>[];
    assert.ok(seen.length >= 4, 'the lab made flows to replay');
    const dir = mkdtempSync(join(tmpdir(), 'membrane-ui-replay-'));
    tt.after(() => rmSync(dir, { recursive: true, force: true }));
    const servers: Server[] = [];
    tt.after(() => { for (const s of servers) s.closeAllConnections(); for (const s of servers) s.close(); });
    const nodes = st.nodes.map((n) => ({ name: n.name, apiSocket: join(dir, `${n.name}.sock`), exec: ['ip', 'netns', 'exec', n.netns] }));
    let rate = 0;
    for (const [i, n] of nodes.entries()) {
      const real = st.nodes[i]!.apiSocket;
      const mine = seen.filter((f) => f.node_name === n.name);
      const srv = createServer((req, res) => {
        const path = new URL(req.url ?? '/', 'http://x').pathname;
        if (path === '/v1/flows') {
          res.writeHead(200, { 'content-type': 'application/x-ndjson' });
          res.write(`${JSON.stringify({ node_status: { state_change: 'NODE_CONNECTED' }, node_name: n.name })}\n`);
          let k = 0;
          // 750 flows/s per node in batches of 15 every 20 ms.
          const timer = setInterval(() => {
            if (!rate) return;
            let out = '';
            for (let j = 0; j < 15; j++) {
              const f = { ...mine[k++ % mine.length]!, time: new Date().toISOString(), uuid: `replay-${n.name}-${k}` };
              out += `${JSON.stringify({ flow: f, node_name: n.name, time: f.time })}\n`;
            }
            res.write(out);
          }, 20);
          req.on('close', () => clearInterval(timer));
          return;
        }
        apiCall(real, 'GET', path, undefined, { timeoutMs: 2_000 }).then((v) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end(JSON.stringify(v)); },
          (e: Error) => { res.writeHead(503); res.end(JSON.stringify({ code: 'E_UNAVAILABLE', message: e.message })); });
      });
      await new Promise<void>((res) => srv.listen(n.apiSocket, () => res()));
      servers.push(srv);
    }
    const cluster = join(dir, 'cluster.yaml');
    writeFileSync(cluster, `name: replay\nnodes:\n${nodes.map((n) => `  - { name: ${n.name}, apiSocket: ${n.apiSocket}, exec: [${n.exec.join(', ')}] }`).join('\n')}\n`);
    const url3 = await startUi(tt, ['--cluster', cluster]);
    const r = await measureFrames(url3, 'ui-replay.png', async () => {
      rate = 1_500;
      await new Promise((res) => setTimeout(res, 6_000));
      rate = 0;
    });
    tt.diagnostic(r.line);
    assert.ok(r.got > 0, 'flows arrived');
  });
});
