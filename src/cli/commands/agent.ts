// `membrane agent` (the daemon) and the commands that ask it: status, endpoint list.
//
// This module is read for every command line (the registry lists its
// commands), so it imports only what describes them; what they run is
// imported inside run(): the daemon (store, libbpf), netlink (koffi) to find
// the node, node:http for the API.
import { existsSync } from 'node:fs';
import type { StatusReply } from '../../agent/routes.ts';
import type { EndpointState } from '../../agent/state-file.ts';
import { apiSocketIn, defaults } from '../../shared/defaults.ts';
import { env } from '../../shared/env.ts';
import { MembraneError } from '../../shared/errors.ts';
import { positional, type Command, type CommandContext } from '../command.ts';
import { json, table } from '../output.ts';
import { configFromArgs, CONFIG_FLAG_SPECS } from './datapath.ts';

/** GET/DELETE on the agent's API (node:http, loaded when a command asks the agent). */
async function ask<T>(ctx: CommandContext, method: string, path: string): Promise<T> {
  const socket = await agentSocket(ctx);
  const { apiCall } = await import('../../api/client.ts');
  return apiCall<T>(socket, method, path);
}

export const agentCmd: Command = {
  path: ['agent'],
  summary: 'the node daemon: datapath, endpoints, IPAM, identities, cluster sync, API (run inside the node\'s netns)',
  usage: '--config FILE',
  flags: CONFIG_FLAG_SPECS,
  async run(ctx) {
    const cfg = await configFromArgs(ctx, 'agent');
    const { Agent } = await import('../../agent/daemon.ts');
    const log = (s: string) => process.stderr.write(`${new Date().toISOString()} agent ${cfg.nodeName}: ${s}\n`);
    const agent = await Agent.start(cfg, log);
    log('ready');
    // SIGTERM/SIGINT: the node leaves the cluster (its store entries go now, peers drop it at once).
    // SIGHUP: a restart; the entries stay under their lease for the next agent, so peers keep the node.
    const sig = await new Promise<NodeJS.Signals>((resolve) => {
      for (const s of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.once(s, () => resolve(s));
    });
    const leave = sig !== 'SIGHUP';
    log(leave
      ? `${sig}: stopping and leaving the cluster (datapath and pins stay in place)`
      : `${sig}: stopping for a restart; the node's store entries stay for ${cfg.leaseTTL} s (datapath and pins stay in place)`);
    await agent.stop({ leave, log });
    return 0;
  },
};

const SOCKET_FLAG = { socket: { type: 'string' as const, help: 'agent API socket (default: found from the node in this netns)' } };

/** The API socket of the agent of the node this netns belongs to. */
export async function agentSocket(ctx: CommandContext): Promise<string> {
  if (typeof ctx.args.flags.socket === 'string') return ctx.args.flags.socket;
  const fromEnv = env().agentSocket;
  if (fromEnv) return fromEnv;
  // The agent records its socket in the node marker; a node set up by `datapath init` alone names none.
  const { currentNode } = await import('../../datapath/node-marker.ts');
  const path = currentNode().apiSocket ?? apiSocketIn(defaults.stateDir);
  // Say where we looked rather than letting the connect fail as "agent not running" (which may be false).
  if (!existsSync(path)) {
    throw new MembraneError('find the agent', {
      code: 'E_UNAVAILABLE', cause: `no agent socket at ${path}`,
      hint: 'start the agent in this node\'s netns (membrane agent --config FILE), or pass --socket PATH',
    });
  }
  return path;
}

export const statusCmd: Command = {
  path: ['status'],
  summary: 'agent state: node, store, IPAM use, endpoints',
  flags: SOCKET_FLAG,
  async run(ctx) {
    const s = await ask<StatusReply>(ctx, 'GET', '/v1/status');
    if (ctx.json) return void ctx.out(json(s));
    ctx.out([
      `Node:       ${s.node} (node IP ${s.nodeIP ?? 'unset'}, router IP ${s.routerIP})`,
      `KVStore:    ${s.storeHealth?.healthy === false ? `Failure   ${s.store.backend}: unavailable since ${s.storeHealth.since}: ${s.storeHealth.lastError ?? ''}` : `Ok   ${s.store.backend}`}`,
      `Membrane:   ${s.ready ? 'Ok' : 'Restoring'}   started ${s.startedAt}`,
      `Cluster:    ${s.cluster.remoteNodes} remote nodes, ${s.cluster.podIPs} pod IPs known${s.cluster.lastError ? ` (last store error: ${s.cluster.lastError})` : ''}`,
      `IPAM:       IPv4: ${s.ipam.used}/${s.ipam.capacity} allocated from ${s.ipam.cidr}`,
      `Endpoints:  ${s.endpoints}`,
      ...(s.pendingStoreDeletes && (s.pendingStoreDeletes.ips.length || s.pendingStoreDeletes.identityReferences)
        ? [`Pending:    store deletes of ${s.pendingStoreDeletes.ips.length} pod IPs and ${s.pendingStoreDeletes.identityReferences} identity references (retried until the store answers)`] : []),
      ...(s.warnings ?? []).map((w) => `Warning:    ${w}`),
    ].join('\n') + '\n');
  },
};

export const nodeList: Command = {
  path: ['node', 'list'],
  summary: 'nodes known from the cluster store (this one first)',
  flags: SOCKET_FLAG,
  async run(ctx) {
    const n = await ask<{ self: { name: string; nodeIP: string; routerIP: string; podCIDR: string }; remote: { name: string; nodeIP: string; routerIP?: string; podCIDR: string }[] }>(ctx, 'GET', '/v1/nodes');
    if (ctx.json) return void ctx.out(json(n));
    ctx.out(table(['NAME', 'NODE IP', 'ROUTER IP', 'POD CIDR', 'SOURCE'], [
      [n.self.name, n.self.nodeIP, n.self.routerIP, n.self.podCIDR, 'local'],
      ...n.remote.map((r) => [r.name, r.nodeIP, r.routerIP, r.podCIDR, 'store']),
    ]));
  },
};

export const nodeDelete: Command = {
  path: ['node', 'delete'],
  summary: 'remove a node that is gone for good from the cluster store now (its peers drop its routes at once), instead of waiting for its lease to expire',
  usage: 'NAME [--socket PATH]',
  flags: SOCKET_FLAG,
  async run(ctx) {
    const name = positional(ctx, 'node delete', 'NAME');
    const r = await ask<{ node: boolean; ips: number; references: number }>(ctx, 'DELETE', `/v1/nodes/${encodeURIComponent(name)}`);
    if (ctx.json) return void ctx.out(json(r));
    ctx.out(r.node || r.ips || r.references
      ? `node ${name} removed from the store (${r.ips} pod IPs, ${r.references} identity references)\n`
      : `node ${name}: nothing in the store\n`);
  },
};

export const endpointList: Command = {
  path: ['endpoint', 'list'],
  summary: 'the node\'s endpoints: id, identity, labels, IP, interface, state',
  flags: SOCKET_FLAG,
  async run(ctx) {
    const eps = await ask<EndpointState[]>(ctx, 'GET', '/v1/endpoints');
    if (ctx.json) return void ctx.out(json(eps));
    ctx.out(table(['ENDPOINT', 'IDENTITY', 'LABELS', 'IPv4', 'INTERFACE', 'POD', 'STATUS'], eps.map((e) => [
      e.id, e.identity, Object.entries(e.labels).map(([k, v]) => `k8s:${k}=${v}`).join(',') || undefined, e.ip, e.hostIfname,
      e.podName ? `${e.podNamespace ?? 'default'}/${e.podName}` : undefined, e.state,
    ])));
  },
};
