// What the plugin binary adds to a pod ADD: spawn-to-exit time of
// cni/membrane-cni doing a full ADD round trip to an in-process agent socket
// (cniHttpHandler over an instant backend, so only the transport and the
// CNI logic are measured), next to the start-up time of `node -e 0` and of
// the shim's VERSION (no agent). Run: make -C cni && node --import tsx bench/cni-shim.ts
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cniHttpHandler } from '../src/cni/http.ts';
import { cniExec } from '../src/cni/runtime.ts';
import type { AddedEndpoint, EndpointBackend } from '../src/cni/types.ts';
import { CNI_PLUGIN as SHIM } from '../src/lab/layout.ts';

const N = Number(process.env.N ?? 200);

/**
 * A backend that answers at once, so the numbers are the shim and the CNI
 * handler alone. Its own, not the tests' FakeBackend: that one records
 * calls and scripts failures for assertions, none of which a timing needs.
 */
function instantBackend(): EndpointBackend {
  let added = 0;
  return {
    add: async (r): Promise<AddedEndpoint> => {
      // Addresses 10.1.0.2-251, over again: nothing is ever deleted here.
      const n = (added++ % 250) + 2;
      const hex = n.toString(16).padStart(2, '0');
      return {
        ip: `10.1.0.${n}`, podMac: `0a:58:0a:01:00:${hex}`, hostIfname: `lxc${r.containerID.slice(0, 8)}`, hostMac: `ee:ee:0a:01:00:${hex}`,
        routerIP: '10.1.0.1', routeMTU: 1450, deviceMTU: 1500,
      };
    },
    del: async () => {},
    check: async () => {},
    status: async () => {},
    gc: async () => ({ removed: [] }),
  };
}

const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;
const fmt = (xs: number[]) => `p50 ${pct(xs, 50).toFixed(2)} ms  p99 ${pct(xs, 99).toFixed(2)} ms  (n=${xs.length})`;

function timeSpawn(cmd: string, args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const c = spawn(cmd, args, { stdio: 'ignore' });
    c.on('error', reject);
    c.on('close', () => resolve(Number(process.hrtime.bigint() - t0) / 1e6));
  });
}

const dir = mkdtempSync(join(tmpdir(), 'mb-cnibench-'));
const sock = join(dir, 'agent.sock');
const server = createServer(cniHttpHandler(instantBackend(), { networkName: 'membrane' }));
await new Promise<void>((r) => server.listen(sock, r));
try {
  const conf = { cniVersion: '1.1.0', name: 'membrane', type: 'membrane-cni', agentSocket: sock };
  const add: number[] = [];
  for (let i = 0; i < N; i++) {
    const r = await cniExec(SHIM, 'ADD', { containerID: `bench-${i}`, netns: '/proc/self/ns/net', ifname: 'eth0', conf });
    if (r.exitCode !== 0) throw new Error(`ADD failed: ${r.stdoutText}`);
    add.push(r.ms);
  }
  const version: number[] = [];
  for (let i = 0; i < N; i++) version.push((await cniExec(SHIM, 'VERSION', { stdin: '{"cniVersion":"1.1.0"}' })).ms);
  const node: number[] = [];
  for (let i = 0; i < Math.min(N, 50); i++) node.push(await timeSpawn(process.execPath, ['-e', '0']));
  console.log(`membrane-cni ADD round trip : ${fmt(add)}`);
  console.log(`membrane-cni VERSION        : ${fmt(version)}`);
  console.log(`node -e 0                   : ${fmt(node)}`);
} finally {
  await new Promise((r) => server.close(r));
  rmSync(dir, { recursive: true, force: true });
}
