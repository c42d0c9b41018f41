/**
 * Exponential back-off: `initialMs` after the first failure, doubling with each further one, capped at
 * `maxMs` — less a random fifth at most (jitter), so that systems failing together (a broker outage) do
 * not all retry in the same instant.
 */
export class RetryBackoff {
  constructor(
    readonly initialMs: number,
    readonly maxMs: number,
    private readonly random: () => number = Math.random,
  ) {}

  /** How long to wait after `failures` consecutive failures (1, 2, 3, ...): 80-100 % of the full delay. */
  delayAfter(failures: number): number {
    const full = Math.min(this.maxMs, this.initialMs * 2 ** Math.max(0, failures - 1));
    return Math.round(full * (0.8 + 0.2 * this.random()));
  }
}
