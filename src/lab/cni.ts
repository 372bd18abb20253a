// Attaching lab pods the way a container runtime does: execute the CNI
// plugin binary with the CNI_* variables and the network config on stdin,
// from the node's network namespace. The plugin only needs the agent's
// socket path (conf key agentSocket); labels go in conf `args.labels`.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { MembraneError } from '../shared/errors.ts';
import { CNI_PLUGIN, REPO } from './layout.ts';
import type { NodeRecord, PodRecord } from './record.ts';

export const CNI_VERSION = '1.1.0';

export function checkCniPlugin(): void {
  if (!existsSync(CNI_PLUGIN)) {
    throw new MembraneError('lab', { code: 'E_LAB', cause: `CNI plugin ${CNI_PLUGIN} is not built`, hint: `make -C ${REPO}cni` });
  }
}

export interface CniResult {
  code: number;
  out: any;
  text: string;
}

/** Runs the plugin once (command ADD or DEL) for `pod` on `node`. Never throws for a CNI error: see `code`/`out`. */
export function runCni(command: 'ADD' | 'DEL' | 'CHECK', node: NodeRecord, pod: PodRecord, extra: Record<string, unknown> = {}): Promise<CniResult> {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    CNI_COMMAND: command,
    CNI_CONTAINERID: pod.containerID,
    CNI_NETNS: `/run/netns/${pod.netns}`,
    CNI_IFNAME: pod.ifname,
    CNI_ARGS: `K8S_POD_NAMESPACE=default;K8S_POD_NAME=${pod.name}`,
    CNI_PATH: `${REPO}bin`,
  };
  const conf = { cniVersion: CNI_VERSION, name: 'membrane', type: 'membrane-cni', agentSocket: node.apiSocket, args: { labels: pod.labels }, ...extra };
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', node.netns, CNI_PLUGIN], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.stdin.on('error', () => { /* the plugin may exit early */ });
    child.on('error', reject);
    child.on('close', (code) => {
      const text = Buffer.concat(out).toString('utf8');
      let parsed: unknown;
      try { parsed = text.trim() ? JSON.parse(text) : undefined; } catch { parsed = undefined; }
      resolve({ code: code ?? 1, out: parsed, text: text || Buffer.concat(err).toString('utf8') });
    });
    child.stdin.end(JSON.stringify(conf));
  });
}

/** CNI ADD; returns the pod's IP. Throws a MembraneError carrying the CNI error code and message. */
export async function cniAdd(node: NodeRecord, pod: PodRecord): Promise<string> {
  const r = await runCni('ADD', node, pod);
  if (r.code !== 0) {
    const msg = r.out?.msg ? `CNI error ${r.out.code}: ${r.out.msg}` : r.text.trim();
    throw new MembraneError(`add pod ${pod.name} on ${node.name}`, { code: r.out?.code === 11 ? 'E_UNAVAILABLE' : 'E_LAB', cause: msg });
  }
  const addr = r.out?.ips?.[0]?.address as string | undefined;
  if (!addr) throw new MembraneError(`add pod ${pod.name} on ${node.name}`, { code: 'E_LAB', cause: `no IP in the CNI result: ${r.text}` });
  return addr.split('/')[0]!;
}
