// The one way to run `membrane agent` in a node's netns, for the lab, the
// tests and the benchmarks: `ip netns exec NETNS membrane agent --config F`,
// either detached with its log in a file (the lab: the agent outlives
// `lab up`) or with its output piped into this process (tests and
// benchmarks read it, and the agent must not outlive them).
//
// Ready means the agent's API answers /v1/healthz with ok: the agent only
// listens once the datapath is up, the store is open and its endpoints are
// restored, and healthz says "restoring" until then. A log line or the
// socket file existing are weaker signals (the file can be a stale one).
import { apiCall } from '../api/client.ts';
import { MembraneError } from '../shared/errors.ts';
import { MEMBRANE_BIN } from './layout.ts';
import { sleep, startProcess, throwIfAborted, type ProcessHandle } from './processes.ts';

export interface AgentProcessOptions {
  /** Names the agent in errors (the node name). */
  name: string;
  /** The node's netns; the agent runs there. */
  netns: string;
  configFile: string;
  /** The API socket its config gives it (readiness is judged there). */
  apiSocket: string;
  /** The agent's whole environment (default: this process's). */
  env?: NodeJS.ProcessEnv;
  /**
   * With a log file the agent runs detached (own process group) and appends
   * its output there; without, its output is piped into this process and it
   * is killed when this process exits.
   */
  logFile?: string;
}

export interface AgentProcess extends ProcessHandle {
  readonly name: string;
  readonly apiSocket: string;
}

/** Starts the agent process; it is not ready yet (see agentReady). */
export function spawnAgentProcess(o: AgentProcessOptions): AgentProcess {
  const argv = ['ip', 'netns', 'exec', o.netns, MEMBRANE_BIN, 'agent', '--config', o.configFile];
  const p = startProcess(argv, o.logFile ? { logFile: o.logFile } : 'pipe', o.env ?? process.env);
  return Object.assign(p, { name: o.name, apiSocket: o.apiSocket });
}

/**
 * Resolves once the agent answers /v1/healthz with ok; throws E_LAB with
 * the tail of its output if it exits first or does not answer in time.
 */
export async function agentReady(a: Pick<AgentProcess, 'name' | 'apiSocket' | 'running' | 'output' | 'outputName'>, timeoutMs = 30_000, signal?: AbortSignal): Promise<void> {
  const what = `start agent of ${a.name}`;
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    throwIfAborted(signal, what);
    if (!a.running()) throw new MembraneError(what, { code: 'E_LAB', cause: `it exited; ${a.outputName}:\n${a.output(6)}` });
    try {
      const h = await apiCall<{ status: string }>(a.apiSocket, 'GET', '/v1/healthz', undefined, { timeoutMs: 1_000 });
      if (h.status === 'ok') return;
    } catch { /* not listening yet */ }
    await sleep(15);
  }
  throw new MembraneError(what, { code: 'E_LAB', cause: `no answer on ${a.apiSocket} within ${timeoutMs} ms; ${a.outputName}:\n${a.output(6)}` });
}

/** Starts the agent and waits until it is ready; stops it again if it never gets there. */
export async function startAgentProcess(o: AgentProcessOptions, timeoutMs = 30_000, signal?: AbortSignal): Promise<AgentProcess> {
  const a = spawnAgentProcess(o);
  try {
    await agentReady(a, timeoutMs, signal);
  } catch (e) {
    await a.stop();
    throw e;
  }
  return a;
}
