import { RetryBackoff } from './retry-backoff';

describe('RetryBackoff', () => {
  it('starts at the initial delay and doubles up to the maximum', () => {
    const backoff = new RetryBackoff(1_000, 30_000, () => 1);
    expect([1, 2, 3, 4, 5, 6, 7, 100].map((failures) => backoff.delayAfter(failures))).toEqual([
      1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000,
    ]);
  });

  it('takes up to a fifth off at random, so systems failing together do not retry together', () => {
    expect(new RetryBackoff(1_000, 30_000, () => 0).delayAfter(3)).toBe(3_200);
    const delays = new Set(Array.from({ length: 50 }, () => new RetryBackoff(1_000, 30_000).delayAfter(3)));
    expect(delays.size).toBeGreaterThan(1);
    for (const delay of delays) {
      expect(delay).toBeGreaterThanOrEqual(3_200);
      expect(delay).toBeLessThanOrEqual(4_000);
    }
  });
});
