// The one catalogue of Membrane's error codes. Every MembraneError carries one
// of these codes, and each surface reads its answer from here: the CNI plugin
// (the CNI error code), the agent's HTTP API (the status) and the CLI (the
// exit code). docs/errors.md is generated from this file
// (node --import tsx scripts/gen-errors-doc.ts), and test/unit/error-codes.test.ts
// fails when the two differ or when src/ uses a code that is not listed here.
//
// Adding a code: add an entry below (keep its group), regenerate the doc.
// Typing MembraneError.code as ErrorCode makes any other code a type error.

import { apiSocketIn, defaults } from './defaults.ts';

/**
 * CNI error codes: 1-99 are the spec's well-known codes (CNI 1.1.0, section
 * "Error"), 100+ are membrane's own, 999 is libcni's ErrInternal. The numbers
 * exist only here; the catalogue and the CNI handler refer to them by name.
 */
export const CNI_CODES = {
  INCOMPATIBLE_VERSION: { code: 1, title: 'incompatible CNI version' },
  UNSUPPORTED_FIELD: { code: 2, title: 'unsupported field in network configuration' },
  UNKNOWN_CONTAINER: { code: 3, title: 'container unknown or does not exist' },
  INVALID_ENV: { code: 4, title: 'invalid necessary environment variables' },
  IO_FAILURE: { code: 5, title: 'I/O failure' },
  DECODE_FAILURE: { code: 6, title: 'failed to decode content' },
  INVALID_CONFIG: { code: 7, title: 'invalid network config' },
  TRY_AGAIN_LATER: { code: 11, title: 'try again later' },
  PLUGIN_NOT_AVAILABLE: { code: 50, title: 'plugin not available' },
  LIMITED_CONNECTIVITY: { code: 51, title: 'plugin available with limited connectivity' },
  IPAM_EXHAUSTED: { code: 100, title: 'pod IP pool exhausted' },
  IFNAME_EXISTS: { code: 101, title: 'interface name taken in the pod' },
  ENDPOINT_CONFLICT: { code: 102, title: 'host device name conflict' },
  ENDPOINT_IDS_EXHAUSTED: { code: 103, title: 'endpoint IDs exhausted' },
  IDENTITY_EXHAUSTED: { code: 104, title: 'security identities exhausted' },
  ENDPOINT_NOT_FOUND: { code: 110, title: 'no such endpoint' },
  ENDPOINT_BROKEN: { code: 111, title: 'endpoint not as it should be' },
  SECOND_INTERFACE: { code: 112, title: 'pod already attached under another interface name' },
  INTERNAL: { code: 999, title: 'internal error' },
} as const;

export type CniCodeName = keyof typeof CNI_CODES;

/** CNI code numbers by name, e.g. CniCode.TRY_AGAIN_LATER === 11. */
export const CniCode = Object.freeze(Object.fromEntries(Object.entries(CNI_CODES).map(([k, v]) => [k, v.code]))) as {
  readonly [K in CniCodeName]: (typeof CNI_CODES)[K]['code'];
};
export type CniCodeNumber = (typeof CniCode)[CniCodeName];

/**
 * The CLI's exit codes. The numbers are a contract with scripts: never
 * renumber, only add.
 */
export const Exit = {
  OK: 0,
  FAILURE: 1,
  USAGE: 2,
  CONFIG: 3,
  NOT_ROOT: 4,
  UNAVAILABLE: 5,
} as const;
export type ExitCode = (typeof Exit)[keyof typeof Exit];

/** What each exit code tells a script (docs/errors.md). */
export const EXIT_MEANINGS: Readonly<Record<ExitCode, string>> = {
  [Exit.OK]: 'success',
  [Exit.FAILURE]: 'the command failed (any code not listed below)',
  [Exit.USAGE]: 'the command line is wrong: fix it and run again',
  [Exit.CONFIG]: 'the configuration is invalid: fix the named fields and run again',
  [Exit.NOT_ROOT]: 'missing privileges: run as root',
  [Exit.UNAVAILABLE]: 'the agent, or something it needs, is not available right now: retrying later may succeed',
};

/** Where a code comes from; groups the codes in docs/errors.md. */
export type ErrorArea = 'general' | 'cli' | 'api' | 'cni' | 'agent' | 'store' | 'datapath' | 'bpf' | 'netlink' | 'lab';

export interface ErrorCodeInfo {
  readonly area: ErrorArea;
  /** What went wrong, in one sentence a user can act on. */
  readonly meaning: string;
  /** Typical cause and what to do about it (docs/errors.md). */
  readonly fix: string;
  /** What the CNI plugin answers with. */
  readonly cni: CniCodeNumber;
  /** What the agent's HTTP API answers with. */
  readonly http: number;
  /** What the CLI exits with. */
  readonly exit: ExitCode;
}

