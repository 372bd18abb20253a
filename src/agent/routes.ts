// The agent's API routes (the CNI route is mounted separately in daemon.ts).
import type { ApiServer } from '../api/server.ts';
import { tracePolicy, type TraceRequest } from '../policy/index.ts';
import { MembraneError } from '../shared/errors.ts';
import type { Agent } from './daemon.ts';
import { withLocalhost, type PolicyStatus } from './policy-manager.ts';
import { deletePolicy, importPolicies, listPolicies } from './policy-store.ts';

export interface StatusReply {
  node: string;
  nodeIP?: string;
  routerIP: string;
  podCIDR: string;
  deviceMTU: number;
  /** The pods' MTU: deviceMTU less the VXLAN overhead. */
  routeMTU: number;
  tunnelPort: number;
  store: { backend: string };
  /** Added: whether the store could take a write at the last check (CNI STATUS fails while it cannot). */
  storeHealth: { healthy: boolean; since?: string; lastError?: string; lastCheck?: string };
  /** Added: things an operator must hear about, e.g. a store with no trace of this node although it has endpoints. */
  warnings: string[];
  /** Added: pod IP keys whose delete waits for the store, and identity references likewise. */
  pendingStoreDeletes: { ips: string[]; identityReferences: number };
  ipam: { used: number; capacity: number; cidr: string };
  endpoints: number;
  ready: boolean;
  cluster: { remoteNodes: number; podIPs: number; lastSync?: string; lastError?: string };
  startedAt: string;
  bootID: string;
  /** Added: what policy this node enforces, and from which store revision. */
  policy: PolicyStatus;
}

export function agentRoutes(agent: Agent, api: ApiServer): void {
  api.get('/v1/healthz', () => ({ status: agent.endpoints.ready ? 'ok' : 'restoring' }));
  api.get('/v1/status', (): StatusReply => ({
    node: agent.cfg.nodeName,
    nodeIP: agent.cfg.nodeIP,
    routerIP: agent.cfg.routerIP,
    podCIDR: agent.cfg.podCIDR,
    deviceMTU: agent.cfg.deviceMTU,
    routeMTU: agent.cfg.routeMTU,
    tunnelPort: agent.cfg.tunnelPort,
    store: { backend: agent.store.backend },
    storeHealth: agent.health.status,
    warnings: [...agent.warnings],
    pendingStoreDeletes: { ips: agent.publisher.pending, identityReferences: agent.identities.pending },
    ipam: agent.endpoints.ipamStatus,
    endpoints: agent.endpoints.list().length,
    ready: agent.endpoints.ready,
    cluster: { remoteNodes: agent.sync.nodes.size, podIPs: agent.sync.pods.size, lastSync: agent.sync.lastSync?.toISOString(), lastError: agent.sync.lastError },
    startedAt: agent.startedAt.toISOString(),
    bootID: agent.bootID,
    policy: agent.policy.status(),
  }));
  api.get('/v1/endpoints', () => agent.endpoints.list());
  // Network policy. Policies live in the store (shared by every agent); these routes let the CLI reach it
  // through any agent (a lab's store may sit in a netns the host has no route into).
  api.get('/v1/policy', () => agent.policy.status());
  api.get('/v1/policies', () => listPolicies(agent.store));
  api.post('/v1/policies', async (_req, _url, body) => {
    const b = await body() as { documents?: unknown } | undefined;
    if (!b || !Array.isArray(b.documents)) throw new MembraneError('import policies', { code: 'E_BAD_REQUEST', cause: 'the body must be { "documents": [ ... ] }' });
    return importPolicies(agent.store, b.documents);
  });
  api.delete(/^\/v1\/policies\/.+$/, (_req, url) => deletePolicy(agent.store, decodeURIComponent(url.pathname.slice('/v1/policies/'.length))));
  api.get('/v1/identities', () => [...agent.policy.snapshot().universe].map(([id, labels]) => ({ id, labels })).sort((a, b) => a.id - b.id));
  api.post('/v1/policy/trace', async (_req, _url, body) => {
    const req = await body() as TraceRequest | undefined;
    if (!req?.src || !req.dst || req.protocol === undefined) throw new MembraneError('trace policy', { code: 'E_BAD_REQUEST', cause: 'the body must be { src, dst, protocol, dport? }' });
    const { policies, universe } = agent.policy.snapshot();
    return withLocalhost(req, tracePolicy(policies, universe, req));
  });
  // An operator's "delete node" for a node that is gone for good (`membrane node delete`, `lab stop-node`).
  api.delete(/^\/v1\/nodes\/[^/]+$/, (_req, url) => agent.deleteNode(decodeURIComponent(url.pathname.slice('/v1/nodes/'.length))));
  api.get('/v1/nodes', () => ({
    self: { name: agent.cfg.nodeName, nodeIP: agent.cfg.nodeIP, routerIP: agent.cfg.routerIP, podCIDR: agent.cfg.podCIDR },
    remote: [...agent.sync.nodes.values()].sort((a, b) => a.name.localeCompare(b.name)),
    lastSync: agent.sync.lastSync?.toISOString(),
    lastError: agent.sync.lastError,
  }));
}
