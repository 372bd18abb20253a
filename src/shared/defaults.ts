// Every user-facing default in one place, as Cilium's pkg/defaults: the node
// config (src/shared/config.ts) fills keys from here, the CLI's help and the
// docs quote it, the lab and the CNI plugin's build read it. Values derived
// from these (route MTU, socket and state paths) are computed once, by the
// config builder, never at the sites that use them.

/** Smallest device MTU accepted: IPv4's minimum for IPv6-capable links, and room for the 50-byte VXLAN overhead. */
export const MIN_MTU = 1280;
/** Largest device MTU accepted (the kernel's u16 limit for veth and VXLAN). */
export const MAX_MTU = 65535;

/** Everything Membrane keeps at run time on a machine lives below here. */
const RUN_DIR = '/run/membrane';

export const defaults = {
  runDir: RUN_DIR,
  deviceMTU: 1500,
  tunnelPort: 8472,
  tunnelSourcePortRange: '0-0',
  enableEndpointRoutes: false,
  routeMetric: 0,
  /** SNAT pod traffic leaving the cluster to the node IP, in BPF on the native device (Cilium's enable-bpf-masquerade). */
  enableMasquerade: true,
  /** 'tunnel' (VXLAN between nodes) or 'native' (pod CIDRs routed to their node IPs over the native device). */
  routingMode: 'tunnel' as 'tunnel' | 'native',
  /**
   * 'bpf': BPF host routing (bpf_redirect_peer into pods from ingress hooks, bpf_redirect_neigh out of the native
   * device); 'legacy': bpf_redirect to the lxc and the host stack for routing (Cilium's enable-host-legacy-routing).
   */
  hostRouting: 'bpf' as 'bpf' | 'legacy',
  cluster: 'default',
  /** Where `membrane ui` listens: loopback only (the UI has no authentication); 12000 is the port hubble-ui is usually forwarded to. */
  uiListen: '127.0.0.1:12000',
  /**
   * A bpffs in the root mount namespace shared by every run for a node
   * (docs/kernel-notes/bpf.md); each node pins under <bpffsRoot>/<nodeName>.
   */
  bpffsRoot: `${RUN_DIR}/bpffs`,
  /**
   * The agent's runtime directory: endpoints.json, the API socket and the
   * node lock. The CNI plugin has no fallback (its conf must name
   * agentSocket); its error for a missing one suggests <stateDir>/<apiSocketName>
   * of this default (cni/Makefile reads it from here).
   */
  stateDir: RUN_DIR,
  apiSocketName: 'agent.sock',
  /** The embedded cluster store shared by the agents of one machine. */
  sqlitePath: `${RUN_DIR}/cluster.db`,
  /**
   * Seconds a node's store entries (node, pod IPs, identity references) outlive
   * an agent that stops without leaving: crashed, SIGKILLed, SIGSTOPped,
   * restarting. Its peers keep routing to it meanwhile (its datapath forwards
   * without the agent); a node gone for good is dropped after this. An agent
   * that leaves (SIGTERM) or a node an operator deletes goes at once. 15 min,
   * Cilium's --kvstore-lease-ttl default.
   */
  leaseTTL: 900,
} as const;

/** The API socket of an agent whose runtime directory is `stateDir` (unless its config names another): the one rule, used by the agent, the CLI, the lab, the tests and the CNI plugin's build. */
export function apiSocketIn(stateDir: string): string {
  return `${stateDir}/${defaults.apiSocketName}`;
}
