// The runtime side of CNI: executes plugin binaries the way a container
// runtime (libcni) does. The lab attaches its pods with it, the tests drive
// the plugin with it, and the benchmarks time it.
//
// Per invocation: CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME,
// CNI_ARGS and CNI_PATH are all set (empty when they do not apply, as
// libcni does) on top of the inherited environment, and the plugin's
// execution config goes to stdin. For a conflist: `name` and `cniVersion`
// are injected into every plugin config, `capabilities` is replaced by
// `runtimeConfig`, ADD runs in order passing each result as the next
// plugin's `prevResult`, DEL runs in reverse with the ADD's result as
// `prevResult`, CHECK in order with it, GC with `cni.dev/valid-attachments`.
// (CNI spec 1.1.0, sections 2 and 3.)
//
// A runtime runs on the node, so the plugin runs in the node's network
// namespace: `fromNetns` runs it through `ip netns exec NODE` when this
// process is elsewhere (the lab's CLI in the root netns).
//
// Asynchronous on purpose: tests serve the agent's socket from the same
// process, which a synchronous exec would starve.
import { spawn } from 'node:child_process';
import { accessSync, constants, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { MembraneError } from '../shared/errors.ts';

/** Versions this runtime side can drive (for `cniVersions` negotiation). */
const RUNTIME_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'];
const CNI_VARS = ['CNI_COMMAND', 'CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME', 'CNI_ARGS', 'CNI_PATH'];

export interface CniExecOptions {
  containerID?: string;
  netns?: string;
  ifname?: string;
  /** CNI_ARGS: "K=V;K2=V2" or an object rendered that way. */
  args?: string | Record<string, string>;
  /** CNI_PATH: directories, joined with ':'. */
  cniPath?: string | string[];
  /** The plugin's execution config (stdin). */
  conf?: Record<string, unknown>;
  /** Added to the config as `prevResult`. */
  prevResult?: unknown;
  /** Raw stdin instead of the JSON of `conf`. */
  stdin?: string | Buffer;
  /** Extra environment (e.g. MEMBRANE_CNI_TIMEOUT_MS). */
  env?: Record<string, string>;
  /** CNI_* variables to leave unset entirely (to test validation). */
  unset?: string[];
  /** Kill the plugin after this long (default 120 s). */
  timeoutMs?: number;
  /** Run the plugin from this named network namespace (`ip netns exec NAME plugin`), as the node's runtime would. */
  fromNetns?: string;
}

export interface CniExecResult {
  exitCode: number;
  /** stdout parsed as JSON when it is JSON, else the text (undefined when empty). */
  stdout: any;
  stdoutText: string;
  stderr: string;
  /** Wall time of the exec, spawn to exit. */
  ms: number;
}

function argsString(a: CniExecOptions['args']): string {
  if (a === undefined) return '';
  return typeof a === 'string' ? a : Object.entries(a).map(([k, v]) => `${k}=${v}`).join(';');
}

/**
 * Executes one plugin binary once. Resolves with its exit code and output
 * (a CNI error is an answer, not an exception); rejects only if it cannot
 * run or does not exit in time.
 */
export function cniExec(pluginPath: string, command: string, opts: CniExecOptions = {}): Promise<CniExecResult> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !CNI_VARS.includes(k)) env[k] = v;
  Object.assign(env, {
    CNI_COMMAND: command,
    CNI_CONTAINERID: opts.containerID ?? '',
    CNI_NETNS: opts.netns ?? '',
    CNI_IFNAME: opts.ifname ?? '',
    CNI_ARGS: argsString(opts.args),
    CNI_PATH: Array.isArray(opts.cniPath) ? opts.cniPath.join(':') : opts.cniPath ?? '',
  }, opts.env ?? {});
  for (const k of opts.unset ?? []) delete env[k];
  const stdin = opts.stdin ?? JSON.stringify(opts.prevResult === undefined ? opts.conf ?? {} : { ...opts.conf, prevResult: opts.prevResult });
  const [cmd, argv] = opts.fromNetns ? ['ip', ['netns', 'exec', opts.fromNetns, pluginPath]] : [pluginPath, []];
  const what = `run CNI ${command} with ${pluginPath}${opts.fromNetns ? ` in netns ${opts.fromNetns}` : ''}`;
  const timeoutMs = opts.timeoutMs ?? 120_000;

  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(cmd, argv, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.stdin.on('error', () => { /* the plugin may exit without reading everything */ });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new MembraneError(what, { code: 'E_UNAVAILABLE', cause: `no exit within ${timeoutMs} ms` }));
    }, timeoutMs);
    child.on('error', (e) => { clearTimeout(timer); reject(new MembraneError(what, { code: 'E_INTERNAL', cause: e })); });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      const stdoutText = Buffer.concat(out).toString('utf8');
      let parsed: unknown = stdoutText === '' ? undefined : stdoutText;
      try { if (stdoutText.trim() !== '') parsed = JSON.parse(stdoutText); } catch { /* not JSON: keep the text */ }
      resolve({ exitCode: code ?? (signal ? 128 : 1), stdout: parsed, stdoutText, stderr: Buffer.concat(err).toString('utf8'), ms });
    });
    child.stdin.end(stdin);
  });
}

