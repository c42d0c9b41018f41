import { exemptionChangeRefusal, exemptionView, isExemptionValid } from './exemptions';

const now = new Date('2026-11-28T09:00:00Z');
const later = new Date('2026-11-28T12:00:00Z');
const muchLater = new Date('2026-12-28T12:00:00Z');
const earlier = new Date('2026-11-28T08:00:00Z');

describe('break-glass exemptions', () => {
  it('are valid without expiry, and until (not at) their expiry', () => {
    expect(isExemptionValid({ expiresAt: null }, now)).toBe(true);
    expect(isExemptionValid({ expiresAt: later }, now)).toBe(true);
    expect(isExemptionValid({ expiresAt: now }, now)).toBe(false);
    expect(isExemptionValid({ expiresAt: earlier }, now)).toBe(false);
  });

  it('show their expiry and whether they expired', () => {
    const view = exemptionView({ principal: 'bg', reason: 'r', createdBy: 'user:ada', createdAt: earlier, expiresAt: earlier }, now);
    expect(view).toEqual({
      principal: 'bg',
      reason: 'r',
      createdBy: 'user:ada',
      createdAt: earlier.toISOString(),
      expiresAt: earlier.toISOString(),
      expired: true,
    });
  });

  describe('exemptionChangeRefusal', () => {
    it('refuses removing a valid exemption while the system is revoked', () => {
      expect(exemptionChangeRefusal('revoked', { expiresAt: null }, null, now)).toMatch(
        /would withdraw a break-glass account during a revocation; restore first/,
      );
      expect(exemptionChangeRefusal('revoked', { expiresAt: later }, null, now)).not.toBeNull();
    });

    it('allows removing an exemption on an active system, or one that already expired', () => {
      expect(exemptionChangeRefusal('active', { expiresAt: null }, null, now)).toBeNull();
      expect(exemptionChangeRefusal('revoked', { expiresAt: earlier }, null, now)).toBeNull();
    });

    it('allows adding and extending during a revocation, not cutting short', () => {
      expect(exemptionChangeRefusal('revoked', null, { expiresAt: later }, now)).toBeNull();
      expect(exemptionChangeRefusal('revoked', { expiresAt: later }, { expiresAt: muchLater }, now)).toBeNull();
      expect(exemptionChangeRefusal('revoked', { expiresAt: later }, { expiresAt: null }, now)).toBeNull();
      expect(exemptionChangeRefusal('revoked', { expiresAt: muchLater }, { expiresAt: later }, now)).toMatch(/cut short/);
      expect(exemptionChangeRefusal('revoked', { expiresAt: null }, { expiresAt: later }, now)).toMatch(/cut short/);
      expect(exemptionChangeRefusal('active', { expiresAt: null }, { expiresAt: later }, now)).toBeNull();
    });
  });
});
