/** Exponential back-off: `initialMs` after the first failure, doubling with each further one, capped at `maxMs`. */
export class RetryBackoff {
  constructor(
    readonly initialMs: number,
    readonly maxMs: number,
  ) {}

  /** How long to wait after `failures` consecutive failures (1, 2, 3, ...). */
  delayAfter(failures: number): number {
    return Math.min(this.maxMs, this.initialMs * 2 ** Math.max(0, failures - 1));
  }
}