// Mapping rules, so a new code lands where its neighbours are:
// - "try again later" (the condition passes by itself): CNI 11, HTTP 503, exit 5;
// - bad input from the caller: HTTP 400, exit 2 (command line) or 3 (configuration);
// - a resource ran out: its own CNI code (100-104), HTTP 507;
// - anything else is a failure of this node: CNI 999, HTTP 500, exit 1.
export const CATALOGUE = {
  // ---- general ----
  E_INTERNAL: {
    area: 'general', cni: CniCode.INTERNAL, http: 500, exit: Exit.FAILURE,
    meaning: 'An unexpected error without a more specific code: most likely a bug in membrane.',
    fix: 'Run the command again with --verbose to see the cause chain and the stack, and report it with that output.',
  },
  E_KERNEL: {
    area: 'general', cni: CniCode.INTERNAL, http: 500, exit: Exit.FAILURE,
    meaning: 'The kernel refused a system call or netlink request; the message names the operation, the errno and the kernel\'s own explanation.',
    fix: 'Read the errno and the "kernel:" text: EPERM means missing capabilities, EEXIST/EBUSY something already in the way, EOPNOTSUPP an older kernel.',
  },
  E_CONFIG: {
    area: 'general', cni: CniCode.INTERNAL, http: 400, exit: Exit.CONFIG,
    meaning: 'The configuration is invalid; the message names every bad field and why.',
    fix: 'Correct the named keys in the node config (or the flags that set them), then run the command again.',
  },
  // A policy file is configuration the user wrote, so it maps like E_CONFIG:
  // bad input (HTTP 400), exit 3 "fix the named fields and run again".
  E_POLICY_INVALID: {
    area: 'general', cni: CniCode.INTERNAL, http: 400, exit: Exit.CONFIG,
    meaning: 'A network policy document is invalid or uses a feature membrane does not support (named ports, L7 rules, IPv6, FQDNs); the message lists every problem with its document, field path, line and column.',
    fix: 'Correct the named fields in the policy file and import it again; nothing of the file was applied, and the policies already in force stay in force.',
  },
  E_NOT_ROOT: {
    area: 'general', cni: CniCode.INTERNAL, http: 500, exit: Exit.NOT_ROOT,
    meaning: 'The process lacks the capabilities it needs (CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_BPF); the message lists the missing ones.',
    fix: 'Run as root, or grant the listed capabilities.',
  },
  E_NOT_SUPPORTED: {
    area: 'general', cni: CniCode.INTERNAL, http: 500, exit: Exit.FAILURE,
    meaning: 'The running kernel lacks a feature membrane needs; the message names the feature and the Linux version that has it.',
    fix: 'Use a kernel at least as new as the one named (tcx links need Linux 6.6).',
  },
  E_INVALID_ADDRESS: {
    area: 'general', cni: CniCode.INTERNAL, http: 400, exit: Exit.FAILURE,
    meaning: 'A value that should be an IPv4 address or CIDR is not one (or a CIDR has host bits set); the message quotes it.',
    fix: 'Write the address as a.b.c.d and the CIDR as its network address, e.g. 10.244.1.0/24 (the message suggests the canonical form).',
  },
  E_NETNS: {
    area: 'general', cni: CniCode.UNKNOWN_CONTAINER, http: 500, exit: Exit.FAILURE,
    meaning: 'A network namespace does not exist; for a pod this means the container is gone, so there is nothing to clean up.',
    fix: 'Check the path (CNI_NETNS, or the node\'s `ip netns list`); a pod whose sandbox was deleted needs no ADD.',
  },
  E_CLOSED: {
    area: 'general', cni: CniCode.INTERNAL, http: 500, exit: Exit.FAILURE,
    meaning: 'A netlink socket, BPF object, map or program was used after it was closed.',
    fix: 'A bug in membrane (or a request racing a shutdown): report it with the --verbose output.',
  },
  E_SYSCTL: {
    area: 'general', cni: CniCode.INTERNAL, http: 500, exit: Exit.FAILURE,
    meaning: 'A sysctl could not be set; the message names it and the value.',
    fix: 'Run as root in the node\'s netns; a read-only /proc/sys (some containers) cannot be changed.',
  },
  E_NOT_BUILT: {
    area: 'general', cni: CniCode.INTERNAL, http: 500, exit: Exit.FAILURE,
    meaning: 'Something membrane runs was not built, or is older than its sources: a BPF object (bpf/*.o), or the JavaScript bin/membrane runs (dist/cli/).',
    fix: 'Build it: make -C bpf for the objects, npm run build for everything; the message names what is missing or stale.',
  },

  // ---- cli ----
  E_USAGE: {
    area: 'cli', cni: CniCode.INTERNAL, http: 400, exit: Exit.USAGE,
    meaning: 'The command line is wrong: an unknown command or flag, a flag without its value, or a missing or unknown argument.',
    fix: 'See `membrane help` and `membrane COMMAND --help`.',
  },

  E_INSTALL: {
    area: 'cli', cni: CniCode.INTERNAL, http: 500, exit: Exit.FAILURE,
    meaning: '`membrane install` or `uninstall` could not complete: a file it would write is in the way and not its own, a path could not be written, or the node is still running; the message names the path.',
    fix: 'Follow the hint: move the named file away (install never overwrites a file it did not write), stop the agent first (systemctl stop membrane-agent), or fix the permissions.',
  },

  // ---- api ----
  E_API: {
    area: 'api', cni: CniCode.INTERNAL, http: 500, exit: Exit.FAILURE,
    meaning: 'The agent\'s answer could not be understood: not JSON, or an error code this CLI does not know.',
    fix: 'Use a CLI of the same version as the agent; the message keeps what the agent said.',
  },
  E_BAD_REQUEST: {
    area: 'api', cni: CniCode.INTERNAL, http: 400, exit: Exit.FAILURE,
    meaning: 'The agent refused an API request whose body is not valid JSON, or is larger than 1 MiB.',
    fix: 'Fix the client that sent it; the membrane CLI always sends small JSON bodies.',
  },
  E_NOT_FOUND: {
    area: 'api', cni: CniCode.INTERNAL, http: 404, exit: Exit.FAILURE,
    meaning: 'The agent has no API route for this method and path.',
    fix: 'Use a CLI of the same version as the agent.',
  },
  E_UNAVAILABLE: {
    area: 'api', cni: CniCode.TRY_AGAIN_LATER, http: 503, exit: Exit.UNAVAILABLE,
    meaning: 'The agent cannot be reached: no socket, nothing listening on it, or no answer in time.',
    fix: 'Start the agent in the node\'s netns (membrane agent --config FILE), or name its socket with --socket; retry once it is up.',
  },
  E_ALREADY_RUNNING: {
    area: 'api', cni: CniCode.INTERNAL, http: 500, exit: Exit.FAILURE,
    meaning: 'Another agent already runs for this node (it holds the node\'s lock: its network namespace, state dir or pin directory) or serves this API socket, so this one does not start and changes nothing.',
    fix: 'Stop the other agent first (the message names its pid): SIGTERM makes the node leave the cluster, SIGHUP keeps it for a restart.',
  },

  // ---- cni (the CNI request itself is wrong; raised by src/cni before the agent does anything) ----
  E_CNI_ENV: {
    area: 'cni', cni: CniCode.INVALID_ENV, http: 400, exit: Exit.USAGE,
    meaning: 'A CNI_* environment variable is missing or invalid (CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_ARGS): not set, not valid UTF-8, a CNI_NETNS that is not a network namespace (a regular file, a directory, /dev/null), or too large to send to the agent; the message names it.',
    fix: 'A runtime bug or a hand-run plugin: set the variables the command requires (docs/cni.md, "Commands").',
  },
  E_CNI_IO: {
    area: 'cni', cni: CniCode.IO_FAILURE, http: 400, exit: Exit.FAILURE,
    meaning: 'The CNI request could not be read: the network config is larger than 1 MiB, or the connection broke.',
    fix: 'Send a smaller network config; a broken connection is retried by the runtime.',
  },
  E_CNI_DECODE: {
    area: 'cni', cni: CniCode.DECODE_FAILURE, http: 400, exit: Exit.CONFIG,
    meaning: 'The network config on stdin is empty, not UTF-8, not JSON, or nested deeper than 64 levels; the message gives the line, column and byte offset.',
    fix: 'Fix the JSON of the conflist at the position named.',
  },
  E_CNI_VERSION: {
    area: 'cni', cni: CniCode.INCOMPATIBLE_VERSION, http: 400, exit: Exit.CONFIG,
    meaning: 'The network config\'s cniVersion is missing or not supported, or the command does not exist in that version.',
    fix: 'Set cniVersion to one of 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0 (CHECK needs 0.4.0, STATUS and GC need 1.1.0).',
  },
  E_CNI_CONFIG: {
    area: 'cni', cni: CniCode.INVALID_CONFIG, http: 400, exit: Exit.CONFIG,
    meaning: 'The network config is not one membrane serves or is malformed: not an object, no usable agentSocket, another network name, another plugin type, bad args or labels (a label the cluster store cannot hold: \';\' anywhere, \'=\' or nothing as its key), an unusable prevResult, or GC without its attachment list.',
    fix: 'Correct the named key in the conflist (docs/cni.md, "Install" and "Checks made before anything is done").',
  },
  E_CNI_NOT_AVAILABLE: {
    area: 'cni', cni: CniCode.PLUGIN_NOT_AVAILABLE, http: 503, exit: Exit.UNAVAILABLE,
    meaning: 'CNI STATUS: the agent cannot serve ADD right now; the message says why.',
    fix: 'Wait for the agent to finish starting (or fix what the message names); the runtime asks again.',
  },

  // ---- agent ----
  E_NOT_READY: {
    area: 'agent', cni: CniCode.TRY_AGAIN_LATER, http: 503, exit: Exit.UNAVAILABLE,
    meaning: 'The agent is still restoring its endpoints after a start and does not take requests yet.',
    fix: 'Retry in a moment; `membrane status` shows Ok once the agent is ready.',
  },
  E_NOT_INITIALIZED: {
    area: 'agent', cni: CniCode.INTERNAL, http: 500, exit: Exit.FAILURE,
    meaning: 'This network namespace is not a membrane node: no cilium_host with a node marker, or the node\'s maps are not pinned.',
    fix: 'Run `membrane datapath init --config FILE` (or start the agent) in the node\'s netns first, and run commands there (ip netns exec NODE membrane ...).',
  },
  E_STATE: {
    area: 'agent', cni: CniCode.INTERNAL, http: 500, exit: Exit.FAILURE,
    meaning: 'The agent\'s state file is corrupt or belongs to another node.',
    fix: 'Move the file away and restart the agent: it starts with no endpoints and removes their leftover devices.',
  },
  E_IPAM: {
    area: 'agent', cni: CniCode.INTERNAL, http: 500, exit: Exit.FAILURE,
    meaning: 'An IP address could not be claimed: it is outside the pod CIDR, reserved, or already allocated to another endpoint.',
    fix: 'Usually restored state that no longer matches the node config (a changed podCIDR): remove the stale endpoints or restore the old CIDR.',
  },
  E_IPAM_EXHAUSTED: {
    area: 'agent', cni: CniCode.IPAM_EXHAUSTED, http: 507, exit: Exit.FAILURE,
    meaning: 'The node\'s pod IP pool has no free address; the message names the pool and its use.',
    fix: 'Delete unused pods, or give the node a larger podCIDR.',
  },
  E_ENDPOINT: {
    area: 'agent', cni: CniCode.ENDPOINT_BROKEN, http: 500, exit: Exit.FAILURE,
    meaning: 'An endpoint is not as it should be: its host device is missing or down, its cilium_lxc entry or calls map is gone, or it lives in another netns.',
    fix: 'Delete and re-add the pod (CNI DEL, then ADD); the message names what is missing.',
  },
  E_ENDPOINT_EXISTS: {
    area: 'agent', cni: CniCode.ENDPOINT_CONFLICT, http: 409, exit: Exit.FAILURE,
    meaning: 'The host-side device name for this endpoint (lxc...) is already taken by a leftover device.',
    fix: 'Remove the leftover device (ip link del lxc...), or let the agent\'s GC remove stale endpoints.',
  },
  E_IFNAME_EXISTS: {
    area: 'agent', cni: CniCode.IFNAME_EXISTS, http: 409, exit: Exit.FAILURE,
    meaning: 'The pod\'s network namespace already has an interface named CNI_IFNAME.',
    fix: 'Use another CNI_IFNAME, or remove the interface from the pod first.',
  },
  E_ENDPOINT_IDS_EXHAUSTED: {
    area: 'agent', cni: CniCode.ENDPOINT_IDS_EXHAUSTED, http: 507, exit: Exit.FAILURE,
    meaning: 'Every endpoint ID of this node is in use.',
    fix: 'Delete unused pods.',
  },
  E_ENDPOINT_NOT_FOUND: {
    area: 'agent', cni: CniCode.ENDPOINT_NOT_FOUND, http: 404, exit: Exit.FAILURE,
    meaning: 'The agent knows no endpoint for this container ID and interface.',
    fix: 'The pod was never added on this node, or was deleted: add it again.',
  },
  E_SECOND_INTERFACE: {
    area: 'agent', cni: CniCode.SECOND_INTERFACE, http: 409, exit: Exit.FAILURE,
    meaning: 'The container already has an interface on the membrane network under another CNI_IFNAME. The spec allows several attachments per container, but the datapath gives a pod one interface (one IP, its default route via the router), so a second one is refused.',
    fix: 'Attach the pod to the membrane network once (one CNI_IFNAME), or DEL the other attachment first.',
  },
  E_CANCELLED: {
    area: 'agent', cni: CniCode.TRY_AGAIN_LATER, http: 503, exit: Exit.UNAVAILABLE,
    meaning: 'The ADD\'s caller went away (the plugin timed out or was killed) before the agent carried it out; it was not done, or was undone.',
    fix: 'Nothing to clean up: the runtime retries the ADD. If it keeps happening the agent is too slow to answer within the plugin\'s deadline: see its log.',
  },

  // ---- store (docs/store.md) ----
  E_STORE_UNAVAILABLE: {
    area: 'store', cni: CniCode.TRY_AGAIN_LATER, http: 503, exit: Exit.UNAVAILABLE,
    meaning: 'The cluster store cannot be reached: etcd does not answer, or the SQLite file cannot be opened or stays locked.',
    fix: 'Check etcd (etcdctl endpoint health) or the SQLite file the message names; operations resume once it is back.',
  },
  E_STORE: {
    area: 'store', cni: CniCode.INTERNAL, http: 500, exit: Exit.FAILURE,
    meaning: 'The cluster store failed an operation for a reason other than being unreachable; the cause is the backend\'s own error.',
    fix: 'Read the backend error in the cause chain (--verbose).',
  },
  E_STORE_CLOSED: {
    area: 'store', cni: CniCode.INTERNAL, http: 500, exit: Exit.FAILURE,
    meaning: 'The cluster store (or the identity allocator on it) was used after it was closed, typically while the agent stops.',
    fix: 'Retry once the agent runs again.',
  },
  E_STORE_COMPACTED: {
    area: 'store', cni: CniCode.INTERNAL, http: 500, exit: Exit.FAILURE,
    meaning: 'A watch fell so far behind that the store no longer keeps the events it missed; the watch has stopped.',
    fix: 'List again and watch from the new revision (the agent does this by itself).',
  },
  E_STORE_LEASE_NOT_FOUND: {
    area: 'store', cni: CniCode.INTERNAL, http: 500, exit: Exit.FAILURE,
    meaning: 'A write named a lease that has expired or was revoked.',
    fix: 'Grant a new lease and write again (the agent does this by itself).',
  },
  E_STORE_LEASE_LOST: {
    area: 'store', cni: CniCode.INTERNAL, http: 500, exit: Exit.FAILURE,
    meaning: 'A lease expired although its keepalive was running, so the keys under it are gone.',
    fix: 'The store was unreachable for longer than the lease TTL, or the process stalled: grant a new lease and write the keys again.',
  },
  E_STORE_KEY: {
    area: 'store', cni: CniCode.INVALID_CONFIG, http: 400, exit: Exit.FAILURE,
    meaning: 'A name or label cannot be stored because it would not read back the same: a "/" in a node name, a ";" in a label, "=" in a label key.',
    fix: 'Rename the node or change the pod labels the message names.',
  },
  E_STORE_DECODE: {
    area: 'store', cni: CniCode.INTERNAL, http: 500, exit: Exit.FAILURE,
    meaning: 'A value read from the cluster store is not valid JSON or lacks a field membrane relies on; the message names the key and field.',
    fix: 'Another writer (or an incompatible version) wrote that key: fix or delete it.',
  },
  E_IDENTITY_EXHAUSTED: {
    area: 'store', cni: CniCode.IDENTITY_EXHAUSTED, http: 507, exit: Exit.FAILURE,
    meaning: 'Every security identity in the allocator\'s range is in use.',
    fix: 'Fewer distinct label sets, or remove stale identities from the store.',
  },
  E_IDENTITY_LOCK_TIMEOUT: {
    area: 'store', cni: CniCode.TRY_AGAIN_LATER, http: 503, exit: Exit.UNAVAILABLE,
    meaning: 'The lock on an identity stayed held by another node for too long; the message names the holder.',
    fix: 'Retry; if it persists, the holder named is stuck (its lease expires on its own).',
  },
  // Misconfigurations that retrying cannot fix map like E_CONFIG (exit 3), not like an outage.
  E_STORE_TLS: {
    area: 'store', cni: CniCode.INTERNAL, http: 500, exit: Exit.CONFIG,
    meaning: 'The TLS connection to an etcd endpoint failed: its certificate is not signed by the configured CA (store.tls.ca), does not name the address, or has expired; it refused the client certificate or requires one; or one side does not speak TLS. The message names the endpoint.',
    fix: 'Follow the hint: store.tls.ca must be the CA of etcd\'s --cert-file; store.tls.cert/key a client certificate signed by the CA of etcd\'s --trusted-ca-file (extendedKeyUsage clientAuth); https:// endpoints for a TLS etcd (docs/store.md, "etcd on real hosts").',
  },
  E_STORE_AUTH: {
    area: 'store', cni: CniCode.INTERNAL, http: 500, exit: Exit.CONFIG,
    meaning: 'etcd refused the configured user: wrong user name or password, no user configured although etcd has authentication enabled, or a user without read-write permission on the cilium/ prefix. The message names the endpoint.',
    fix: 'Check store.username and the password file; grant the user\'s role readwrite on the cilium/ prefix (etcdctl role grant-permission ROLE --prefix=true readwrite cilium/).',
  },

  // ---- datapath ----
  E_DEVICE: {
    area: 'datapath', cni: CniCode.INTERNAL, http: 500, exit: Exit.FAILURE,
    meaning: 'A node device (cilium_host, cilium_net, cilium_vxlan) exists in a shape membrane cannot use: wrong type, missing its veth peer, or paired with another device.',
    fix: 'Remove the device the message names (ip link del NAME) and run datapath init again.',
  },
  E_VXLAN_PORT_CONFLICT: {
    area: 'datapath', cni: CniCode.INTERNAL, http: 500, exit: Exit.FAILURE,
    meaning: 'Another VXLAN device that is up already uses the tunnel\'s UDP port.',
    fix: 'Set tunnelPort to another port, or remove the device the message names.',
  },
  E_IPCACHE_CONTESTED: {
    area: 'datapath', cni: CniCode.INTERNAL, http: 409, exit: Exit.FAILURE,
    meaning: 'An ipcache entry was not written because a higher-ranked writer holds its prefix (this node over its endpoints over the cluster); the message names the holder.',
    fix: 'One IP is claimed twice, e.g. a pod IP that is also a node or router IP: check podCIDR, routerIP and nodeIP across the nodes.',
  },
  E_EVENT_DECODE: {
    area: 'datapath', cni: CniCode.INTERNAL, http: 500, exit: Exit.FAILURE,
    meaning: 'A datapath event record is truncated, unknown or from a newer format.',
    fix: 'The BPF objects and the TypeScript are from different versions: rebuild (make -C bpf) and restart the agent.',
  },
  E_POLICY_MAP: {
    area: 'datapath', cni: CniCode.INTERNAL, http: 500, exit: Exit.FAILURE,
    meaning: 'An endpoint\'s (or the host\'s) policy map is missing, not installed in cilium_policy_maps or of another layout, or an endpoint id is outside 1..4095.',
    fix: 'Restart the agent (restore makes missing policy maps); a pin of another layout must be removed first (the hint names it).',
  },

  // ---- bpf ----
  E_BPFFS: {
    area: 'bpf', cni: CniCode.INTERNAL, http: 500, exit: Exit.FAILURE,
    meaning: 'The pin directory is not on a bpf filesystem, or a pin could not be created or removed there.',
    fix: 'Mount a bpffs in the root mount namespace (mount -t bpf bpffs DIR), not from inside "ip netns exec".',
  },
  E_BPF_ELF: {
    area: 'bpf', cni: CniCode.INTERNAL, http: 500, exit: Exit.FAILURE,
    meaning: 'A file is not a BPF object membrane can read (not ELF64 little-endian for BPF, or its BTF is malformed).',
    fix: 'Rebuild the objects with make -C bpf.',
  },
  E_BPF_LOAD: {
    area: 'bpf', cni: CniCode.INTERNAL, http: 500, exit: Exit.FAILURE,
    meaning: 'libbpf could not open or load a BPF object; the message carries libbpf\'s own explanation.',
    fix: 'Read libbpf\'s lines in the message (--verbose shows all); MEMBRANE_LIBBPF_DEBUG=1 prints more.',
  },
  E_BPF_VERIFIER: {
    area: 'bpf', cni: CniCode.INTERNAL, http: 500, exit: Exit.FAILURE,
    meaning: 'The kernel\'s verifier rejected a BPF program; the message quotes the deciding lines of its log.',
    fix: 'A datapath bug or an older kernel: --verbose prints the whole verifier log.',
  },
  E_BPF_CONST: {
    area: 'bpf', cni: CniCode.INTERNAL, http: 500, exit: Exit.FAILURE,
    meaning: 'A load-time constant could not be set: the object has no such constant, or the value does not fit it.',
    fix: 'The BPF objects and the TypeScript are from different versions: rebuild with make -C bpf.',
  },
  E_BPF_MAP: {
    area: 'bpf', cni: CniCode.INTERNAL, http: 500, exit: Exit.FAILURE,
    meaning: 'A BPF map was used against its definition: no such map in the object, or a key or value of the wrong size.',
    fix: 'The pinned maps and the code are from different versions: rebuild and re-run datapath init.',
  },
  E_MAP_CODEC: {
    area: 'bpf', cni: CniCode.INTERNAL, http: 500, exit: Exit.FAILURE,
    meaning: 'A BPF map entry could not be encoded (a number out of range, a bad address) or decoded (a size or family this build does not know).',
    fix: 'Decoding: the pinned maps are from another version; run datapath init (or restart the agent) with this build. Encoding: the message names the field.',
  },
  E_BPF_PROG: {
    area: 'bpf', cni: CniCode.INTERNAL, http: 500, exit: Exit.FAILURE,
    meaning: 'A BPF program is not in its object, or does not fit its tail-call map.',
    fix: 'The BPF objects and the TypeScript are from different versions: rebuild with make -C bpf.',
  },
  E_BPF_PIN_INCOMPATIBLE: {
    area: 'bpf', cni: CniCode.INTERNAL, http: 500, exit: Exit.FAILURE,
    meaning: 'A map pinned by an earlier run differs from the map the new object defines; the message lists the differences.',
    fix: 'Remove the pin the message names, then run again (the hint gives the command).',
  },
  E_BPF_PIN_MISMATCH: {
    area: 'bpf', cni: CniCode.INTERNAL, http: 500, exit: Exit.FAILURE,
    meaning: 'A pin where a tcx link belongs holds something else: not a link, not tcx, or a link on another device or direction.',
    fix: 'Remove or detach the pin the message names, then attach again.',
  },

  // ---- netlink ----
  E_NETLINK_DECODE: {
    area: 'netlink', cni: CniCode.INTERNAL, http: 500, exit: Exit.FAILURE,
    meaning: 'A netlink message from the kernel could not be decoded.',
    fix: 'A membrane bug or a kernel that answers in an unexpected shape: report it with the --verbose output.',
  },
  E_DUMP_INTERRUPTED: {
    area: 'netlink', cni: CniCode.TRY_AGAIN_LATER, http: 503, exit: Exit.UNAVAILABLE,
    meaning: 'A netlink listing kept being interrupted by concurrent changes, so no consistent answer came back.',
    fix: 'Retry; something on the node changes links, addresses or routes continuously.',
  },

  // ---- lab ----
  E_LAB: {
    area: 'lab', cni: CniCode.INTERNAL, http: 500, exit: Exit.FAILURE,
    meaning: 'A lab operation failed (a process did not start, a netns could not be made, the lab did not converge); the message says which.',
    fix: 'Read the log file the message names; `membrane lab down` removes a broken lab.',
  },
  E_LAB_EXISTS: {
    area: 'lab', cni: CniCode.INTERNAL, http: 500, exit: Exit.FAILURE,
    meaning: 'A lab of this name, or its network namespaces, already exists.',
    fix: 'Remove it first (membrane lab down --name LAB), or choose another name.',
  },
  E_LAB_NOT_FOUND: {
    area: 'lab', cni: CniCode.INTERNAL, http: 500, exit: Exit.FAILURE,
    meaning: 'There is no lab of this name.',
    fix: 'Create it with membrane lab up --name LAB, or name an existing one (MEMBRANE_LAB sets the default).',
  },
  E_INTERRUPTED: {
    area: 'lab', cni: CniCode.INTERNAL, http: 500, exit: Exit.FAILURE,
    meaning: 'The operation was interrupted (Ctrl-C) before it finished.',
    fix: 'Run `membrane lab down` to remove what was made, then start again.',
  },
} as const satisfies Record<`E_${string}`, ErrorCodeInfo>;

