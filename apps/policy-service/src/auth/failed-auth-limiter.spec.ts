import { FailedAuthLimiter } from './failed-auth-limiter';

describe('FailedAuthLimiter', () => {
  let now = 0;
  const limiter = (limit = 3) => new FailedAuthLimiter({ limit, windowMs: 60_000, now: () => now });

  beforeEach(() => {
    now = 1_000_000;
  });

  it('blocks an address after the limit of failures until its window ends', () => {
    const subject = limiter();
    expect(subject.recordFailure('203.0.113.7')).toBe(false);
    expect(subject.recordFailure('203.0.113.7')).toBe(false);
    expect(subject.blockedFor('203.0.113.7')).toBe(0);
    expect(subject.recordFailure('203.0.113.7')).toBe(true);
    now += 20_000;
    expect(subject.blockedFor('203.0.113.7')).toBe(40);
    expect(subject.blockedFor('203.0.113.8')).toBe(0);
    now += 40_000;
    expect(subject.blockedFor('203.0.113.7')).toBe(0);
  });

  it('treats an IPv4-mapped address like the IPv4 one and an IPv6 /64 as one address', () => {
    const subject = limiter(2);
    subject.recordFailure('::ffff:198.51.100.1');
    subject.recordFailure('198.51.100.1');
    expect(subject.blockedFor('198.51.100.1')).toBeGreaterThan(0);
    subject.recordFailure('2001:db8:1:2::1');
    subject.recordFailure('2001:db8:1:2:ffff::9');
    expect(subject.blockedFor('2001:db8:1:2::77')).toBeGreaterThan(0);
    expect(subject.blockedFor('2001:db8:1:3::1')).toBe(0);
  });

  it('stays bounded: expired windows are swept, the oldest dropped when full', () => {
    const subject = new FailedAuthLimiter({ limit: 1, windowMs: 60_000, maxTracked: 100, now: () => now });
    for (let i = 0; i < 250; i += 1) subject.recordFailure(`10.0.${Math.floor(i / 256)}.${i % 256}`);
    expect(subject.tracked).toBeLessThanOrEqual(100);
    now += 60_000;
    subject.sweep();
    expect(subject.tracked).toBe(0);
  });
});
