// Phase timings for slow paths (pod add): enabled with MEMBRANE_TIMING=1,
// printed as one line to stderr (the agent's log), e.g.
// "timing add endpoint 12: identity 0.4 ms, veth 1.2 ms, ... total 9.8 ms".
import { env } from './env.ts';

export class PhaseTimer {
  private last = performance.now();
  private readonly start = this.last;
  private readonly phases: string[] = [];

  /** Read when the timer is made, not at import: a bad MEMBRANE_TIMING is then reported by the CLI, not thrown by an import. */
  private readonly enabled = env().timing;

  constructor(private readonly what: string) {}

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
