import { effectiveRequestStatus, judgeDecision, restoreRoute, supersededBecause, type RestoreRequestFacts } from './restore-approval';

const requestedAt = new Date('2026-11-28T09:00:00Z');
const expiresAt = new Date('2026-11-28T10:00:00Z');
const before = new Date('2026-11-28T09:59:59Z');
const after = new Date('2026-11-28T10:00:00Z');
const revokeCommand = '5e0f1f7e-0000-4000-8000-000000000001';

const request = (overrides: Partial<RestoreRequestFacts> = {}): RestoreRequestFacts => ({
  approvalStatus: 'awaiting-approval',
  approvalExpiresAt: expiresAt,
  requestedBy: 'alice',
  approvalBasisCommandId: revokeCommand,
  ...overrides,
});
const revokedGroup = { state: 'revoked' as const, lastCommandId: revokeCommand };

describe('restoreRoute (who may restore, and how)', () => {
  it('makes a security lead request approval, whatever the group allows', () => {
    expect(restoreRoute('four-eyes', ['security-lead'])).toBe('request-approval');
    expect(restoreRoute('single-admin', ['security-lead'])).toBe('request-approval');
  });

  it('lets an admin restore alone only where the group allows single-admin restore', () => {
    expect(restoreRoute('single-admin', ['admin'])).toBe('apply-now');
    expect(restoreRoute('single-admin', ['security-lead', 'admin'])).toBe('apply-now');
    expect(restoreRoute('four-eyes', ['admin'])).toBe('forbidden');
    expect(restoreRoute('four-eyes', ['security-lead', 'admin'])).toBe('request-approval');
  });

  it('never lets an auditor restore', () => {
    expect(restoreRoute('single-admin', ['auditor'])).toBe('forbidden');
    expect(restoreRoute('four-eyes', ['auditor'])).toBe('forbidden');
  });
});

describe('effectiveRequestStatus', () => {
  it('is awaiting until the expiry, expired from then on even if nobody recorded it', () => {
    expect(effectiveRequestStatus(request(), before)).toBe('awaiting-approval');
    expect(effectiveRequestStatus(request(), after)).toBe('expired');
  });

  it('keeps a decided request as decided after its expiry', () => {
    expect(effectiveRequestStatus(request({ approvalStatus: 'approved' }), after)).toBe('approved');
    expect(effectiveRequestStatus(request({ approvalStatus: 'rejected' }), after)).toBe('rejected');
  });
});

describe('supersededBecause', () => {
  it('is null while the group is still revoked by the decision the request was made against', () => {
    expect(supersededBecause(request(), revokedGroup)).toBeNull();
  });

  it('names a restore that happened meanwhile and a newer revoke', () => {
    expect(supersededBecause(request(), { state: 'active', lastCommandId: 'x' })).toMatch(/no longer revoked/);
    expect(supersededBecause(request(), { state: 'revoked', lastCommandId: 'newer' })).toMatch(/revoked again by command newer/);
  });
});

describe('judgeDecision (approve / reject a restore request)', () => {
  it('lets another security lead approve an open request in time', () => {
    expect(judgeDecision('approve', request(), 'bob', revokedGroup, before)).toEqual({ ok: true });
  });

  it('never lets the requester approve their own request, but lets them withdraw it', () => {
    expect(judgeDecision('approve', request(), 'alice', revokedGroup, before)).toEqual({ ok: false, refusal: 'own-request' });
    expect(judgeDecision('reject', request(), 'alice', revokedGroup, before)).toEqual({ ok: true });
  });

  it('refuses a request that ran out of time, for everyone', () => {
    expect(judgeDecision('approve', request(), 'bob', revokedGroup, after)).toEqual({ ok: false, refusal: 'expired' });
    expect(judgeDecision('approve', request(), 'alice', revokedGroup, after)).toEqual({ ok: false, refusal: 'expired' });
    expect(judgeDecision('reject', request(), 'bob', revokedGroup, after)).toEqual({ ok: false, refusal: 'expired' });
  });

  it('refuses a request the group has outgrown', () => {
    const verdict = judgeDecision('approve', request(), 'bob', { state: 'revoked', lastCommandId: 'newer' }, before);
    expect(verdict).toMatchObject({ ok: false, refusal: 'superseded' });
  });

  it.each(['approved', 'rejected', 'expired', 'superseded'] as const)('refuses a request already %s', (status) => {
    expect(judgeDecision('approve', request({ approvalStatus: status }), 'bob', revokedGroup, before)).toEqual({
      ok: false,
      refusal: 'closed',
      status,
    });
  });

  it('uses the request time only for display: a request made at any time expires at its own expiry', () => {
    expect(judgeDecision('approve', request({ approvalExpiresAt: new Date(requestedAt.getTime() + 1) }), 'bob', revokedGroup, before)).toEqual({
      ok: false,
      refusal: 'expired',
    });
  });
});
