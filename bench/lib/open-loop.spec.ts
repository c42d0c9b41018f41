import { loadFigures, openLoopLoad, type OpenLoopResult } from './open-loop';
import { summarize } from './stats';

const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Runs a load on Jest's fake clock (timers and performance.now), so every figure is exact whatever else
 * the machine is doing. Operations take `opMs`; records how many ran at once and whether a slot was reused
 * while busy.
 */
async function load(params: { ratePerS: number; durationS: number; slots: number; opMs: number; fail?: (n: number) => boolean }) {
  const busy = new Set<string>();
  let concurrent = 0;
  let maxConcurrent = 0;
  let slotReused = false;
  let count = 0;
  const running = openLoopLoad({
    ratePerS: params.ratePerS,
    durationS: params.durationS,
    slots: Array.from({ length: params.slots }, (_, index) => `slot-${index}`),
    run: async (slot) => {
      const n = ++count;
      if (busy.has(slot)) slotReused = true;
      busy.add(slot);
      maxConcurrent = Math.max(maxConcurrent, ++concurrent);
      try {
        await delay(params.opMs);
        if (params.fail?.(n)) throw new Error(`operation ${n} failed`);
        return n;
      } finally {
        concurrent -= 1;
        busy.delete(slot);
      }
    },
  });
  await jest.advanceTimersByTimeAsync(params.durationS * 1000 + params.opMs + 50);
  const result: OpenLoopResult<number> = await running;
  return { result, maxConcurrent, slotReused, started: count };
}

describe('openLoopLoad', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  it('issues at the offered rate while slots are free, and waits for every issued operation', async () => {
    const { result, slotReused, started } = await load({ ratePerS: 100, durationS: 0.3, slots: 50, opMs: 5 });
    expect(result.issued).toBe(30);
    expect(result.notIssued).toBe(0);
    expect(started).toBe(30);
    expect(result.completed.map((done) => done.value)).toEqual(Array.from({ length: 30 }, (_, index) => index + 1));
    expect(result.failures).toEqual([]);
    expect(result.stalledMs).toBe(0);
    expect(slotReused).toBe(false);
    expect(result.windowEndAt - result.startedAt).toBe(300);
    // operation n is issued on the generator's turn at (n - 1) × 10 ms and takes 5 ms
    result.completed.forEach((done, index) => expect(done.doneAt - result.startedAt).toBe(index * 10 + 5));
  });

  it('never runs more operations than slots, and counts what it could not issue as not issued and stalled', async () => {
    const { result, maxConcurrent, slotReused } = await load({ ratePerS: 100, durationS: 0.3, slots: 2, opMs: 100 });
    expect(maxConcurrent).toBe(2);
    expect(slotReused).toBe(false);
    // at 0 and 10 ms, then as the slots come free at 100, 110, 200 and 210 ms: 6 of the 30 due
    expect(result.issued).toBe(6);
    expect(result.notIssued).toBe(24);
    expect(result.stalledMs).toBeGreaterThan(250); // from 20 ms on, all but the turns that issued
    expect(result.completed).toHaveLength(6); // the two still in flight at the window's end are waited for
  });

  it('stops at the end of the window while waiting for a slot; what finishes later is returned with its time', async () => {
    const { result } = await load({ ratePerS: 10, durationS: 0.3, slots: 1, opMs: 250 });
    expect(result.windowEndAt - result.startedAt).toBe(300); // not 500, when the second operation frees the slot
    expect(result.issued).toBe(2); // at 0 ms and at 250 ms
    expect(result.notIssued).toBe(1);
    expect(result.completed.map((done) => done.doneAt - result.startedAt)).toEqual([250, 500]);
    expect(result.completed.filter((done) => done.doneAt <= result.windowEndAt)).toHaveLength(1);
  });

  it('records a failed operation and gives its slot back', async () => {
    const { result } = await load({ ratePerS: 100, durationS: 0.2, slots: 1, opMs: 1, fail: (n) => n === 1 });
    expect(result.failures).toEqual(['operation 1 failed']);
    expect(result.issued).toBe(20);
    expect(result.completed).toHaveLength(19);
  });
});

describe('loadFigures', () => {
  it('counts as completed per second only what finished within the window, and reports the rest of the load as it was', () => {
    const load: OpenLoopResult<number> = {
      completed: [100, 900, 1_900, 2_100].map((at, index) => ({ value: index, doneAt: 10_000 + at })),
      failures: [],
      issued: 5,
      notIssued: 15,
      stalledMs: 1_234.6,
      startedAt: 10_000,
      windowEndAt: 12_000,
    };
    const loaded = summarize([5, 6, 7, 400]);
    const idle = summarize([3, 4]);
    expect(loadFigures(load, loaded, idle, 10)).toEqual({
      ...loaded,
      commands_per_s: 1.5, // 3 of the 4 within the 2 s window
      p99_ms_loaded: 400,
      p99_ms_idle: 4,
      offered_per_s: 10,
      issued: 5,
      not_issued: 15,
      generator_stalled_ms: 1_235,
      completed: 4,
      idle,
    });
  });
});
