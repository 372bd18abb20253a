// The agent's API routes (the CNI route is mounted separately in daemon.ts).
import type { ApiServer } from '../api/server.ts';
import type { Agent } from './daemon.ts';

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
  }));
  api.get('/v1/endpoints', () => agent.endpoints.list());
  // An operator's "delete node" for a node that is gone for good (`membrane node delete`, `lab stop-node`).
  api.delete(/^\/v1\/nodes\/[^/]+$/, (_req, url) => agent.deleteNode(decodeURIComponent(url.pathname.slice('/v1/nodes/'.length))));
  api.get('/v1/nodes', () => ({
    self: { name: agent.cfg.nodeName, nodeIP: agent.cfg.nodeIP, routerIP: agent.cfg.routerIP, podCIDR: agent.cfg.podCIDR },
    remote: [...agent.sync.nodes.values()].sort((a, b) => a.name.localeCompare(b.name)),
    lastSync: agent.sync.lastSync?.toISOString(),
    lastError: agent.sync.lastError,
  }));
}
