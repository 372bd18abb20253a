// The CNI plugin's logic, run inside the agent: validates one invocation
// (environment + network config), drives the EndpointBackend and renders
// what the plugin binary prints and exits with. Pure over the backend, so
// every error path is testable without root (test/unit/cni-handler.test.ts).
//
// Spec: CNI 1.1.0 (ADD, DEL, CHECK, STATUS, GC, VERSION), results rendered in
// the shape of the config's cniVersion (0.3.0 ... 1.1.0). Error codes: every
// failure is a MembraneError whose code the catalogue (src/shared/error-codes.ts)
// turns into a CNI code; docs/errors.md lists them.
import { lstat, readlink, stat, statfs } from 'node:fs/promises';
import { setImmediate as yieldToIO } from 'node:timers/promises';
import { causeChain, MembraneError, type ErrorCode } from '../shared/errors.ts';
import { cniCodeOf, errorCodeOf } from '../shared/error-codes.ts';
import { locateJsonError, locateUtf8Error, MAX_JSON_DEPTH, type JsonErrorPosition } from './json-error.ts';
import {
  CNI_COMMANDS, PLUGIN_TYPE, SUPPORTED_VERSIONS,
  type AddedEndpoint, type CniCommand, type CniErrorResult, type CniInterface, type CniIPConfig, type CniOutput,
  type CniResult, type CniRoute, type CniVersion, type CniVersionResult, type EndpointBackend, type GCAttachment, type NetConf,
} from './types.ts';

export type { EndpointBackend } from './types.ts';

export interface CniHandlerOptions {
  /** The only network name this agent serves (the conflist's `name`). */
  networkName: string;
}

/** What the transport knows about one invocation beyond its variables and stdin. */
export interface CniRequestContext {
  /**
   * Aborts when the caller is gone (the plugin timed out or was killed):
   * handed to backend.add, which then does not carry out, or undoes, the ADD.
   */
  signal?: AbortSignal;
  /**
   * CNI_* variables whose bytes were not UTF-8 (src/cni/http.ts). Their
   * values in `env` are lossy decodings, so they are refused (code 4): an
   * interface renamed by the transport is not the one the runtime asked for.
   */
  invalidUtf8?: readonly string[];
}

/**
 * A failure the handler finds itself (a bad request, STATUS refusing). Its
 * message is the whole story, so unlike a backend error it reports no cause
 * chain, only the `details` given.
 */
class CniFailure extends MembraneError {
  constructor(code: ErrorCode, msg: string, readonly details?: string) {
    super(msg, { code });
  }
}

/** The CNI error code for any thrown value: its catalogue code's (999, libcni's ErrInternal, for uncoded errors). */
export function codeFor(err: unknown): number {
  return cniCodeOf(errorCodeOf(err));
}

/** The variables each command requires (the C shim checks the same when it answers by itself: cni/defaults.h). */
export const REQUIRED_ENV: Readonly<Record<CniCommand, readonly string[]>> = {
  ADD: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME'],
  DEL: ['CNI_CONTAINERID', 'CNI_IFNAME'],
  CHECK: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME'],
  STATUS: [],
  GC: [],
  VERSION: [],
};

/** The first spec version each command exists in. */
const SINCE: Partial<Record<CniCommand, CniVersion>> = { CHECK: '0.4.0', STATUS: '1.1.0', GC: '1.1.0' };

const CONTAINER_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

const versionIndex = (v: string) => (SUPPORTED_VERSIONS as readonly string[]).indexOf(v);
const atLeast = (v: string, min: CniVersion) => versionIndex(v) >= versionIndex(min);
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const json = (v: unknown) => `${JSON.stringify(v)}\n`;

/**
 * Runs one CNI invocation. `env` holds the CNI_* variables as the runtime set
 * them, `stdin` the network config (bytes as read, or text). Never throws:
 * every failure becomes a CNI error object with exit code 1.
 */
