// bpffs layout of one node (Cilium's pkg/datapath/loader/paths.go, rooted at
// <bpffsRoot>/<nodeName> so several nodes of a lab share one bpffs):
//   tc/globals/<map>                  every pinned map, global and per attachment
//   devices/<dev>/links/<prog>        tcx links of host devices
//   endpoints/<epID>/links/<prog>     tcx links of pod veths

export function globalsDir(nodeDir: string): string {
  return `${nodeDir}/tc/globals`;
}

export function deviceLinkPin(nodeDir: string, dev: string, prog: string): string {
  return `${nodeDir}/devices/${dev.replace(/\./g, '-')}/links/${prog}`;
}

export function endpointDir(nodeDir: string, epID: number): string {
  return `${nodeDir}/endpoints/${epID}`;
}

export function endpointLinkPin(nodeDir: string, epID: number, prog: string): string {
  return `${endpointDir(nodeDir, epID)}/links/${prog}`;
}

const pad5 = (n: number) => String(n).padStart(5, '0');

/** Calls map names, as Cilium's bpf.LocalMapName with the callsmap prefixes. */
export const callsMapName = {
  endpoint: (epID: number) => `cilium_calls_${pad5(epID)}`,
  hostns: (hostEpID: number) => `cilium_calls_hostns_${pad5(hostEpID)}`,
  netdev: (ifindex: number) => `cilium_calls_netdev_${pad5(ifindex)}`,
  /** 2 = the world identity, not zero-padded, as in Cilium. */
  overlay: () => 'cilium_calls_overlay_2',
};
