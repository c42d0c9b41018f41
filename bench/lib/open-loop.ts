import { sleep } from './fleet';
import { round, type Summary, wallClockMs } from './stats';

export interface OpenLoopResult<T> {
  /** What each completed operation returned, in completion order. */
  completed: { value: T; doneAt: number }[];
  failures: string[];
  issued: number;
  /**
   * Operations due in the window that were never issued: every slot was busy when they were due (and
   * stayed so until the window ended), or, for at most the last turn's worth, the window ended before the
   * generator's next turn.
   */
  notIssued: number;
  /** How long the generator waited, in all, for a slot to come free (never past the window's end). */
  stalledMs: number;
  startedAt: number;
  /** When the generator stopped issuing: the window's end, give or take one turn of the event loop. */
  windowEndAt: number;
}

/**
 * An open-loop load: one operation every 1/`ratePerS` for `durationS`, each on a free slot (a group with
 * nothing in flight), whatever the earlier ones are doing. When every slot is busy the generator waits
 * for one and the shortfall is reported (`notIssued`): it does not queue work the system has not taken.
 * Returns once every issued operation has finished, so the caller can take the CPU of all of them.
 */
export async function openLoopLoad<T>(params: {
  ratePerS: number;
  durationS: number;
  slots: readonly string[];
  run: (slot: string) => Promise<T>;
  /** Called when the window ends, with what is still in flight. */
  onWindowEnd?: (issued: number, inFlight: number) => void;
}): Promise<OpenLoopResult<T>> {
  const { ratePerS, durationS, run } = params;
  const free = [...params.slots];
  let freed: (() => void) | undefined;
  const completed: { value: T; doneAt: number }[] = [];
  const failures: string[] = [];
  const inFlight = new Set<Promise<void>>();
  const startedAt = wallClockMs();
  const endsAt = startedAt + durationS * 1000;
  // One timer for the whole window: a wait for a free slot ends with the window at the latest.
  let windowTimer: NodeJS.Timeout | undefined;
  let windowOver = false;
  const windowEnds = new Promise<void>((resolve) => (windowTimer = setTimeout(resolve, durationS * 1000))).then(() => {
    windowOver = true;
  });
  const inWindow = () => !windowOver && wallClockMs() < endsAt;
  let issued = 0;
  let stalledMs = 0;
  while (inWindow()) {
    const due = Math.min(Math.floor(((wallClockMs() - startedAt) * ratePerS) / 1000) + 1, durationS * ratePerS);
    while (issued < due) {
      if (free.length === 0) {
        const stallStart = wallClockMs();
        await Promise.race([new Promise<void>((resolve) => (freed = resolve)), windowEnds]);
        stalledMs += wallClockMs() - stallStart;
        if (!inWindow()) break;
        continue;
      }
      const slot = free.shift()!;
      issued += 1;
      const operation = run(slot).then(
        (value) => {
          completed.push({ value, doneAt: wallClockMs() });
          free.push(slot);
          freed?.();
        },
        (error: unknown) => {
          failures.push((error as Error).message);
          free.push(slot);
          freed?.();
        },
      );
      inFlight.add(operation);
      void operation.finally(() => inFlight.delete(operation));
    }
    await sleep(Math.max(1, 1000 / ratePerS / 2));
  }
  const windowEndAt = wallClockMs();
  clearTimeout(windowTimer);
  params.onWindowEnd?.(issued, inFlight.size);
  await Promise.all([...inFlight]);
  return { completed, failures, issued, notIssued: durationS * ratePerS - issued, stalledMs, startedAt, windowEndAt };
}

/**
 * A load's figures as `latest.json` reports them, for Portcullis and its floor alike: operations completed
 * within the window per second of it, p99 loaded and idle, and what the generator could not issue.
 */
export function loadFigures(load: OpenLoopResult<unknown>, loaded: Summary, idle: Summary, ratePerS: number) {
  const completedInWindow = load.completed.filter((done) => done.doneAt <= load.windowEndAt).length;
  return {
    ...loaded,
    commands_per_s: round(completedInWindow / ((load.windowEndAt - load.startedAt) / 1000)),
    p99_ms_loaded: loaded.p99_ms,
    p99_ms_idle: idle.p99_ms,
    offered_per_s: ratePerS,
    issued: load.issued,
    not_issued: load.notIssued,
    generator_stalled_ms: Math.round(load.stalledMs),
    completed: load.completed.length,
    idle,
  };
}