/** Every error code membrane uses: a literal union, so an unlisted code does not type-check. */
export type ErrorCode = keyof typeof CATALOGUE;

/** Every code, in catalogue order. */
export const ERROR_CODES = Object.keys(CATALOGUE) as ErrorCode[];

/** True for a code in the catalogue (own keys only: 'constructor' is not a code). */
export function isErrorCode(v: unknown): v is ErrorCode {
  return typeof v === 'string' && Object.hasOwn(CATALOGUE, v);
}

function info(code: ErrorCode): ErrorCodeInfo {
  // A code smuggled past the type (JSON, a cast) gets E_INTERNAL's answers, never undefined.
  return isErrorCode(code) ? CATALOGUE[code] : CATALOGUE.E_INTERNAL;
}

export function cniCodeOf(code: ErrorCode): CniCodeNumber {
  return info(code).cni;
}

export function httpStatusOf(code: ErrorCode): number {
  return info(code).http;
}

export function exitCodeOf(code: ErrorCode): ExitCode {
  return info(code).exit;
}

/** A failed system call as Node reports it (fs, net, child_process): `errno`, `syscall` and an `E...` code. */
function isSystemError(e: object): boolean {
  const x = e as { errno?: unknown; syscall?: unknown };
  return e instanceof Error && typeof x.errno === 'number' && typeof x.syscall === 'string';
}

