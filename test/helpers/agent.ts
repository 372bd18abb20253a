// Starting `membrane agent` inside a node netns for tests and benchmarks:
// resolves once its API socket answers; stopped (SIGTERM, then SIGKILL)
// when the test ends or the process exits.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { TestContext } from 'node:test';
import { MEMBRANE } from './membrane.ts';

export interface RunningAgent {
  child: ChildProcess;
  log: () => string;
  stop: (signal?: NodeJS.Signals) => Promise<void>;
}

export async function startAgent(t: TestContext | undefined, ns: string, cfg: string, socket: string, env: Record<string, string> = {}): Promise<RunningAgent> {
  const child = spawn('ip', ['netns', 'exec', ns, MEMBRANE, 'agent', '--config', cfg], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let log = '';
  child.stdout!.on('data', (c) => { log += c; });
  child.stderr!.on('data', (c) => { log += c; });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const stop = async (signal: NodeJS.Signals = 'SIGTERM') => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  };
  process.once('exit', () => { if (child.exitCode === null) child.kill('SIGKILL'); });
  t?.after(() => stop());
  for (let i = 0; i < 600; i++) {
    if (existsSync(socket) && /agent \S+: ready/.test(log)) return { child, log: () => log, stop };
    if (child.exitCode !== null) throw new Error(`agent exited ${child.exitCode}:\n${log}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  await stop();
  throw new Error(`agent did not serve ${socket} within 15 s:\n${log}`);
}
