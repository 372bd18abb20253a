// `membrane agent` for tests: the lab's agent runner (src/lab/agent-process.ts,
// output piped into the test) plus the test's part: stopped (SIGTERM, then
// SIGKILL) when the test ends; the runner also kills it at process exit.
import type { ChildProcess } from 'node:child_process';
import type { TestContext } from 'node:test';
import { agentReady, spawnAgentProcess } from '../../src/lab/agent-process.ts';

export interface RunningAgent {
  child: ChildProcess;
  log: () => string;
  stop: (signal?: NodeJS.Signals) => Promise<void>;
}

/** Starts the agent in `ns` and resolves once its API answers /v1/healthz with ok (15 s at most). */
export async function startAgent(t: TestContext | undefined, ns: string, cfg: string, socket: string, env: Record<string, string> = {}): Promise<RunningAgent> {
  const a = spawnAgentProcess({ name: ns, netns: ns, configFile: cfg, apiSocket: socket, env: { ...process.env, ...env } });
  const stop = (signal?: NodeJS.Signals) => a.stop(signal);
  t?.after(() => stop());
  try {
    await agentReady(a, 15_000);
  } catch (e) {
    await stop();
    throw e;
  }
  return { child: a.child!, log: () => a.output(), stop };
}
