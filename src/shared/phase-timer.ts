// Phase timings for slow paths (pod add, agent start): enabled with
// MEMBRANE_TIMING=1, printed as one line to stderr (the agent's log), e.g.
// "timing add endpoint 12: identity 0.4 ms, veth 1.2 ms, ... total 9.8 ms".
import { env } from './env.ts';

export class PhaseTimer {
  private last: number;
  private readonly start: number;
  private readonly phases: string[] = [];

  /** Read when the timer is made, not at import: a bad MEMBRANE_TIMING is then reported by the CLI, not thrown by an import. */
  private readonly enabled = env().timing;

  /**
   * `opts.from`: a performance.now() value to count from instead of now;
   * 0 is the process's start, so the first phase of the agent's start shows
   * what Node and the module loading took before any of its own code ran.
   */
  constructor(private readonly what: string, opts: { from?: number } = {}) {
    this.start = this.last = opts.from ?? performance.now();
  }

  mark(phase: string): void {
    if (!this.enabled) return;
    const now = performance.now();
    this.phases.push(`${phase} ${(now - this.last).toFixed(1)} ms`);
    this.last = now;
  }

  done(): void {
    if (!this.enabled) return;
    process.stderr.write(`timing ${this.what}: ${this.phases.join(', ')}, total ${(performance.now() - this.start).toFixed(1)} ms\n`);
  }
}
