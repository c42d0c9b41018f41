import { openLoopLoad } from './open-loop';

const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Runs a load whose operations take `opMs`, and records how many ran at once on each slot and in all. */
async function load(params: { ratePerS: number; durationS: number; slots: number; opMs: number; fail?: (n: number) => boolean }) {
  const busy = new Set<string>();
  let concurrent = 0;
  let maxConcurrent = 0;
  let slotReused = false;
  let count = 0;
  const result = await openLoopLoad({
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
  return { result, maxConcurrent, slotReused, started: count };
}

describe('openLoopLoad', () => {
  it('issues at the offered rate while slots are free, and waits for every issued operation', async () => {
    const { result, slotReused, started } = await load({ ratePerS: 100, durationS: 0.3, slots: 50, opMs: 5 });
    expect(result.issued + result.notIssued).toBe(30);
    expect(result.issued).toBeGreaterThanOrEqual(25); // a late last turn of the loop may miss the last one or two
    expect(result.completed).toHaveLength(result.issued);
    expect(started).toBe(result.issued);
    expect(result.failures).toEqual([]);
    expect(slotReused).toBe(false);
    expect(result.windowEndAt - result.startedAt).toBeGreaterThanOrEqual(300);
    for (const done of result.completed) expect(done.doneAt).toBeGreaterThanOrEqual(result.startedAt);
  });

  it('never runs more operations than slots, and reports what it could not issue as not issued and stalled', async () => {
    const { result, maxConcurrent, slotReused } = await load({ ratePerS: 100, durationS: 0.3, slots: 2, opMs: 100 });
    expect(maxConcurrent).toBeLessThanOrEqual(2);
    expect(slotReused).toBe(false);
    expect(result.issued).toBeLessThanOrEqual(2 * 4 + 2); // two slots, operations of 100 ms, a 300 ms window
    expect(result.notIssued).toBe(30 - result.issued);
    expect(result.notIssued).toBeGreaterThan(15);
    expect(result.stalledMs).toBeGreaterThan(100);
    expect(result.completed).toHaveLength(result.issued); // the ones in flight at the end are waited for
  });

  it('records a failed operation and gives its slot back', async () => {
    const { result } = await load({ ratePerS: 100, durationS: 0.2, slots: 1, opMs: 1, fail: (n) => n === 1 });
    expect(result.failures).toEqual(['operation 1 failed']);
    expect(result.completed.length).toBe(result.issued - 1);
    expect(result.completed.length).toBeGreaterThan(0); // the slot came back after the failure
  });
});