export interface Conflist {
  cniVersion: string;
  cniVersions?: string[];
  name: string;
  disableCheck?: boolean;
  disableGC?: boolean;
  plugins: Record<string, unknown>[];
  [k: string]: unknown;
}

export interface RunConflistOptions {
  containerID?: string;
  netns?: string;
  ifname?: string;
  args?: string | Record<string, string>;
  /** Directories searched for each plugin's `type` (also passed as CNI_PATH). */
  cniPath: string | string[];
  /** DEL/CHECK: the cached result of the ADD. */
  prevResult?: unknown;
  /** GC: the attachments still in use. */
  validAttachments?: { containerID: string; ifname: string }[];
  /** Capability arguments (e.g. {mac: '..'}), passed to plugins that declare the capability. */
  capabilityArgs?: Record<string, unknown>;
  env?: Record<string, string>;
  timeoutMs?: number;
  /** Run every plugin from this named network namespace (see CniExecOptions.fromNetns). */
  fromNetns?: string;
}

export interface RunConflistResult extends CniExecResult {
  /** Every plugin execution, in the order run. */
  steps: (CniExecResult & { type: string; stdinConf: Record<string, unknown> })[];
}

const vIndex = (v: string) => RUNTIME_VERSIONS.indexOf(v);

/** Loads and checks a conflist (path or object). Throws E_CNI_CONFIG on a structurally invalid list. */
export function loadConflist(src: string | Conflist): Conflist {
  const what = `load conflist${typeof src === 'string' ? ` ${src}` : ''}`;
  let list: Conflist;
  try {
    list = (typeof src === 'string' ? JSON.parse(readFileSync(src, 'utf8')) : src) as Conflist;
  } catch (e) {
    throw new MembraneError(what, { code: 'E_CNI_CONFIG', cause: e });
  }
  const bad = (cause: string) => new MembraneError(what, { code: 'E_CNI_CONFIG', cause });
  if (typeof list.name !== 'string' || !list.name) throw bad('no name');
  if (typeof list.cniVersion !== 'string') throw bad('no cniVersion');
  if (!Array.isArray(list.plugins) || list.plugins.length === 0) throw bad('no plugins');
  for (const [i, p] of list.plugins.entries()) if (typeof p.type !== 'string' || /[/\\]/.test(p.type)) throw bad(`plugins[${i}] has no valid type`);
  return list;
}

/** The version to run with: the highest of `cniVersions` this runtime side knows, else `cniVersion` (spec 1.1.0). */
export function negotiatedVersion(list: Conflist): string {
  const known = (list.cniVersions ?? []).filter((v) => vIndex(v) >= 0).sort((a, b) => vIndex(a) - vIndex(b));
  return known.length ? known[known.length - 1]! : list.cniVersion;
}

/** Finds the executable for `type` in the search path. */
export function findPlugin(type: string, cniPath: string | string[]): string {
  const dirs = Array.isArray(cniPath) ? cniPath : cniPath.split(':').filter(Boolean);
  for (const d of dirs) {
    const p = join(d, type);
    try { accessSync(p, constants.X_OK); return p; } catch { /* next */ }
  }
  throw new MembraneError(`CNI plugin ${type} not found in ${dirs.join(':')}`, { code: 'E_CNI_CONFIG' });
}

