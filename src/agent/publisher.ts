// What this agent tells the cluster: its node (name, node IP, router IP,
// pod CIDR) and its endpoints' IPs with their identities, all under one
// lease, so a node that stops renewing disappears from every other node.
import type { NodeConfig } from '../datapath/config.ts';
import { routeMTU } from '../datapath/defaults.ts';
import type { KVStore, Lease } from '../store/store.ts';
import { encodeIpIdentity, encodeNode, ipKey, ipMetadata, maskFromPrefixLength, nodeKey, type NodeValue } from '../store/keys.ts';
import type { EndpointListener } from './endpoint-manager.ts';
import type { EndpointState } from './state-file.ts';

export function nodeValue(cfg: NodeConfig, bootID: string): NodeValue {
  return {
    Name: cfg.nodeName,
    Cluster: cfg.cluster,
    IPAddresses: [
      ...(cfg.nodeIP ? [{ Type: 'InternalIP' as const, IP: cfg.nodeIP }] : []),
      { Type: 'CiliumInternalIP' as const, IP: cfg.routerIP },
    ],
    IPv4AllocCIDR: cfg.podCIDR,
    BootID: bootID,
    TunnelProtocol: 'vxlan',
    TunnelPort: cfg.tunnelPort,
    MTU: routeMTU(cfg.deviceMTU),
    MembraneVersion: '0.1.0',
  };
}

export class Publisher implements EndpointListener {
  constructor(private readonly store: KVStore, private readonly lease: Lease, private readonly cfg: NodeConfig) {}

  async registerNode(bootID: string): Promise<void> {
    await this.store.put(nodeKey(this.cfg.cluster, this.cfg.nodeName), encodeNode(nodeValue(this.cfg, bootID)), { lease: this.lease });
  }

  async up(ep: EndpointState): Promise<void> {
    await this.store.put(ipKey(ep.ip), encodeIpIdentity({
      IP: ep.ip, Mask: maskFromPrefixLength(32, 4), HostIP: this.cfg.nodeIP ?? this.cfg.routerIP, ID: ep.identity,
      Metadata: ipMetadata(this.cfg.nodeName, ep.id), K8sNamespace: ep.podNamespace, K8sPodName: ep.podName,
    }), { lease: this.lease });
  }

  async down(ep: EndpointState): Promise<void> {
    await this.store.delete(ipKey(ep.ip));
  }
}
