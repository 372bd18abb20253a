// Attaching lab pods the way a container runtime does: execute the CNI
// plugin binary (through the one runtime side, src/cni/runtime.ts) with the
// CNI_* variables and the network config on stdin, from the node's network
// namespace. The plugin only needs the agent's socket path (conf key
// agentSocket); labels go in conf `args.labels`.
import { existsSync } from 'node:fs';
import { cniExec } from '../cni/runtime.ts';
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

/** Runs the plugin once (command ADD, DEL or CHECK) for `pod` on `node`. Never throws for a CNI error: see `code`/`out`. */
export async function runCni(command: 'ADD' | 'DEL' | 'CHECK', node: NodeRecord, pod: PodRecord, extra: Record<string, unknown> = {}): Promise<CniResult> {
  const r = await cniExec(CNI_PLUGIN, command, {
    fromNetns: node.netns,
    containerID: pod.containerID,
    netns: `/run/netns/${pod.netns}`,
    ifname: pod.ifname,
    args: { K8S_POD_NAMESPACE: 'default', K8S_POD_NAME: pod.name },
    cniPath: `${REPO}bin`,
    conf: { cniVersion: CNI_VERSION, name: 'membrane', type: 'membrane-cni', agentSocket: node.apiSocket, args: { labels: pod.labels }, ...extra },
  });
  // `out` is the plugin's JSON answer (a result or a CNI error object), if it printed one.
  const out = typeof r.stdout === 'object' && r.stdout !== null ? r.stdout : undefined;
  return { code: r.exitCode, out, text: r.stdoutText || r.stderr };
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
