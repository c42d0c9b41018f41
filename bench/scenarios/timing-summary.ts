import type { CommandTiming, Hops } from '../lib/command-tracker';
import { median, round, summarize, type Summary } from '../lib/stats';

/** Median of each hop, for the system enforced last (see "Where the time goes" in bench/README.md). */
export function hopSummary(timed: readonly CommandTiming[]): Record<keyof Hops, number> | null {
  const withHops = timed.map((timing) => timing.hops).filter((hops): hops is Hops => hops !== undefined);
  if (withHops.length === 0) return null;
  const keys: (keyof Hops)[] = ['request', 'decide', 'relay', 'adapter', 'ackBack'];
  return Object.fromEntries(keys.map((key) => [key, round(median(withHops.map((hops) => hops[key])))])) as Record<keyof Hops, number>;
}

/**
 * The slowest samples with their hops: the p99 a ratio is judged on is a tail of a few samples, and which
 * hop a tail sample spent its time in says what caused it (a GC pause in the service, a slow fetch, ...).
 */
export function slowestSamples(timed: readonly CommandTiming[], count = 5): { tte_ms: number; action: string; hops: Hops | null }[] {
  return [...timed]
    .sort((a, b) => b.tteMs - a.tteMs)
    .slice(0, count)
    .map((timing) => ({
      tte_ms: round(timing.tteMs),
      action: timing.action,
      hops: timing.hops ? (Object.fromEntries(Object.entries(timing.hops).map(([key, ms]) => [key, round(ms)])) as unknown as Hops) : null,
    }));
}

/**
 * The client's own observation must never come before the service's timestamp (same host clock); the gap
 * is commit + poll delay. `violations` counts samples where the service's time is later than the client
 * saw the result (by more than 1 ms), which would mean the timestamps cannot be trusted.
 */
export function crossCheck(timed: readonly CommandTiming[]): { median_gap_ms: number; max_gap_ms: number; violations: number } {
  const gaps = timed.map((timing) => timing.clientObservedMs - timing.tteMs);
  return {
    median_gap_ms: round(median(gaps)),
    max_gap_ms: round(Math.max(...gaps)),
    violations: gaps.filter((gap) => gap < -1).length,
  };
}

/**
 * Revokes and restores apart. A restore goes through four eyes: `restore` is its time to enforce from the
 * second security lead's approval (where the service decides, as a revoke does at its request);
 * `restore_request` is the first lead's restore request alone (client round trip, 202 `awaiting-approval`);
 * `restore_total` runs from that request to the last `enforced` (both leads answering at once, as here).
 */
export function byAction(timed: readonly CommandTiming[]): {
  revoke: Summary;
  restore: Summary;
  restore_request: Summary;
  restore_total: Summary;
} | null {
  const restores = timed.filter((timing) => timing.action === 'restore');
  const revokes = timed.filter((timing) => timing.action === 'revoke');
  if (restores.length === 0) return null;
  return {
    revoke: summarize(revokes.map((timing) => timing.tteMs)),
    restore: summarize(restores.map((timing) => timing.tteMs)),
    restore_request: summarize(restores.flatMap((timing) => (timing.restoreRequest ? [timing.restoreRequest.answeredAt - timing.restoreRequest.sentAt] : []))),
    restore_total: summarize(restores.flatMap((timing) => (timing.restoreTotalMs !== undefined ? [timing.restoreTotalMs] : []))),
  };
}
