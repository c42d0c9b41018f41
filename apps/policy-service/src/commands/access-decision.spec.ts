import { decideSystemAccess } from './access-decision';

describe('decideSystemAccess (a system is revoked while any group containing it is revoked)', () => {
  it('revokes an active system', () => {
    expect(decideSystemAccess('revoke', 'active', [])).toEqual({ desiredState: 'revoked', changes: true, heldBy: [] });
  });

  it('does not re-publish a system already revoked by another group', () => {
    expect(decideSystemAccess('revoke', 'revoked', ['legal'])).toEqual({
      desiredState: 'revoked',
      changes: false,
      heldBy: ['legal'],
    });
  });

  it('restores a system no other revoked group covers', () => {
    expect(decideSystemAccess('restore', 'revoked', [])).toEqual({ desiredState: 'active', changes: true, heldBy: [] });
  });

  it('keeps a system revoked while another revoked group still covers it', () => {
    expect(decideSystemAccess('restore', 'revoked', ['stock', 'call-centre'])).toEqual({
      desiredState: 'revoked',
      changes: false,
      heldBy: ['call-centre', 'stock'],
    });
  });

  it('does not publish a restore for a system that is already active', () => {
    expect(decideSystemAccess('restore', 'active', []).changes).toBe(false);
  });
});
