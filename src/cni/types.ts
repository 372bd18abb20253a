// CNI wire types (spec 1.1.0, with the older result shapes we still emit)
// and the narrow interface the CNI handler drives. The agent implements
// EndpointBackend; the handler knows nothing about devices or maps.

/** Spec versions membrane-cni speaks, oldest first. VERSION reports exactly these. */
export const SUPPORTED_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;
export type CniVersion = (typeof SUPPORTED_VERSIONS)[number];
export const PLUGIN_TYPE = 'membrane-cni';
export const CNI_COMMANDS = ['ADD', 'DEL', 'CHECK', 'STATUS', 'GC', 'VERSION'] as const;
export type CniCommand = (typeof CNI_COMMANDS)[number];

/**
 * CNI error codes by name. The numbers live with the error-code catalogue
 * (src/shared/error-codes.ts), which maps each membrane error code to one.
 */
export { CniCode } from '../shared/error-codes.ts';

/** The error result (spec section 5, "Error"). */
export interface CniErrorResult {
  cniVersion: string;
  code: number;
  msg: string;
  details?: string;
}

export interface CniVersionResult {
  cniVersion: string;
  supportedVersions: string[];
}

/** An interface in a success result. `mtu` exists from 1.1.0 on. */
export interface CniInterface {
  name: string;
  mac?: string;
  mtu?: number;
  sandbox?: string;
}

/** An IP in a success result. `version` exists only in 0.3.x/0.4.0 results. */
export interface CniIPConfig {
  version?: '4' | '6';
  address: string;
  gateway?: string;
  interface?: number;
}

/** A route in a success result. `mtu` exists from 1.1.0 on. */
export interface CniRoute {
  dst: string;
  gw?: string;
  mtu?: number;
}

export interface CniDNS {
  nameservers?: string[];
  domain?: string;
  search?: string[];
  options?: string[];
}

/** The success result of ADD (spec section 5, "Success"), in the shape of `cniVersion`. */
export interface CniResult {
  cniVersion: string;
  interfaces?: CniInterface[];
  ips?: CniIPConfig[];
  routes?: CniRoute[];
  dns?: CniDNS;
}

/** One entry of `cni.dev/valid-attachments` (GC). */
export interface GCAttachment {
  containerID: string;
  ifname: string;
}

/** The plugin configuration the runtime sends on stdin (after its injections). */
export interface NetConf {
  cniVersion: string;
  name: string;
  type: string;
  /** Where the shim finds the agent (read by the C shim only). */
  agentSocket?: string;
  /** Pod labels: `args.labels` ({k: v}) or the CNI convention `args.cni.labels` ([{key, value}]). */
  args?: { labels?: Record<string, string>; cni?: { labels?: { key: string; value: string }[] }; [k: string]: unknown };
  prevResult?: unknown;
  'cni.dev/valid-attachments'?: GCAttachment[] | null;
  runtimeConfig?: Record<string, unknown>;
  [k: string]: unknown;
}

/** What the agent created for one ADD. */
export interface AddedEndpoint {
  ip: string;
  podMac: string;
  hostIfname: string;
  hostMac: string;
  routerIP: string;
  routeMTU: number;
  deviceMTU: number;
}

/**
 * The agent side of CNI. Every method may throw a MembraneError; its `code`
 * picks the CNI error code (the catalogue in src/shared/error-codes.ts).
 */
export interface EndpointBackend {
  /**
   * Creates the endpoint; a failure must leave nothing behind. `signal`
   * aborts when the caller is gone (the plugin timed out or was killed): an
   * ADD not yet started is not carried out, one that completed meanwhile is
   * undone, so no endpoint exists that no runtime knows of.
   */
  add(r: { containerID: string; netns: string; ifname: string; podName?: string; podNamespace?: string; labels: Record<string, string> }, opts?: { signal?: AbortSignal }): Promise<AddedEndpoint>;
  /** Idempotent: succeeds when the endpoint (or its netns) is already gone. */
  del(r: { containerID: string; ifname: string; netns?: string }): Promise<void>;
  /** Throws a MembraneError naming what is wrong if the endpoint is not as it should be. */
  check(r: { containerID: string; ifname: string; netns: string; prevResult?: unknown }): Promise<void>;
  /** Throws a MembraneError if the agent cannot serve ADD right now. */
  status(): Promise<void>;
  /** Removes every endpoint not in `valid`; returns what it removed (for logs). */
  gc(valid: GCAttachment[]): Promise<{ removed: string[] }>;
}

/** What the plugin binary prints and exits with. */
export interface CniOutput {
  exitCode: number;
  stdout: string;
}