export async function handleCni(
  env: Record<string, string | undefined>, stdin: string | Uint8Array, backend: EndpointBackend, opts: CniHandlerOptions, ctx: CniRequestContext = {},
): Promise<CniOutput> {
  // Decoded once, before anything else: the error object's cniVersion comes
  // from it ("the same value as provided by the configuration"), and a
  // decode error is reported after the environment's, as libcni's skel does.
  const decoded = await decodeConf(stdin);
  let errVersion = '1.1.0';
  const v = isObject(decoded.value) ? decoded.value.cniVersion : undefined;
  if (typeof v === 'string' && /^\d+\.\d+\.\d+$/.test(v)) errVersion = v;

  try {
    return await run(env, decoded, backend, opts, ctx);
  } catch (e) {
    const out: CniErrorResult = { cniVersion: errVersion, code: codeFor(e), msg: oneLine(e instanceof Error ? e.message : String(e)) };
    const d = e instanceof CniFailure ? e.details : details(e);
    if (d) out.details = d;
    return { exitCode: 1, stdout: json(out) };
  }
}

/** stdin as JSON: the value, or why it is not a network config's JSON (code 6). */
interface DecodedConf {
  value?: unknown;
  error?: CniFailure;
}

const decodeError = (at: JsonErrorPosition) =>
  new CniFailure('E_CNI_DECODE', `decode network config: ${at.reason} at line ${at.line}, column ${at.column} (offset ${at.offset})`);

/**
 * Validates before it parses: UTF-8 (RFC 8259 requires it; a lossy decoding
 * would hand on other bytes than the runtime's), then the grammar and the
 * nesting depth in one linear pass (src/cni/json-error.ts), and only then
 * JSON.parse, which is fast on valid input but accepts any depth and names
 * no position. The transport bounds the size (MAX_STDIN), so all of it is
 * bounded, and the event loop gets a turn between validating and parsing.
 */
async function decodeConf(stdin: string | Uint8Array): Promise<DecodedConf> {
  let text: string;
  if (typeof stdin === 'string') {
    text = stdin;
  } else {
    const bad = locateUtf8Error(stdin);
    if (bad) return { error: decodeError(bad) };
    text = Buffer.from(stdin.buffer, stdin.byteOffset, stdin.byteLength).toString('utf8');
  }
  if (/^[ \t\n\r]*$/.test(text)) return { error: new CniFailure('E_CNI_DECODE', 'decode network config: stdin is empty') };
  const at = locateJsonError(text, MAX_JSON_DEPTH);
  if (at) return { error: decodeError(at) };
  if (text.length > 64 << 10) await yieldToIO();
  return { value: JSON.parse(text) };
}

async function run(env: Record<string, string | undefined>, decoded: DecodedConf, backend: EndpointBackend, opts: CniHandlerOptions, ctx: CniRequestContext): Promise<CniOutput> {
  const command = env.CNI_COMMAND;
  if (!command) throw new CniFailure('E_CNI_ENV', `CNI_COMMAND is not set (want one of ${CNI_COMMANDS.join(', ')})`);
  if (!(CNI_COMMANDS as readonly string[]).includes(command)) {
    throw new CniFailure('E_CNI_ENV', `CNI_COMMAND "${command}" is not a CNI command (want one of ${CNI_COMMANDS.join(', ')})`);
  }
  const cmd = command as CniCommand;
  if (cmd === 'VERSION') return { exitCode: 0, stdout: json(versionResult(decoded.value)) };

  // CNI_PATH is never used (the plugin delegates to nothing), so its bytes do not matter.
  const notUtf8 = (ctx.invalidUtf8 ?? []).filter((k) => k !== 'CNI_PATH');
  if (notUtf8.length) {
    throw new CniFailure('E_CNI_ENV', `${notUtf8.join(', ')} ${notUtf8.length === 1 ? 'is' : 'are'} not valid UTF-8 (refused rather than read as another name)`);
  }
  const missing = REQUIRED_ENV[cmd].filter((k) => !env[k]);
  if (missing.length) {
    throw new CniFailure('E_CNI_ENV', `${missing.join(', ')} ${missing.length === 1 ? 'is' : 'are'} not set (required for ${cmd})`);
  }
  if (cmd === 'ADD' || cmd === 'CHECK') validateAttachmentEnv(env);
  if (decoded.error) throw decoded.error;
  const conf = asConf(decoded.value);
  validateConf(conf, cmd, opts);
  // The netns is checked after the config, as libcni's skel and plugins do: skel only checks that it is set.
  if (cmd === 'ADD' || cmd === 'CHECK') await validateNetns(env.CNI_NETNS!);

  switch (cmd) {
    case 'ADD': return add(env, conf, backend, ctx.signal);
    case 'DEL':
      await backend.del({ containerID: env.CNI_CONTAINERID!, ifname: env.CNI_IFNAME!, netns: env.CNI_NETNS || undefined });
      return { exitCode: 0, stdout: '' };
    case 'CHECK': return check(env, conf, backend);
    case 'STATUS':
      try {
        await backend.status();
      } catch (e) {
        // STATUS has one code for every reason the agent cannot serve ADD; the reason goes in msg and details.
        throw new CniFailure('E_CNI_NOT_AVAILABLE', `plugin not available: ${oneLine(e instanceof Error ? e.message : String(e))}`, details(e));
      }
      return { exitCode: 0, stdout: '' };
    case 'GC': {
      const valid = validAttachments(conf);
      await backend.gc(valid);
      return { exitCode: 0, stdout: '' };
    }
  }
}