/**
 * The code of any thrown value: the first code from the catalogue along its
 * cause chain (a MembraneError always has one), E_KERNEL for a failed system
 * call Node reports, else E_INTERNAL (plain Errors, strings, library errors).
 */
export function errorCodeOf(err: unknown): ErrorCode {
  let e = err;
  for (let depth = 0; depth < 32 && typeof e === 'object' && e !== null; depth++) {
    const code = (e as { code?: unknown }).code;
    if (isErrorCode(code)) return code;
    if (isSystemError(e)) return 'E_KERNEL';
    e = (e as { cause?: unknown }).cause;
  }
  return 'E_INTERNAL';
}

/**
 * What the C shim (cni/membrane-cni.c) answers by itself, without the agent:
 * documented with the catalogue (docs/errors.md). The shim cannot import
 * this, so test/unit/error-codes.test.ts checks each message against the C.
 */
export const CNI_SHIM_ERRORS: readonly { cni: CniCodeNumber; msg: string; when: string; fix: string }[] = [
  {
    cni: CniCode.INVALID_ENV, msg: '<the agent\'s message, e.g. CNI_NETNS is not set (required for ADD)>',
    when: 'the shim answers by itself for one of the reasons below and CNI_COMMAND is unset or unknown, or a variable the command requires is unset or empty: the environment is reported first, as the agent and libcni\'s skel do',
    fix: 'Set the variables the command requires (docs/cni.md, "Commands").',
  },
  {
    cni: CniCode.INVALID_ENV, msg: 'CNI_* variables too large for the agent: <n> bytes as headers, at most 16384 (largest: <variable>, <n> bytes)',
    when: 'the CNI_* variables, percent-encoded as the request\'s headers, exceed 16 KiB (or an agent with a lower limit answers HTTP 431: `CNI_* variables too large for the agent: it answered HTTP 431 (request header fields too large)`)',
    fix: 'Shorten the variable named (usually CNI_ARGS).',
  },
  {
    cni: CniCode.IO_FAILURE, msg: 'read network config from stdin: larger than <the limit, 1 MiB>',
    when: 'stdin holds more than 1 MiB', fix: 'Send a smaller network config (a real one is a few KiB).',
  },
  {
    cni: CniCode.IO_FAILURE, msg: 'read network config from stdin: timed out',
    when: 'the runtime did not close stdin within the deadline (60 s; MEMBRANE_CNI_TIMEOUT_MS in the plugin\'s environment changes it)',
    fix: 'The runtime must write the config and close stdin.',
  },
  {
    cni: CniCode.IO_FAILURE, msg: 'read network config from stdin: <error> (<ERRNO>)',
    when: 'reading stdin failed', fix: 'A runtime problem: the errno says which.',
  },
  {
    cni: CniCode.IO_FAILURE, msg: 'membrane-cni: out of memory',
    when: 'the shim could not allocate memory', fix: 'Free memory on the node.',
  },
  {
    cni: CniCode.DECODE_FAILURE, msg: 'decode network config: stdin is empty',
    when: 'stdin is empty or only blanks', fix: 'The runtime must send the plugin\'s network config on stdin.',
  },
  {
    cni: CniCode.DECODE_FAILURE, msg: 'decode network config: <reason> at line <L>, column <C> (offset <byte>)',
    when: 'stdin is not UTF-8, not JSON, or nests deeper than 64 levels: the shim cannot trust an agentSocket read from it, so it answers with the agent\'s own words for the same text',
    fix: 'Fix the JSON of the conflist at the position named.',
  },
  {
    cni: CniCode.INVALID_CONFIG, msg: 'network config must be a JSON object, not <type>',
    when: 'stdin is JSON but not an object', fix: 'Send the plugin\'s config object, as the runtime builds it from the conflist.',
  },
  {
    cni: CniCode.INVALID_CONFIG, msg: 'network config has no "agentSocket" (the membrane agent\'s API socket)',
    when: `the config has no top-level agentSocket; details: set "agentSocket" in the membrane-cni plugin's config, e.g. to ${apiSocketIn(defaults.stateDir)} for an agent run with the default stateDir`,
    fix: 'Add agentSocket to the membrane-cni plugin in the conflist: the agent\'s <stateDir>/agent.sock, or its apiSocket.',
  },
  {
    cni: CniCode.INVALID_CONFIG, msg: '"agentSocket" <what is wrong with it>',
    when: 'agentSocket is not a string (`"agentSocket" must be a string, not number`), is empty, contains a NUL character, is not an absolute path, or is longer than a unix socket path can be (107 bytes)',
    fix: 'Set agentSocket to the absolute path of the agent\'s API socket.',
  },
  {
    cni: CniCode.TRY_AGAIN_LATER, msg: 'membrane agent not reachable at <socket>: <why>',
    when: 'any command but VERSION and STATUS, when connecting fails (e.g. ENOENT, ECONNREFUSED), no answer comes within the deadline, or the answer is not a valid response (`bad response: ...`, e.g. an HTTP status other than 200 or no X-Cni-Exit-Code header); details: "start the agent on this node (membrane agent --config FILE)"',
    fix: 'Start the agent on the node; the socket is the conflist\'s agentSocket. The runtime retries; a DEL is not queued.',
  },
  {
    cni: CniCode.PLUGIN_NOT_AVAILABLE, msg: 'membrane agent not reachable at <socket>: <why>',
    when: 'STATUS, in the same cases (STATUS reserves 50 for "cannot serve ADD")',
    fix: 'As above.',
  },
];
