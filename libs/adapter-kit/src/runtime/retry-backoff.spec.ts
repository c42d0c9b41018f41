import { RetryBackoff } from './retry-backoff';

describe('RetryBackoff', () => {
  it('starts at the initial delay and doubles up to the maximum', () => {
    const backoff = new RetryBackoff(1_000, 30_000);
    expect([1, 2, 3, 4, 5, 6, 7, 100].map((failures) => backoff.delayAfter(failures))).toEqual([
      1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000,
    ]);
  });
});