/** VERSION: echoes the input's cniVersion when we speak it (spec), else our newest. */
function versionResult(input: unknown): CniVersionResult {
  const v = isObject(input) ? input.cniVersion : undefined; // no input, or none we can read, is fine
  return { cniVersion: typeof v === 'string' && versionIndex(v) >= 0 ? v : '1.1.0', supportedVersions: [...SUPPORTED_VERSIONS] };
}

/** Container ID and interface name rules from the spec (section 2, "Parameters"). */
function validateAttachmentEnv(env: Record<string, string | undefined>): void {
  const id = env.CNI_CONTAINERID!;
  if (!CONTAINER_ID.test(id)) {
    throw new CniFailure('E_CNI_ENV', `CNI_CONTAINERID ${JSON.stringify(id)} is invalid: it must start with a letter or digit, then letters, digits, '_', '.' or '-'`);
  }
  const ifname = env.CNI_IFNAME!;
  const why = ifname === '.' || ifname === '..' ? 'it must not be "." or ".."'
    : Buffer.byteLength(ifname) > 15 ? 'it must be shorter than 16 bytes'
      : /[/:\s]/.test(ifname) ? "it must not contain '/', ':' or whitespace" : undefined;
  if (why) throw new CniFailure('E_CNI_ENV', `CNI_IFNAME ${JSON.stringify(ifname)} is invalid: ${why}`);
}

function asConf(v: unknown): NetConf {
  if (!isObject(v)) throw new CniFailure('E_CNI_CONFIG', `network config must be a JSON object, not ${Array.isArray(v) ? 'an array' : v === null ? 'null' : typeof v}`);
  return v as NetConf;
}

/** nsfs's statfs magic (linux/magic.h NSFS_MAGIC): what a netns file (/run/netns/NAME, /proc/PID/ns/net) is on. */
const NSFS_MAGIC = 0x6e736673;

/**
 * CNI_NETNS must name a network namespace: a file on nsfs. One that does not
 * exist is code 3 (the container is gone; the spec says the runtime then
 * needs no cleanup). One that exists but is something else, a regular file,
 * a directory, /dev/null, another kind of namespace, is code 4: an invalid
 * variable. Asynchronous, so a path on a hung file system cannot stall the agent.
 */