/** The execution config for one plugin (spec section 3, "Deriving execution configuration"). */
export function executionConfig(list: Conflist, plugin: Record<string, unknown>, version: string, prevResult: unknown, capabilityArgs?: Record<string, unknown>): Record<string, unknown> {
  const { capabilities, ...rest } = plugin as { capabilities?: Record<string, boolean> };
  const conf: Record<string, unknown> = { ...rest, cniVersion: version, name: list.name };
  const rc: Record<string, unknown> = {};
  for (const [cap, on] of Object.entries(capabilities ?? {})) if (on && capabilityArgs && cap in capabilityArgs) rc[cap] = capabilityArgs[cap];
  if (Object.keys(rc).length) conf.runtimeConfig = rc;
  if (prevResult !== undefined) conf.prevResult = prevResult;
  return conf;
}

/**
 * Runs a network configuration list for `command` (ADD, DEL, CHECK, GC,
 * STATUS, VERSION) as a runtime does. The result is the last plugin's (or the
 * failing plugin's: execution halts at the first error).
 */
export async function runConflist(src: string | Conflist, command: string, opts: RunConflistOptions): Promise<RunConflistResult> {
  const list = loadConflist(src);
  const version = negotiatedVersion(list);
  const steps: RunConflistResult['steps'] = [];
  const exec = async (plugin: Record<string, unknown>, conf: Record<string, unknown>, attachment: boolean) => {
    const type = plugin.type as string;
    let path: string;
    try {
      path = findPlugin(type, opts.cniPath);
    } catch (e) {
      throw new MembraneError(`run conflist ${list.name} ${command}`, { cause: e });
    }
    const r = await cniExec(path, command, {
      ...(attachment ? { containerID: opts.containerID, netns: opts.netns, ifname: opts.ifname, args: opts.args } : {}),
      cniPath: opts.cniPath, conf, env: opts.env, timeoutMs: opts.timeoutMs, fromNetns: opts.fromNetns,
    });
    steps.push({ ...r, type, stdinConf: conf });
    return r;
  };
  const done = (r: CniExecResult | undefined): RunConflistResult =>
    ({ ...(r ?? { exitCode: 0, stdout: undefined, stdoutText: '', stderr: '', ms: 0 }), steps });

  switch (command) {
    case 'ADD': {
      let prev: unknown;
      let last: CniExecResult | undefined;
      for (const p of list.plugins) {
        last = await exec(p, executionConfig(list, p, version, prev, opts.capabilityArgs), true);
        if (last.exitCode !== 0) return done(last);
        prev = last.stdout;
      }
      return done(last);
    }
    case 'DEL': {
      // prevResult on DEL exists from 0.4.0 on.
      const prev = vIndex(version) >= vIndex('0.4.0') ? opts.prevResult : undefined;
      let last: CniExecResult | undefined;
      for (const p of [...list.plugins].reverse()) {
        last = await exec(p, executionConfig(list, p, version, prev, opts.capabilityArgs), true);
        if (last.exitCode !== 0) return done(last);
      }
      return done(last);
    }
    case 'CHECK': {
      if (vIndex(version) < vIndex('0.4.0')) {
        throw new MembraneError(`run conflist ${list.name} CHECK`, { code: 'E_CNI_VERSION', cause: `configuration version ${version} does not support CHECK` });
      }
      if (list.disableCheck) return done(undefined);
      let last: CniExecResult | undefined;
      for (const p of list.plugins) {
        last = await exec(p, executionConfig(list, p, version, opts.prevResult, opts.capabilityArgs), true);
        if (last.exitCode !== 0) return done(last);
      }
      return done(last);
    }
    case 'GC':
    case 'STATUS': {
      if (vIndex(version) < vIndex('1.1.0') || (command === 'GC' && list.disableGC)) return done(undefined);
      let last: CniExecResult | undefined;
      for (const p of list.plugins) {
        const conf = executionConfig(list, p, version, undefined);
        if (command === 'GC') conf['cni.dev/valid-attachments'] = opts.validAttachments ?? [];
        last = await exec(p, conf, false);
        if (last.exitCode !== 0) return done(last);
      }
      return done(last);
    }
    case 'VERSION': {
      let last: CniExecResult | undefined;
      for (const p of list.plugins) {
        last = await exec(p, { cniVersion: version }, false);
        if (last.exitCode !== 0) return done(last);
      }
      return done(last);
    }
    default:
      throw new MembraneError(`run conflist ${list.name}`, { code: 'E_USAGE', cause: `unknown CNI command ${command}` });
  }
}
