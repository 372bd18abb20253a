// Fixed names and numbers of the node datapath: the seed's devices and what
// Cilium calls them. Not settings (those are in src/shared/defaults.ts):
// other tools and the docs rely on these staying as they are.

export const HOST_DEVICE = 'cilium_host';
export const SECOND_HOST_DEVICE = 'cilium_net';
export const VXLAN_DEVICE = 'cilium_vxlan';

/** The host endpoint's ID: names the calls map of cilium_host (cilium_calls_hostns_00001) and is never given to a pod. */
export const HOST_ENDPOINT_ID = 1;

/** Endpoint ids run 1..MAX_ENDPOINT_ID (they are u16 in cilium_lxc and 5 digits in calls map names; Cilium's limit is 4095). */
export const MAX_ENDPOINT_ID = 4095;

/** Transmit queue length of the devices the datapath creates (Cilium's default). */
export const TXQLEN = 1000;