async function validateNetns(path: string): Promise<void> {
  const invalid = (why: string) => new CniFailure('E_CNI_ENV', `CNI_NETNS ${JSON.stringify(path)} is not a network namespace: ${why}`);
  let st;
  try {
    st = await stat(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new CniFailure('E_NETNS', `check CNI_NETNS: network namespace ${path} does not exist`);
    throw invalid(`cannot stat it (${code ?? (e as Error).message})`);
  }
  if (!st.isFile()) {
    throw invalid(st.isDirectory() ? 'it is a directory' : st.isCharacterDevice() ? 'it is a character device'
      : st.isBlockDevice() ? 'it is a block device' : st.isFIFO() ? 'it is a FIFO' : st.isSocket() ? 'it is a socket' : 'it is not a file');
  }
  if ((await statfs(path)).type !== NSFS_MAGIC) throw invalid('it is a regular file (not one a network namespace is mounted on)');
  // /proc/PID/ns/<kind> is a link named "<kind>:[inode]": refuse the other kinds by name.
  if ((await lstat(path)).isSymbolicLink()) {
    const kind = /^(\w+):\[\d+\]$/.exec(await readlink(path))?.[1];
    if (kind && kind !== 'net') throw invalid(`it is a ${kind} namespace`);
  }
}

function validateConf(conf: NetConf, cmd: CniCommand, opts: CniHandlerOptions): void {
  const supported = SUPPORTED_VERSIONS.join(', ');
  if (typeof conf.cniVersion !== 'string' || conf.cniVersion === '') {
    throw new CniFailure('E_CNI_VERSION', `network config has no cniVersion (membrane-cni supports ${supported})`);
  }
  if (versionIndex(conf.cniVersion) < 0) {
    throw new CniFailure('E_CNI_VERSION', `incompatible CNI version ${JSON.stringify(conf.cniVersion)}: membrane-cni supports ${supported}`);
  }
  if (typeof conf.name !== 'string' || conf.name === '') throw new CniFailure('E_CNI_CONFIG', 'network config has no "name"');
  if (conf.name !== opts.networkName) {
    throw new CniFailure('E_CNI_CONFIG', `network ${JSON.stringify(conf.name)} is not the membrane network ${JSON.stringify(opts.networkName)}`);
  }
  if (conf.type !== PLUGIN_TYPE) {
    throw new CniFailure('E_CNI_CONFIG', typeof conf.type === 'string'
      ? `plugin type ${JSON.stringify(conf.type)} is not ${PLUGIN_TYPE}`
      : `network config has no "type" (want "${PLUGIN_TYPE}")`);
  }
  const since = SINCE[cmd];
  if (since && !atLeast(conf.cniVersion, since)) {
    throw new CniFailure('E_CNI_VERSION', `${cmd} needs cniVersion ${since} or later; the network config has ${conf.cniVersion}`);
  }
  if (conf.prevResult !== undefined && !isObject(conf.prevResult)) throw new CniFailure('E_CNI_CONFIG', 'prevResult must be a JSON object');
}

/**
 * Egress shaping cannot work on this datapath: the bandwidth plugin shapes a
 * pod's egress with an ingress qdisc on the host-side veth redirecting to
 * an ifb, but cil_from_container (tcx ingress) runs first and redirects the
 * packet on. A runtime that passes an egress limit (the `bandwidth`
 * capability, which membrane-cni declares in its conflist to see it) gets a
 * clear refusal instead of a limit that silently does not hold.
 */
function refuseEgressShaping(conf: NetConf): void {
  const bw = conf.runtimeConfig?.bandwidth as { egressRate?: unknown; egressBurst?: unknown } | undefined;
  if (bw && ((Number(bw.egressRate) || 0) > 0 || (Number(bw.egressBurst) || 0) > 0)) {
    throw new CniFailure('E_CNI_CONFIG', 'runtimeConfig.bandwidth: egress limits (egressRate, egressBurst) are not supported: membrane\'s program on the pod\'s host-side device redirects its packets before the tc ingress qdisc the bandwidth plugin shapes with; ingress limits (ingressRate, ingressBurst) work');
  }
}

async function add(env: Record<string, string | undefined>, conf: NetConf, backend: EndpointBackend, signal?: AbortSignal): Promise<CniOutput> {
  const args = parseCniArgs(env.CNI_ARGS ?? '');
  const labels = labelsOf(conf);
  refuseEgressShaping(conf);
  // A caller already gone (it gave up while the agent was busy or stopped) gets nothing done.
  signal?.throwIfAborted();
  const ep = await backend.add({
    containerID: env.CNI_CONTAINERID!, netns: env.CNI_NETNS!, ifname: env.CNI_IFNAME!,
    podName: args.K8S_POD_NAME || undefined, podNamespace: args.K8S_POD_NAMESPACE || undefined, labels,
  }, signal ? { signal } : undefined);
  const result = addResult(conf.cniVersion as CniVersion, ep, env.CNI_IFNAME!, env.CNI_NETNS!, conf.prevResult as CniResult | undefined);
  return { exitCode: 0, stdout: json(result) };
}

/**
 * The ADD result in the shape of `version`: the host device (no sandbox), the
 * pod device (sandbox = netns), its /32 with the router as gateway, and the
 * default route via the router (with the tunnel-safe MTU from 1.1.0 on).
 * A `prevResult` from an earlier plugin in the chain is kept, ours appended.
 */
export function addResult(version: CniVersion, ep: AddedEndpoint, ifname: string, netns: string, prev?: CniResult): CniResult {
  const withMtu = atLeast(version, '1.1.0');
  const ipVersion = !atLeast(version, '1.0.0');
  const host: CniInterface = { name: ep.hostIfname, mac: ep.hostMac };
  const pod: CniInterface = { name: ifname, mac: ep.podMac };
  if (withMtu) { host.mtu = ep.deviceMTU; pod.mtu = ep.deviceMTU; }
  pod.sandbox = netns;
  const interfaces = [...(prev?.interfaces ?? []), host, pod];
  const ip: CniIPConfig = {
    ...(ipVersion ? { version: '4' as const } : {}),
    address: ep.ip.includes('/') ? ep.ip : `${ep.ip}/32`,
    gateway: ep.routerIP,
    interface: interfaces.length - 1,
  };
  const route: CniRoute = { dst: '0.0.0.0/0', gw: ep.routerIP };
  if (withMtu) route.mtu = ep.routeMTU;
  return {
    cniVersion: version,
    interfaces,
    ips: [...(prev?.ips ?? []), ip],
    routes: [...(prev?.routes ?? []), route],
    dns: prev?.dns ?? {},
  };
}

async function check(env: Record<string, string | undefined>, conf: NetConf, backend: EndpointBackend): Promise<CniOutput> {
  const prev = conf.prevResult as CniResult | undefined;
  if (prev === undefined) throw new CniFailure('E_CNI_CONFIG', 'CHECK needs prevResult (the result of the ADD) in the network config');
  // The spec: consult prevResult for the expected interfaces. Ours must be there.
  const ifname = env.CNI_IFNAME!;
  const netns = env.CNI_NETNS!;
  const mine = Array.isArray(prev.interfaces) ? prev.interfaces.find((i) => isObject(i) && i.name === ifname && (i.sandbox ?? '') !== '') : undefined;
  if (!mine) throw new CniFailure('E_CNI_CONFIG', `prevResult lists no container interface ${JSON.stringify(ifname)}`);
  if (mine.sandbox !== netns) {
    throw new CniFailure('E_CNI_CONFIG', `prevResult puts interface ${JSON.stringify(ifname)} in ${JSON.stringify(mine.sandbox)}, not CNI_NETNS ${JSON.stringify(netns)}`);
  }
  await backend.check({ containerID: env.CNI_CONTAINERID!, ifname, netns, prevResult: prev });
  return { exitCode: 0, stdout: '' };
}

/**
 * GC's keep-list. libcni sends it as `cni.dev/valid-attachments` (and, for an
 * old spelling, `cni.dev/attachments` too); a nil list arrives as null and
 * means "none valid". A config without the key is refused: guessing "none"
 * would delete every endpoint on the node.
 */
function validAttachments(conf: NetConf): GCAttachment[] {
  const key = 'cni.dev/valid-attachments' in conf ? 'cni.dev/valid-attachments' : 'cni.dev/attachments' in conf ? 'cni.dev/attachments' : undefined;
  if (!key) throw new CniFailure('E_CNI_CONFIG', 'GC needs "cni.dev/valid-attachments" in the network config');
  const v = conf[key];
  if (v === null) return [];
  if (!Array.isArray(v)) throw new CniFailure('E_CNI_CONFIG', `"${key}" must be an array of {containerID, ifname}`);
  return v.map((a: unknown, i) => {
    if (!isObject(a) || typeof a.containerID !== 'string' || typeof a.ifname !== 'string') {
      throw new CniFailure('E_CNI_CONFIG', `"${key}"[${i}] must be {"containerID": string, "ifname": string}`);
    }
    return { containerID: a.containerID, ifname: a.ifname };
  });
}

/** CNI_ARGS: "K=V;K2=V2". Empty segments are skipped; a segment without '=' or key is an error (code 4). */
export function parseCniArgs(s: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of s.split(';')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new CniFailure('E_CNI_ENV', `CNI_ARGS has an invalid pair ${JSON.stringify(pair)} (want KEY=VALUE pairs separated by ';')`);
    out[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return out;
}

/** A label source (the part before ':'), as Cilium's label format allows it. */
const LABEL_SOURCE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/**
 * A label must survive the cluster store's label key (`source:key=value;`,
 * src/store/keys.ts), or the ADD fails deep inside the agent: a non-empty
 * key without ';' or '=', a value without ';', an optional source of
 * letters, digits, '_', '.' and '-'. Refused here with the field named.
 */
function checkLabel(field: string, name: string, value: string): void {
  const colon = name.indexOf(':');
  const source = colon < 0 ? undefined : name.slice(0, colon);
  const key = colon < 0 ? name : name.slice(colon + 1);
  const why = source !== undefined && !LABEL_SOURCE.test(source) ? `its source ${JSON.stringify(source)} must be letters, digits, '_', '.' or '-'`
    : key === '' ? 'its key is empty'
      : /[;=]/.test(key) ? "its key must not contain ';' or '='"
        : value.includes(';') ? `its value ${JSON.stringify(value)} must not contain ';'` : undefined;
  if (why) throw new CniFailure('E_CNI_CONFIG', `${field}: label ${JSON.stringify(name)} is invalid: ${why}`);
}

/** Pod labels from `args.labels` ({k: v}) and the CNI convention `args.cni.labels` ([{key, value}]). */
function labelsOf(conf: NetConf): Record<string, string> {
  const labels: Record<string, string> = {};
  const args = conf.args as unknown;
  if (args === undefined) return labels;
  if (!isObject(args)) throw new CniFailure('E_CNI_CONFIG', '"args" must be an object');
  if (args.labels !== undefined) {
    if (!isObject(args.labels)) throw new CniFailure('E_CNI_CONFIG', '"args.labels" must be an object of string values');
    for (const [k, v] of Object.entries(args.labels)) {
      if (typeof v !== 'string') throw new CniFailure('E_CNI_CONFIG', `"args.labels.${k}" must be a string, not ${v === null ? 'null' : typeof v}`);
      checkLabel('"args.labels"', k, v);
      labels[k] = v;
    }
  }
  const cni = args.cni;
  if (isObject(cni) && cni.labels !== undefined) {
    if (!Array.isArray(cni.labels)) throw new CniFailure('E_CNI_CONFIG', '"args.cni.labels" must be an array of {key, value}');
    cni.labels.forEach((l: unknown, i) => {
      if (!isObject(l) || typeof l.key !== 'string' || typeof l.value !== 'string') {
        throw new CniFailure('E_CNI_CONFIG', `"args.cni.labels"[${i}] must be {"key": string, "value": string}`);
      }
      checkLabel(`"args.cni.labels"[${i}]`, l.key, l.value);
      labels[l.key] = l.value;
    });
  }
  return labels;
}

function oneLine(s: string): string {
  return s.split('\n')[0]!.trim();
}

/** The cause chain (outermost first) and the hint, one per line. */
function details(e: unknown): string | undefined {
  const lines = causeChain(e);
  const hint = e instanceof MembraneError ? e.hint : undefined;
  if (hint) lines.push(`hint: ${hint}`);
  return lines.length ? lines.join('\n') : undefined;
}
