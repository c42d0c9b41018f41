import type { AuditEntryInput } from '../audit/audit-log.service';
import { AuthFailureAuditor, type AuthFailureEvent } from './auth-failure-auditor';

describe('AuthFailureAuditor', () => {
  let now = 0;
  let written: AuditEntryInput[][];
  const auditor = (maxAddresses = 1000) =>
    new AuthFailureAuditor({
      windowMs: 60_000,
      maxAddresses,
      now: () => now,
      write: async (entries) => {
        written.push(entries);
      },
    });
  const failure = (sourceAddress: string, reason = 'invalid signature', extra: Partial<AuthFailureEvent> = {}): AuthFailureEvent => ({
    sourceAddress,
    method: 'GET',
    path: '/api/v1/groups',
    reason,
    credential: 'jwt',
    ...extra,
  });

  beforeEach(() => {
    now = 1_000_000;
    written = [];
  });

  it('writes the first failure of an address at once, with the claimed subject marked unverified', async () => {
    await auditor().record(failure('203.0.113.7', 'wrong audience', { unverifiedSubject: 'alice' }));
    expect(written).toEqual([
      [
        {
          actor: 'anonymous',
          action: 'auth.failed',
          reason: 'wrong audience',
          sourceAddress: '203.0.113.7',
          details: { method: 'GET', path: '/api/v1/groups', credential: 'jwt', unverifiedSubject: 'alice', windowSeconds: 60 },
        },
      ],
    ]);
  });

  it('coalesces further failures of the address into one summary per window', async () => {
    const subject = auditor();
    await subject.record(failure('203.0.113.7'));
    for (let i = 0; i < 500; i += 1) await subject.record(failure('203.0.113.7', i % 2 ? 'token expired' : 'invalid signature'));
    subject.noteRefused('203.0.113.7');
    expect(written).toHaveLength(1);
    now += 30_000;
    await subject.flush();
    expect(written).toHaveLength(1); // window not over yet
    now += 30_000;
    await subject.flush();
    expect(written).toHaveLength(2);
    expect(written[1]).toEqual([
      expect.objectContaining({
        actor: 'anonymous',
        action: 'auth.failed',
        sourceAddress: '203.0.113.7',
        details: expect.objectContaining({ coalesced: true, attempts: 500, refused: 1, reasons: { 'invalid signature': 250, 'token expired': 250 } }),
      }),
    ]);
    await subject.flush();
    expect(written).toHaveLength(2);
  });

  it('writes the previous summary with the next immediate entry when an address comes back', async () => {
    const subject = auditor();
    await subject.record(failure('203.0.113.7'));
    await subject.record(failure('203.0.113.7'));
    now += 61_000;
    await subject.record(failure('203.0.113.7', 'token expired'));
    expect(written[1].map((entry) => entry.reason)).toEqual(['1 more failed authentication(s) from this address', 'token expired']);
  });

  it('sums failures from too many addresses into one overflow summary', async () => {
    const subject = auditor(10);
    for (let i = 0; i < 200; i += 1) await subject.record(failure(`10.0.0.${i}`));
    expect(written).toHaveLength(10);
    now += 60_000;
    await subject.flush();
    const overflow = written[10][0];
    expect(overflow.details).toMatchObject({ overflow: true, attempts: 190 });
    expect((overflow.details?.sampleAddresses as string[]).length).toBe(20);
  });

  it('flushes everything at shutdown and survives a failing write', async () => {
    const errors: string[] = [];
    const subject = new AuthFailureAuditor({
      windowMs: 60_000,
      now: () => now,
      write: async () => {
        throw new Error('database down');
      },
      onError: (message) => errors.push(message),
    });
    await expect(subject.record(failure('203.0.113.7'))).resolves.toBeUndefined();
    await subject.record(failure('203.0.113.7'));
    await subject.flush(true);
    expect(errors).toHaveLength(2);
    expect(errors[0]).toMatch(/database down/);
  });
});
