// Two nodes initialised by `membrane datapath init` (static peers): the host
// of one node reaches the other node's router IP through cil_from_host ->
// cilium_vxlan -> underlay -> cil_from_overlay -> cilium_host, with no
// membrane process running any more.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { nsExec } from '../helpers/netns.ts';
import { twoNodes } from '../helpers/two-nodes.ts';
import { membraneOk } from '../helpers/membrane.ts';
import { rootOnly } from '../helpers/skip.ts';

test('programs stay attached and forward across nodes after membrane exits', { skip: rootOnly('requires root') }, async (t) => {
  const [a, b] = twoNodes(t);
  // No membrane process is left: init ran and exited in twoNodes().
  assert.match(nsExec(a.ns, ['bpftool', 'net', 'show']), /cilium_host\(\d+\) tcx\/egress cil_from_host/);

  // Capture the underlay while A's host pings B's router IP (a remote-node address behind the tunnel).
  const cap = spawn('ip', ['netns', 'exec', b.ns, 'tcpdump', '-n', '-T', 'vxlan', '-i', 'eth0', '-c', '2', '-l', 'udp port 8472'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let captured = '';
  cap.stdout.on('data', (d) => { captured += d; });
  const done = new Promise((r) => cap.on('exit', r));
  t.after(() => cap.kill());
  await new Promise((r) => setTimeout(r, 500));

  const out = nsExec(a.ns, ['ping', '-c', '3', '-i', '0.2', '-W', '2', b.routerIP]);
  assert.match(out, /3 packets transmitted, 3 received/);
  await Promise.race([done, new Promise((r) => setTimeout(r, 3000))]);
  assert.match(captured, new RegExp(`${a.nodeIP.replace(/\./g, '\\.')}\\.\\d+ > ${b.nodeIP.replace(/\./g, '\\.')}\\.8472: VXLAN`), captured);
  // Host traffic goes on the wire as remote-node (6), never as host (1).
  assert.match(captured, /vni 6\b/);

  // The counters moved in the forwarded direction.
  const metrics = JSON.parse(membraneOk(a.ns, ['bpf', 'metrics', 'list', '-o', 'json']));
  assert.ok(metrics.some((m: any) => m.reason === 0 && m.packets > 0), JSON.stringify(metrics));
});
